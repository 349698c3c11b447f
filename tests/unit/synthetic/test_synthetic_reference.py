"""The packaged Dorset reference data and its typed loader."""

from __future__ import annotations

import math

import pytest

from sharedcare import reference


def test_lsoas_are_the_452_dorset_areas_with_their_population() -> None:
    areas = reference.lsoas()
    assert len(areas) == 452
    assert len({a.code for a in areas}) == 452
    assert sum(a.population_mid2019 for a in areas) == 773_839
    assert {a.lad_code for a in areas} == {reference.LAD_DORSET, reference.LAD_BCP}
    by_lad = {
        lad: sum(a.lad_code == lad for a in areas)
        for lad in (reference.LAD_DORSET, reference.LAD_BCP)
    }
    assert by_lad == {reference.LAD_DORSET: 219, reference.LAD_BCP: 233}


def test_quintile_is_derived_from_decile() -> None:
    for area in reference.lsoas():
        assert 1 <= area.imd2019_decile <= 10
        assert area.imd2019_quintile == math.ceil(area.imd2019_decile / 2)


def test_lsoa_lookup_by_code() -> None:
    first = reference.lsoas()[0]
    assert reference.lsoa(first.code) is first
    assert first.legacy_district == first.name.rsplit(" ", 1)[0]


def test_unknown_lsoa_gives_a_clear_error() -> None:
    with pytest.raises(reference.ReferenceDataError, match="not one of the 452"):
        reference.lsoa("E01999999")


def test_gp_practices_have_consistent_list_sizes() -> None:
    practices = reference.gp_practices()
    assert len(practices) == 68
    for p in practices:
        assert (
            p.list_total >= p.list_16ov >= p.list_17ov >= p.list_18ov >= p.list_50ov >= p.list_65ov
        )
        assert p.list_0_64 + p.list_65ov == p.list_total
        assert p.postcode_district and " " in p.postcode
    assert reference.gp_practice("J81006").name == "THE ADAM PRACTICE"
    with pytest.raises(reference.ReferenceDataError):
        reference.gp_practice("X99999")


def test_qof_tables() -> None:
    lad = reference.qof_prevalence()
    assert len(lad) == 42
    assert all(abs(r.register / r.list_size - r.prevalence) < 1e-9 for r in lad)
    by_imd = reference.qof_prevalence_by_imd()
    assert len(by_imd) == 210
    assert {r.imd_decile for r in by_imd} == set(range(1, 11))


def test_organisations_include_the_acute_trusts() -> None:
    codes = {o.ods_code for o in reference.organisations()}
    assert {"RBD", "R0D", "RDY"} <= codes
