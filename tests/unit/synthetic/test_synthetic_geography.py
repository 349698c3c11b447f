"""Practice localities and LSOA postcode districts against the reference data."""

from __future__ import annotations

import re

from sharedcare import reference
from sharedcare.synthetic import geography


def test_every_practice_has_a_locality() -> None:
    codes = {p.code for p in reference.gp_practices()}
    assert set(geography.PRACTICE_LOCALITY) == codes
    assert set(geography.PRACTICE_LOCALITY.values()) <= set(geography.LOCALITIES)


def test_locality_coordinates_fall_in_the_expected_district() -> None:
    """The nearest LSOA centroid to each hand-placed locality lies in the stated district."""
    areas = reference.lsoas()
    for name, (lat, lon, district) in geography.LOCALITIES.items():
        nearest = min(areas, key=lambda a: geography.distance_km(lat, lon, a.latitude, a.longitude))
        distance = geography.distance_km(lat, lon, nearest.latitude, nearest.longitude)
        assert nearest.legacy_district == district, name
        assert distance < 6.0, name


def test_practice_locality_matches_its_address_town() -> None:
    for practice in reference.gp_practices():
        locality = geography.PRACTICE_LOCALITY[practice.code].upper()
        address = " ".join(practice.address_lines).upper()
        post_town = geography.POST_TOWN.get(geography.PRACTICE_LOCALITY[practice.code], "").upper()
        assert (
            locality.split()[0] in address
            or (post_town and post_town.split()[0] in address)
            or (
                practice.code in {"J81612", "J81647", "J81074"}  # address names no town line
            )
        ), practice.code


def test_area_geography_covers_every_lsoa() -> None:
    geo = geography.area_geography()
    assert set(geo) == {a.code for a in reference.lsoas()}
    districts = {p.postcode_district for p in reference.gp_practices()}
    for area in geo.values():
        assert re.fullmatch(r"(BH|DT|SP)\d{1,2}", area.postcode_district)
        assert area.postcode_district in districts
        assert abs(area.practice_cumulative[-1] - 1.0) < 1e-9
        assert 0 <= area.nearest_site < len(geography.ACUTE_SITES)


def test_west_dorset_lsoas_use_dorset_county_hospital() -> None:
    geo = geography.area_geography()
    west = [
        a
        for a in reference.lsoas()
        if a.legacy_district in {"West Dorset", "Weymouth and Portland"}
    ]
    assert west
    assert all(geography.ACUTE_SITES[geo[a.code].nearest_site].key == "DCH" for a in west)
    assert all(geo[a.code].postcode_district.startswith("DT") for a in west)
