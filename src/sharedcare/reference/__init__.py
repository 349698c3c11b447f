"""Public reference data carried inside the package (Dorset LSOAs, IMD, GP practices, QOF).

The CSV files in ``data/`` are copied unchanged from the project's shared Dorset reference
set; ``data/SOURCES.md`` names every source, version and licence (ONS and MHCLG data under the
Open Government Licence v3.0; House of Commons Library QOF outputs under the Open Parliament
Licence v3.0).

Loaders are cached and return immutable, typed records, so any domain (synthetic data,
analytics) can use them as lookups::

    from sharedcare import reference

    area = reference.lsoa("E01015272")
    area.imd2019_quintile, area.lad_code
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "LAD_BCP",
    "LAD_DORSET",
    "GpPractice",
    "Lsoa",
    "Organisation",
    "QofPrevalence",
    "QofPrevalenceByImd",
    "ReferenceDataError",
    "gp_practice",
    "gp_practices",
    "lsoa",
    "lsoas",
    "organisations",
    "qof_prevalence",
    "qof_prevalence_by_imd",
]

LAD_DORSET = "E06000059"
"""ONS code of Dorset Council's area."""
LAD_BCP = "E06000058"
"""ONS code of Bournemouth, Christchurch and Poole Council's area."""


class ReferenceDataError(LookupError):
    """A code was not found in the packaged reference data."""


@dataclass(frozen=True, slots=True)
class Lsoa:
    """One 2011 Lower layer Super Output Area of NHS Dorset (see data/SOURCES.md)."""

    code: str
    name: str
    msoa_code: str
    lad_code: str
    lad_name: str
    imd2019_score: float
    imd2019_decile: int
    """National IMD 2019 decile, 1 = most deprived 10% of LSOAs in England."""
    imd2019_quintile: int
    """National IMD 2019 quintile, 1 = most deprived."""
    imd2019_income_decile: int
    population_mid2019: int
    longitude: float
    latitude: float

    @property
    def legacy_district(self) -> str:
        """The pre-2019 district part of the name, e.g. ``West Dorset`` for ``West Dorset 009G``."""
        return self.name.rsplit(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class GpPractice:
    """An active NHS Dorset GP practice with its 2019/20 QOF list sizes by age group."""

    code: str
    name: str
    address_lines: tuple[str, ...]
    postcode: str
    list_total: int
    list_16ov: int
    list_17ov: int
    list_18ov: int
    list_30_74: int
    list_50ov: int
    list_0_64: int
    list_65ov: int

    @property
    def postcode_district(self) -> str:
        """The outward code of the practice postcode, e.g. ``BH15``."""
        return self.postcode.split(" ", 1)[0]


@dataclass(frozen=True, slots=True)
class Organisation:
    """A Dorset health or care organisation (hand-written list; check ``ods_code_status``)."""

    name: str
    short_name: str
    organisation_type: str
    ods_code: str
    ods_code_status: str
    ons_code: str
    main_postcode: str


@dataclass(frozen=True, slots=True)
class QofPrevalence:
    """Modelled QOF 2019/20 prevalence of one register in one local authority."""

    lad_code: str
    group_code: str
    register: float
    list_size: float
    prevalence: float


@dataclass(frozen=True, slots=True)
class QofPrevalenceByImd:
    """Modelled QOF 2019/20 prevalence in the South West by national IMD decile."""

    imd_decile: int
    group_code: str
    register: float
    list_size: float
    prevalence: float


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


@cache
def lsoas() -> tuple[Lsoa, ...]:
    """All 452 LSOAs of NHS Dorset, in file order."""
    return tuple(
        Lsoa(
            code=r["lsoa11cd"],
            name=r["lsoa11nm"],
            msoa_code=r["msoa11cd"],
            lad_code=r["lad_code"],
            lad_name=r["lad_name"],
            imd2019_score=float(r["imd2019_score"]),
            imd2019_decile=int(r["imd2019_decile"]),
            imd2019_quintile=int(r["imd2019_quintile"]),
            imd2019_income_decile=int(r["imd2019_income_decile"]),
            population_mid2019=int(r["population_mid2019"]),
            longitude=float(r["centroid_long"]),
            latitude=float(r["centroid_lat"]),
        )
        for r in _rows("lsoa.csv")
    )


@cache
def _lsoa_index() -> dict[str, Lsoa]:
    return {area.code: area for area in lsoas()}


def lsoa(code: str) -> Lsoa:
    """Look up one LSOA by its 2011 code.

    Raises:
        ReferenceDataError: If the code is not one of the 452 Dorset LSOAs.
    """
    try:
        return _lsoa_index()[code]
    except KeyError:
        raise ReferenceDataError(
            "LSOA code is not one of the 452 NHS Dorset 2011 LSOAs; use an E01 code from "
            "sharedcare.reference.lsoas()"
        ) from None


@cache
def gp_practices() -> tuple[GpPractice, ...]:
    """The 68 active NHS Dorset GP practices, in file order."""
    return tuple(
        GpPractice(
            code=r["organisation_code"],
            name=r["name"],
            address_lines=tuple(
                r[f"address_line_{i}"] for i in range(1, 6) if r[f"address_line_{i}"]
            ),
            postcode=r["postcode"],
            list_total=int(r["qof1920_list_total"]),
            list_16ov=int(r["qof1920_list_16ov"]),
            list_17ov=int(r["qof1920_list_17ov"]),
            list_18ov=int(r["qof1920_list_18ov"]),
            list_30_74=int(r["qof1920_list_30_74"]),
            list_50ov=int(r["qof1920_list_50ov"]),
            list_0_64=int(r["qof1920_list_0_64"]),
            list_65ov=int(r["qof1920_list_65ov"]),
        )
        for r in _rows("gp_practices.csv")
    )


def gp_practice(code: str) -> GpPractice:
    """Look up one practice by ODS code.

    Raises:
        ReferenceDataError: If the code is not an active NHS Dorset practice.
    """
    for practice in gp_practices():
        if practice.code == code:
            return practice
    raise ReferenceDataError(
        "ODS code is not an active NHS Dorset GP practice; see sharedcare.reference.gp_practices()"
    )


@cache
def organisations() -> tuple[Organisation, ...]:
    """The hand-written list of Dorset organisations (ODS codes carry a confirmation status)."""
    return tuple(
        Organisation(
            name=r["organisation_name"],
            short_name=r["short_name"],
            organisation_type=r["organisation_type"],
            ods_code=r["ods_code"],
            ods_code_status=r["ods_code_status"],
            ons_code=r["ons_code"],
            main_postcode=r["main_postcode"],
        )
        for r in _rows("organisations.csv")
    )


@cache
def qof_prevalence() -> tuple[QofPrevalence, ...]:
    """Modelled QOF 2019/20 prevalence for Dorset's two local authorities (21 registers each)."""
    return tuple(
        QofPrevalence(
            lad_code=r["lad_code"],
            group_code=r["group_code"],
            register=float(r["register"]),
            list_size=float(r["list"]),
            prevalence=float(r["prevalence"]),
        )
        for r in _rows("qof_prevalence.csv")
    )


@cache
def qof_prevalence_by_imd() -> tuple[QofPrevalenceByImd, ...]:
    """Modelled QOF 2019/20 prevalence for the South West region by national IMD decile."""
    return tuple(
        QofPrevalenceByImd(
            imd_decile=int(r["imd_overall"]),
            group_code=r["group_code"],
            register=float(r["register"]),
            list_size=float(r["list"]),
            prevalence=float(r["prevalence"]),
        )
        for r in _rows("qof_prevalence_southwest_by_imd.csv")
    )
