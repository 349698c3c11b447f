"""HL7 v2 data types to FHIR R4 data types, after the v2-to-FHIR data type maps.

See https://hl7.org/fhir/uv/v2mappings/ (datatype maps CX, XPN, XAD, XTN, CWE, DTM,
XCN). Functions return ``None`` for empty input; invalid values make the caller record a
warning rather than guess.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sharedcare.ingest.hl7v2.fields import Composite
from sharedcare.ingest.hl7v2.mapping.context import MappingContext

__all__ = [
    "DEFAULT_ZONE",
    "address",
    "codeable",
    "contact_point",
    "fhir_date",
    "fhir_datetime",
    "gender",
    "human_name",
]

DEFAULT_ZONE = ZoneInfo("Europe/London")
"""Time zone assumed for HL7 timestamps without an offset (the ICS is in England)."""

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")
_HL7_TABLE = re.compile(r"HL7\d{4}")
_URI_SYSTEM = re.compile(r"^(https?://|urn:(oid|uuid):)\S+$")

_SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMED-CT": "http://snomed.info/sct",
    "SCTID": "http://snomed.info/sct",
    "UCUM": "http://unitsofmeasure.org",
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ICD-10": "http://hl7.org/fhir/sid/icd-10",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "READ": "http://read.info/readv2",
    "CTV3": "http://read.info/ctv3",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C4": "http://www.ama-assn.org/go/cpt",
}

_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "other"}

_NAME_USE = {
    "L": "official",
    "D": "usual",
    "M": "maiden",
    "N": "nickname",
    "S": "anonymous",
    "A": "usual",
    "B": "old",
    "P": "official",
    "R": "official",
}

_ADDRESS_PARTS = (
    ("city", 3),
    ("state", 4),
    ("postalCode", 5),
    ("country", 6),
    ("district", 9),
)

_ADDRESS_USE = {"H": "home", "P": "home", "B": "work", "O": "work", "C": "temp", "BA": "old"}

_TELECOM_USE = {
    "PRN": "home",
    "ORN": "home",
    "VHN": "home",
    "WPN": "work",
    "EMR": "temp",
    "ASN": "temp",
    "PRS": "mobile",
}
_TELECOM_SYSTEM = {
    "PH": "phone",
    "CP": "phone",
    "FX": "fax",
    "BP": "pager",
    "INTERNET": "email",
    "X.400": "email",
    "MD": "other",
    "TDD": "other",
    "TTY": "other",
}


def _parse_dtm(value: str) -> tuple[re.Match[str], int] | None:
    match = _DTM.match(value.strip())
    if match is None:
        return None
    digits = sum(1 for g in match.groups()[:6] if g)
    return match, digits


@lru_cache(maxsize=4096)
def fhir_date(value: str) -> str | None:
    """HL7 DT/DTM to a FHIR ``date`` (precision kept, time dropped); ``None`` if invalid.

    Remembered per value (a pure function; birth dates recur with their patients)."""
    parsed = _parse_dtm(value)
    if parsed is None:
        return None
    match, _digits = parsed
    year, month, day = match.group(1), match.group(2), match.group(3)
    try:
        if day:
            date(int(year), int(month), int(day))
            return f"{year}-{month}-{day}"
        if month:
            date(int(year), int(month), 1)
            return f"{year}-{month}"
        return year if int(year) > 0 else None
    except ValueError:
        return None


@lru_cache(maxsize=4096)
def fhir_datetime(value: str, zone: Any = DEFAULT_ZONE) -> str | None:
    """HL7 DTM/TS to a FHIR ``dateTime``; ``None`` if invalid.

    Remembered per value and zone (a pure function; a message repeats its timestamps in
    MSH-7, EVN, OBR and OBX).

    FHIR requires a time zone whenever a time is given, so timestamps without an offset
    are read in ``zone`` (Europe/London). Hours-only precision is padded to minutes.
    https://hl7.org/fhir/R4/datatypes.html#dateTime
    """
    parsed = _parse_dtm(value)
    if parsed is None:
        return None
    match, digits = parsed
    if digits <= 3:
        return fhir_date(value)
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups()[:6])
    frac = match.group(7) or ""
    offset = match.group(8)
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        hours, mins = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or mins > 59:
            return None
        tz = timezone(sign * timedelta(hours=hours, minutes=mins))
        aware = naive.replace(tzinfo=tz)
    else:
        aware = naive.replace(tzinfo=zone)
    text = aware.isoformat()
    if frac:
        # isoformat() has no fraction here; insert the sender's precision before the offset.
        text = text[:19] + frac + text[19:]
    return text


def gender(code: str) -> str | None:
    """HL7 table 0001 to FHIR administrative-gender (v2 ConceptMap table 0001)."""
    return _GENDER.get(code.strip().upper())


def code_system(name: str, ctx: MappingContext) -> str:
    """Map a v2 coding system name (table 0396) to a FHIR system URI."""
    upper = name.strip().upper()
    if upper in _SYSTEMS:
        return _SYSTEMS[upper]
    if _HL7_TABLE.fullmatch(upper):
        return f"http://terminology.hl7.org/CodeSystem/v2-{upper[3:]}"
    if upper.startswith("99") or not upper:
        return ctx.local_system("codesystem", name.strip() or "local")
    if _URI_SYSTEM.match(name.strip()):
        return name.strip()
    return ctx.local_system("codesystem", name.strip())


def codeable(rep: Composite, ctx: MappingContext, table: str = "") -> dict[str, Any] | None:
    """CE/CWE (code^text^system^alt code^alt text^alt system^...^original text) to
    CodeableConcept.

    Args:
        rep: The field repetition.
        ctx: Mapping context (for local code systems).
        table: The HL7 table (e.g. ``HL70069``) assumed when component 3 is empty, for
            fields whose v2 type is a coded IS/ID value.
    """
    if rep.is_empty():
        return None
    values = rep.values(9)  # values[i - 1] is component i
    codings = []
    for first in (0, 3):
        code, display, system = values[first], values[first + 1], values[first + 2]
        if not code:
            continue
        if not system and first == 0:
            system = table
        coding: dict[str, Any] = {"system": code_system(system, ctx), "code": code}
        if display:
            coding["display"] = display
        codings.append(coding)
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    text = values[8] or values[1] or values[4]
    if text:
        concept["text"] = text
    elif not codings and values[0]:
        concept["text"] = values[0]
    return concept or None


def human_name(rep: Composite) -> dict[str, Any] | None:
    """XPN (family^given^second given^suffix^prefix^degree^type) to HumanName."""
    values = rep.values(7)  # values[i - 1] is component i (its first sub-component)
    family = values[0]
    given = [g for g in (values[1], *values[2].split(" ")) if g]
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    if given:
        name["given"] = given
    if values[4]:
        name["prefix"] = [values[4]]
    suffixes = [s for s in (values[3], values[5]) if s]
    if suffixes:
        name["suffix"] = suffixes
    if not name:
        return None
    use = _NAME_USE.get(values[6].upper())
    if use:
        name["use"] = use
    return name


def address(rep: Composite) -> dict[str, Any] | None:
    """XAD (street^other^city^state^postcode^country^type^...^county) to Address."""
    values = rep.values(9)  # values[i - 1] is component i (its first sub-component)
    lines = [line for line in (values[0], values[1]) if line]
    result: dict[str, Any] = {}
    if lines:
        result["line"] = lines
    for key, comp in _ADDRESS_PARTS:
        if values[comp - 1]:
            result[key] = values[comp - 1]
    if not result:
        return None
    kind = values[6].upper()
    if kind in _ADDRESS_USE:
        result["use"] = _ADDRESS_USE[kind]
    elif kind == "M":
        result["type"] = "postal"
    return result


def contact_point(rep: Composite, default_use: str | None = None) -> dict[str, Any] | None:
    """XTN (number^use^equipment^email^country^area^local^extension) to ContactPoint."""
    equipment = rep.c(3).upper()
    email = rep.c(4)
    value = ""
    system = _TELECOM_SYSTEM.get(equipment, "phone")
    if email and (equipment in ("INTERNET", "X.400", "") or rep.c(2).upper() == "NET"):
        value, system = email, "email"
    if not value:
        value = rep.c(1)
    if not value and (rep.c(6) or rep.c(7)):
        value = " ".join(p for p in (rep.c(5), rep.c(6), rep.c(7)) if p)
        if rep.c(8):
            value += f" ext. {rep.c(8)}"
    if not value:
        return None
    point: dict[str, Any] = {"system": system, "value": value}
    use = "mobile" if equipment == "CP" else _TELECOM_USE.get(rep.c(2).upper(), default_use)
    if use:
        point["use"] = use
    return point
