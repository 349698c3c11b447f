"""Lookup tables the indicators join in SQL: ESP2013, LSOA → IMD, practices, code lists.

Each table is loaded into the engine once per run (a few hundred rows) and joined there; no
row of patient data passes through Python. Sources: ``data/SOURCES.md`` and
``sharedcare/reference/data/SOURCES.md``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from sharedcare import reference

__all__ = [
    "EFI_DEFICIT_COUNT",
    "LookupTable",
    "code_lists",
    "esp2013",
    "lookup_tables",
]

EFI_DEFICIT_COUNT = 36
"""The electronic Frailty Index counts 36 deficits (Clegg et al., Age Ageing 2016)."""


@dataclass(frozen=True)
class LookupTable:
    """A small table to create in the engine.

    Attributes:
        name: SQL table name.
        columns: (name, type) pairs; type is ``text``, ``int`` or ``float``.
        rows: the rows, in column order.
    """

    name: str
    columns: tuple[tuple[str, str], ...]
    rows: tuple[tuple[Any, ...], ...]


def _data(name: str) -> bytes:
    return resources.files(__package__).joinpath("data", name).read_bytes()


@cache
def esp2013() -> tuple[tuple[str, int, int, int], ...]:
    """ESP2013 bands as (label, first age, last age, weight); the weights sum to 100,000."""
    reader = csv.DictReader(io.StringIO(_data("esp2013.csv").decode("utf-8")))
    return tuple(
        (r["age_band"], int(r["age_from"]), int(r["age_to"]), int(r["weight"])) for r in reader
    )


@cache
def code_lists() -> dict[str, Any]:
    """The condition and eFI deficit code lists (``data/code_lists.json``)."""
    data = orjson.loads(_data("code_lists.json"))
    if not isinstance(data, dict):
        raise ValueError("data/code_lists.json must hold a JSON object")
    return data


def _broad_band(age_from: int) -> str:
    if age_from < 18:
        return "0-17"
    if age_from < 65:
        return "18-64"
    return "65+"


@cache
def lookup_tables() -> tuple[LookupTable, ...]:
    """Every lookup table the indicators use."""
    esp = LookupTable(
        "ref_esp2013",
        (
            ("age_band", "text"),
            ("age_from", "int"),
            ("age_to", "int"),
            ("weight", "int"),
            ("broad_band", "text"),
        ),
        tuple((*band, _broad_band(band[1])) for band in esp2013()),
    )
    by_age = LookupTable(
        "ref_age",
        (("age", "int"), ("age_band", "text"), ("esp_weight", "int"), ("broad_band", "text")),
        tuple(
            (age, label, weight, _broad_band(first))
            for label, first, last, weight in esp2013()
            for age in range(first, min(last, 120) + 1)
        ),
    )
    lsoa = LookupTable(
        "ref_lsoa",
        (
            ("lsoa", "text"),
            ("imd_decile", "text"),
            ("imd_quintile", "text"),
            ("lad_code", "text"),
            ("locality", "text"),
        ),
        tuple(
            (
                a.code,
                str(a.imd2019_decile),
                str(a.imd2019_quintile),
                a.lad_code,
                a.legacy_district,
            )
            for a in reference.lsoas()
        ),
    )
    practices = LookupTable(
        "ref_practice",
        (("practice_key", "text"), ("practice_code", "text"), ("practice_name", "text")),
        tuple((f"Organization/{p.code}", p.code, p.name) for p in reference.gp_practices()),
    )
    lists = code_lists()
    codes = LookupTable(
        "ref_codes",
        (("list_kind", "text"), ("list_name", "text"), ("code", "text")),
        tuple(
            [
                ("condition", name, code)
                for name, spec in lists["conditions"].items()
                for code in spec["codes"]
            ]
            + [
                ("efi", name, code)
                for name, deficit_codes in lists["efi_deficits"].items()
                for code in deficit_codes
            ]
        ),
    )
    conditions = LookupTable(
        "ref_condition",
        (("condition", "text"), ("title", "text")),
        tuple((name, spec["title"]) for name, spec in lists["conditions"].items()),
    )
    return (esp, by_age, lsoa, practices, codes, conditions)
