"""Where things are: practice localities, acute sites, and postcode districts for each LSOA.

The reference data give every LSOA a centroid but give GP practices only an address. Each
practice is therefore placed at the centre of the town or village named in its address. The
coordinates below are approximate (to about a kilometre) and come from general knowledge;
``tests/unit/synthetic/test_synthetic_geography.py`` checks each one against the reference data
by requiring the nearest LSOA centroid to lie in the expected pre-2019 district.

Postcode districts for LSOAs are honest but coarse: an LSOA takes the postcode district of its
nearest practice locality. Inside the large towns several districts share one locality, and an
LSOA then takes one of them, chosen deterministically from the LSOA code.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from functools import cache

from sharedcare import reference

# locality: (latitude, longitude, legacy district the locality lies in)
LOCALITIES: dict[str, tuple[float, float, str]] = {
    "Ferndown": (50.807, -1.899, "East Dorset"),
    "West Moors": (50.826, -1.888, "East Dorset"),
    "Verwood": (50.879, -1.874, "East Dorset"),
    "Wimborne": (50.799, -1.988, "East Dorset"),
    "Cranborne": (50.918, -1.921, "East Dorset"),
    "Hamworthy": (50.717, -2.012, "Poole"),
    "Poole": (50.716, -1.983, "Poole"),
    "Parkstone": (50.725, -1.947, "Poole"),
    "Canford Heath": (50.748, -1.964, "Poole"),
    "Talbot Village": (50.741, -1.913, "Poole"),
    "Broadstone": (50.758, -1.995, "Poole"),
    "Creekmoor": (50.745, -2.007, "Poole"),
    "Westbourne": (50.722, -1.899, "Bournemouth"),
    "Bournemouth": (50.721, -1.876, "Bournemouth"),
    "Boscombe": (50.726, -1.840, "Bournemouth"),
    "Southbourne": (50.722, -1.800, "Bournemouth"),
    "Winton": (50.738, -1.875, "Bournemouth"),
    "Moordown": (50.750, -1.872, "Bournemouth"),
    "Kinson": (50.770, -1.902, "Bournemouth"),
    "Wallisdown": (50.743, -1.909, "Poole"),
    "Muscliffe": (50.764, -1.858, "Bournemouth"),
    "Charminster": (50.737, -1.862, "Bournemouth"),
    "Littledown": (50.745, -1.823, "Bournemouth"),
    "Strouden Park": (50.748, -1.845, "Bournemouth"),
    "Christchurch": (50.735, -1.778, "Christchurch"),
    "Highcliffe": (50.739, -1.703, "Christchurch"),
    "Swanage": (50.609, -1.961, "Purbeck"),
    "Wareham": (50.686, -2.110, "Purbeck"),
    "Sandford": (50.707, -2.106, "Purbeck"),
    "Bere Regis": (50.753, -2.216, "Purbeck"),
    "Wool": (50.681, -2.219, "Purbeck"),
    "Corfe Castle": (50.639, -2.057, "Purbeck"),
    "Dorchester": (50.715, -2.437, "West Dorset"),
    "Poundbury": (50.713, -2.455, "West Dorset"),
    "Cerne Abbas": (50.809, -2.477, "West Dorset"),
    "Puddletown": (50.749, -2.345, "West Dorset"),
    "Yetminster": (50.896, -2.575, "West Dorset"),
    "Sherborne": (50.947, -2.517, "West Dorset"),
    "Bridport": (50.733, -2.758, "West Dorset"),
    "Beaminster": (50.809, -2.740, "West Dorset"),
    "Lyme Regis": (50.725, -2.937, "West Dorset"),
    "Weymouth": (50.614, -2.457, "Weymouth and Portland"),
    "Wyke Regis": (50.597, -2.476, "Weymouth and Portland"),
    "Portland": (50.548, -2.440, "Weymouth and Portland"),
    "Blandford": (50.856, -2.164, "North Dorset"),
    "Milton Abbas": (50.815, -2.274, "North Dorset"),
    "Sturminster Newton": (50.926, -2.305, "North Dorset"),
    "Gillingham": (51.036, -2.276, "North Dorset"),
}

PRACTICE_LOCALITY: dict[str, str] = {
    "J81002": "Ferndown", "J81006": "Hamworthy", "J81009": "Portland", "J81010": "Swanage",
    "J81011": "Wareham", "J81012": "Parkstone", "J81013": "Canford Heath", "J81014": "Westbourne",
    "J81016": "Dorchester", "J81017": "Yetminster", "J81018": "Southbourne",
    "J81019": "Blandford", "J81020": "Bere Regis", "J81021": "Boscombe", "J81022": "West Moors",
    "J81025": "Wool", "J81027": "Weymouth", "J81028": "Highcliffe", "J81029": "Sherborne",
    "J81030": "Verwood", "J81033": "Wallisdown", "J81034": "Wimborne", "J81035": "Milton Abbas",
    "J81036": "Parkstone", "J81039": "Moordown", "J81041": "Broadstone",
    "J81042": "Talbot Village", "J81045": "Kinson", "J81046": "Broadstone",
    "J81047": "Muscliffe", "J81049": "Boscombe", "J81051": "Wyke Regis",
    "J81053": "Cerne Abbas", "J81056": "Christchurch", "J81057": "Christchurch",
    "J81058": "Cranborne", "J81059": "Southbourne", "J81061": "Ferndown",
    "J81062": "Charminster", "J81064": "Poole", "J81066": "Christchurch",
    "J81067": "Littledown", "J81068": "Dorchester", "J81070": "Winton",
    "J81072": "Bournemouth", "J81073": "Weymouth", "J81074": "Beaminster", "J81075": "Weymouth",
    "J81076": "Bridport", "J81077": "Wimborne", "J81078": "Sherborne", "J81081": "Gillingham",
    "J81082": "Poundbury", "J81086": "Parkstone", "J81087": "Creekmoor",
    "J81609": "Poundbury", "J81612": "Corfe Castle", "J81616": "Puddletown",
    "J81620": "Sturminster Newton", "J81621": "Ferndown", "J81625": "Winton",
    "J81626": "Dorchester", "J81631": "Sandford", "J81633": "Strouden Park",
    "J81634": "Bournemouth", "J81646": "Christchurch", "J81647": "Lyme Regis",
    "J81648": "Poole",
}  # fmt: skip
"""Locality named in each practice's epraccur address."""

POST_TOWN: dict[str, str] = {
    "Hamworthy": "Poole", "Parkstone": "Poole", "Canford Heath": "Poole",
    "Talbot Village": "Poole", "Creekmoor": "Poole", "Broadstone": "Broadstone",
    "Westbourne": "Bournemouth", "Boscombe": "Bournemouth", "Southbourne": "Bournemouth",
    "Winton": "Bournemouth", "Moordown": "Bournemouth", "Kinson": "Bournemouth",
    "Wallisdown": "Poole", "Muscliffe": "Bournemouth", "Charminster": "Bournemouth",
    "Littledown": "Bournemouth", "Strouden Park": "Bournemouth", "Poundbury": "Dorchester",
    "Cerne Abbas": "Dorchester", "Puddletown": "Dorchester", "Yetminster": "Sherborne",
    "Wyke Regis": "Weymouth", "Sandford": "Wareham", "Bere Regis": "Wareham", "Wool": "Wareham",
    "Corfe Castle": "Wareham", "Milton Abbas": "Blandford Forum", "Blandford": "Blandford Forum",
    "West Moors": "Ferndown", "Cranborne": "Wimborne",
}  # fmt: skip
"""Post town for localities that are not themselves post towns."""


@dataclass(frozen=True, slots=True)
class AcuteSite:
    """An acute hospital site with an emergency department."""

    key: str
    name: str
    trust_code: str
    trust_name: str
    latitude: float
    longitude: float


ACUTE_SITES: tuple[AcuteSite, ...] = (
    AcuteSite(
        "DCH", "Dorset County Hospital", "RBD", "Dorset County Hospital NHS FT", 50.711, -2.447
    ),
    AcuteSite("PGH", "Poole Hospital", "R0D", "University Hospitals Dorset NHS FT", 50.719, -1.975),
    AcuteSite(
        "RBH",
        "Royal Bournemouth Hospital",
        "R0D",
        "University Hospitals Dorset NHS FT",
        50.747,
        -1.823,
    ),
)
"""The three acute sites (ODS trust codes from the reference organisations list)."""


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 12742.0 * math.asin(math.sqrt(a))


def practice_position(code: str) -> tuple[float, float]:
    """Approximate (latitude, longitude) of a practice, from its locality."""
    lat, lon, _ = LOCALITIES[PRACTICE_LOCALITY[code]]
    return lat, lon


@dataclass(frozen=True, slots=True)
class AreaGeography:
    """What the generator needs about one LSOA: postcode district, post town, nearest site."""

    postcode_district: str
    post_town: str
    nearest_site: int
    """Index into ``ACUTE_SITES``."""
    practice_cumulative: tuple[float, ...]
    """Cumulative registration weights over ``reference.gp_practices()``."""


GP_DISTANCE_SCALE_KM = 3.0
"""Registration weight falls by a factor of e for every 3 km from the practice."""


@cache
def area_geography() -> dict[str, AreaGeography]:
    """Per-LSOA geography, keyed by LSOA code."""
    practices = reference.gp_practices()
    positions = [practice_position(p.code) for p in practices]
    out: dict[str, AreaGeography] = {}
    for area in reference.lsoas():
        dists = [distance_km(area.latitude, area.longitude, la, lo) for la, lo in positions]
        nearest = min(dists)
        locality = PRACTICE_LOCALITY[practices[dists.index(nearest)].code]
        districts = sorted(
            {
                p.postcode_district
                for p, d in zip(practices, dists, strict=True)
                if PRACTICE_LOCALITY[p.code] == locality
            }
        )
        pick = zlib.crc32(area.code.encode()) % len(districts)
        weights = [
            p.list_total * math.exp(-(d - nearest) / GP_DISTANCE_SCALE_KM)
            for p, d in zip(practices, dists, strict=True)
        ]
        total = 0.0
        cumulative = []
        for w in weights:
            total += w
            cumulative.append(total)
        site_d = [
            distance_km(area.latitude, area.longitude, s.latitude, s.longitude) for s in ACUTE_SITES
        ]
        out[area.code] = AreaGeography(
            postcode_district=districts[pick],
            post_town=POST_TOWN.get(locality, locality),
            nearest_site=site_d.index(min(site_d)),
            practice_cumulative=tuple(c / total for c in cumulative),
        )
    return out
