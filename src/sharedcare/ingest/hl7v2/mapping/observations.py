"""OBX to Observation and SPM/OBR-15 to Specimen, after the v2-to-FHIR OBX and SPM maps.

https://hl7.org/fhir/uv/v2mappings/ (Segment Map OBX[Observation], SPM[Specimen]).
OBX-5 is mapped by its value type OBX-2: NM to valueQuantity (units from OBX-6), ST/TX/FT
to valueString, CE/CWE/CNE to valueCodeableConcept, SN to a quantity, ratio or range,
DT/TS/DTM to valueDateTime and TM to valueTime. OBX-7 becomes referenceRange, OBX-8
interpretation, OBX-11 status, OBX-14 effective time, OBX-16/OBX-23/OBX-25 performers.
"""

from __future__ import annotations

import re
from typing import Any

from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.fields import Composite, SegmentView
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.datatypes import codeable, fhir_datetime
from sharedcare.ingest.hl7v2.mapping.parties import organization, practitioner

__all__ = ["map_observation", "map_specimen", "notes_text", "specimen_from_obr"]

_OBS_STATUS = {
    "C": "corrected",
    "D": "entered-in-error",
    "F": "final",
    "I": "registered",
    "N": "cancelled",
    "O": "registered",
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "U": "final",
    "W": "entered-in-error",
    "X": "cancelled",
    "A": "amended",
}
_INTERP_V3 = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_INTERP_CODES = frozenset(
    {
        "<",
        ">",
        "A",
        "AA",
        "B",
        "D",
        "H",
        "HH",
        "HU",
        "I",
        "L",
        "LL",
        "LU",
        "MS",
        "N",
        "R",
        "S",
        "U",
        "VS",
        "W",
        "NEG",
        "POS",
        "IND",
        "E",
        "EX",
        "HX",
        "LX",
        "NR",
        "RR",
        "SDD",
        "SYN-R",
        "SYN-S",
        "CAR",
        "DET",
        "ND",
        "QCF",
        "TOX",
        "WR",
    }
)
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)"
_RANGE = re.compile(rf"^({_NUMBER})\s*(?:-|_|to)\s*({_NUMBER})$")
_BOUND = re.compile(rf"^(<=|>=|<|>)\s*({_NUMBER})$")
_NUM = re.compile(rf"^{_NUMBER}$")
_INTEGER = re.compile(r"[-+]?\d+")
_TEXT_TYPES = frozenset(
    {
        "ST",
        "TX",
        "FT",
        "ID",
        "IS",
        "XPN",
        "XAD",
        "XTN",
        "XCN",
        "XON",
        "CX",
        "EI",
        "CF",
        "TN",
        "AD",
        "PN",
        "CK",
        "CN",
        "FN",
    }
)


def notes_text(notes: list[SegmentView]) -> list[str]:
    """Text of NTE segments (NTE-3, repetitions joined by newlines), blanks dropped."""
    out = []
    for nte in notes:
        text = "\n".join(r.c(1) for r in nte.reps(3)).strip()
        if text:
            out.append(text)
    return out


def _number(text: str) -> float | int | None:
    if not _NUM.match(text):
        return None
    value = float(text)
    return int(value) if _INTEGER.fullmatch(text) else value


def _unit_fields(units: Composite, ctx: MappingContext) -> dict[str, str]:
    """The unit, code and system of a Quantity in units ``units`` (OBX-6, a CWE), read
    once per OBX for its value and reference range alike."""
    if units.is_empty():
        return {}
    values = units.values(3)  # values[i - 1] is component i (its first sub-component)
    code, text, system = values[0], values[1], values[2].upper()
    fields = {"unit": text or code}
    if code:
        fields["code"] = code
        fields["system"] = (
            "http://unitsofmeasure.org"
            if system in ("UCUM", "", "ANS+")
            else ctx.local_system("units", system)
        )
    return fields


def _quantity(value: float | int, units: dict[str, str]) -> dict[str, Any]:
    """A Quantity of ``value`` in ``units`` (from :func:`_unit_fields`)."""
    return {"value": value, **units}


def _reference_range(text: str, units: dict[str, str]) -> dict[str, Any]:
    compact = text.strip()
    match = _RANGE.match(compact)
    if match:
        low, high = _number(match.group(1)), _number(match.group(2))
        if low is not None and high is not None:
            return {
                "low": _quantity(low, units),
                "high": _quantity(high, units),
                "text": compact,
            }
    bound = _BOUND.match(compact)
    if bound:
        num = _number(bound.group(2))
        if num is not None:
            key = "high" if bound.group(1).startswith("<") else "low"
            return {key: _quantity(num, units), "text": compact}
    return {"text": compact}


def _interpretation(reps: list[Composite]) -> list[dict[str, Any]]:
    out = []
    for rep in reps:
        code = rep.c(1)
        if not code:
            continue
        system = (
            _INTERP_V3
            if code.upper() in _INTERP_CODES
            else "http://terminology.hl7.org/CodeSystem/v2-0078"
        )
        coding: dict[str, Any] = {"system": system, "code": code}
        if rep.c(2):
            coding["display"] = rep.c(2)
        out.append({"coding": [coding]})
    return out


def _structured_numeric(rep: Composite, units: dict[str, str]) -> dict[str, Any] | None:
    comparator, num1, sep, num2 = rep.c(1), rep.c(2), rep.c(3), rep.c(4)
    first = _number(num1)
    second = _number(num2) if num2 else None
    if first is None:
        return None
    if not sep and not num2:
        qty = _quantity(first, units)
        if comparator in ("<", ">", "<=", ">="):
            qty["comparator"] = comparator
        elif comparator not in ("", "="):
            return None
        return {"valueQuantity": qty}
    if second is None:
        return None
    if sep in (":", "/"):
        return {"valueRatio": {"numerator": {"value": first}, "denominator": {"value": second}}}
    if sep == "-":
        return {
            "valueRange": {
                "low": _quantity(first, units),
                "high": _quantity(second, units),
            }
        }
    return None


def _value(ctx: MappingContext, obx: SegmentView, units: dict[str, str]) -> dict[str, Any]:
    value_type = obx.v(2).upper()
    reps = obx.reps(5)
    if not reps:
        return {}
    first = reps[0]
    if value_type == "NM":
        text = first.c(1)
        num = _number(text)
        if num is not None:
            return {"valueQuantity": _quantity(num, units)}
        bound = _BOUND.match(text.strip())
        if bound and _number(bound.group(2)) is not None:
            qty = _quantity(_number(bound.group(2)) or 0, units)
            qty["comparator"] = bound.group(1)
            return {"valueQuantity": qty}
        ctx.warn(obx, 5, "value type NM but the value is not a number; it was kept as text")
        return {"valueString": text}
    if value_type == "SN":
        mapped = _structured_numeric(first, units)
        if mapped:
            return mapped
        ctx.warn(obx, 5, "structured numeric (SN) value could not be read; kept as text")
        return {"valueString": "".join(first.c(i) for i in range(1, 5))}
    if value_type in ("CE", "CWE", "CNE", "CF"):
        concept = codeable(first, ctx)
        return {"valueCodeableConcept": concept} if concept else {}
    if value_type in ("DT", "TS", "DTM"):
        when = fhir_datetime(first.c(1))
        if when:
            return {"valueDateTime": when}
        ctx.warn(
            obx, 5, f"value type {value_type} but the value is not a valid HL7 date; kept as text"
        )
        return {"valueString": first.c(1)}
    if value_type == "TM":
        match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?", first.c(1))
        if match:
            hh, mm, ss = match.group(1), match.group(2) or "00", match.group(3) or "00"
            return {"valueTime": f"{hh}:{mm}:{ss}"}
        ctx.warn(obx, 5, "value type TM but the value is not a valid time; kept as text")
        return {"valueString": first.c(1)}
    text = "\n".join(_rep_text(r) for r in reps)
    if value_type not in _TEXT_TYPES:
        ctx.warn(
            obx,
            2,
            "value type is not one this mapping converts (NM, SN, ST, TX, FT, "
            "CE, CWE, DT, TS, TM); the value was kept as text",
        )
    return {"valueString": text}


def _rep_text(rep: Composite) -> str:
    parts = [rep.c(i) for i in range(1, len(rep) + 1)]
    while parts and not parts[-1]:
        parts.pop()
    return "^".join(parts) if len(parts) > 1 else (parts[0] if parts else "")


def map_observation(
    ctx: MappingContext,
    obx: SegmentView,
    *,
    key: tuple[str, ...],
    subject: dict[str, str],
    notes: list[SegmentView],
    default_time: str | None,
    specimen: dict[str, str] | None,
    category: str = "laboratory",
) -> dict[str, str]:
    """Map one OBX (and its NTEs) to an Observation; return a reference.

    Args:
        ctx: Mapping context.
        obx: The OBX segment.
        key: Sender-scoped key of this result (report key, code, sub-id, ordinal).
        subject: Patient reference.
        notes: NTE segments following the OBX.
        default_time: FHIR dateTime used when OBX-14 is empty (OBR-7).
        specimen: Specimen reference, when the order has exactly one.
        category: observation-category code.

    Raises:
        MappingError: If OBX-3 (what was observed) is empty.
    """
    code = codeable(obx.rep(3), ctx)
    if code is None:
        raise MappingError(
            f"OBX-3 observation identifier is empty in segment {obx.index}; "
            "every result needs a code",
            "OBX",
            obx.index,
            3,
        )
    status_code = obx.v(11).upper()
    status = _OBS_STATUS.get(status_code)
    if status is None:
        ctx.warn(
            obx, 11, "result status is empty or not a table 0085 code; status was set to unknown"
        )
        status = "unknown"
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": ctx.resource_id("Observation", *key),
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": category,
                    }
                ]
            }
        ],
        "code": code,
        "subject": subject,
    }
    units = _unit_fields(obx.rep(6), ctx)
    observation.update(_value(ctx, obx, units))
    ranges = obx.v(7)
    if ranges:
        observation["referenceRange"] = [_reference_range(ranges, units)]
    interpretation = _interpretation(obx.reps(8))
    if interpretation:
        observation["interpretation"] = interpretation
    observed = obx.v(14)
    when = fhir_datetime(observed) if observed else None
    if observed and when is None:
        ctx.warn(
            obx, 14, "the value is not a valid HL7 timestamp; the report time was used instead"
        )
    if when or default_time:
        observation["effectiveDateTime"] = when or default_time
    performers = [p for p in (practitioner(ctx, r) for r in obx.reps(16)) if p]
    performers += [p for p in (organization(ctx, r) for r in obx.reps(23)) if p]
    performers += [p for p in (practitioner(ctx, r) for r in obx.reps(25)) if p]
    if performers:
        observation["performer"] = performers
    method = codeable(obx.rep(17), ctx)
    if method:
        observation["method"] = method
    if specimen:
        observation["specimen"] = specimen
    texts = notes_text(notes)
    if texts:
        observation["note"] = [{"text": t} for t in texts]
    return ctx.add(observation)


def map_specimen(
    ctx: MappingContext, spm: SegmentView, key: tuple[str, ...], subject: dict[str, str]
) -> dict[str, str]:
    """Map SPM (v2.5+) to a Specimen; return a reference."""
    placer, filler = spm.rep(2).c(1, 1), spm.rep(2).c(2, 1)
    ident = filler or placer
    spec_key = (ctx.facility, "SPM-2", ident) if ident else (*key, "SPM", spm.v(1) or "1")
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": ctx.resource_id("Specimen", *spec_key),
        "subject": subject,
    }
    if ident:
        specimen["identifier"] = [{"system": ctx.local_system("specimen"), "value": ident}]
    kind = codeable(spm.rep(4), ctx, "HL70487")
    if kind:
        specimen["type"] = kind
    collection: dict[str, Any] = {}
    collected = spm.v(17)
    if collected:
        when = fhir_datetime(collected)
        if when:
            collection["collectedDateTime"] = when
        else:
            ctx.warn(spm, 17, "collection time is not a valid HL7 timestamp; it was omitted")
    site = codeable(spm.rep(8), ctx)
    if site:
        collection["bodySite"] = site
    method = codeable(spm.rep(7), ctx)
    if method:
        collection["method"] = method
    if collection:
        specimen["collection"] = collection
    received = spm.v(18)
    if received:
        when = fhir_datetime(received)
        if when:
            specimen["receivedTime"] = when
    return ctx.add(specimen)


def specimen_from_obr(
    ctx: MappingContext, obr: SegmentView, key: tuple[str, ...], subject: dict[str, str]
) -> dict[str, str] | None:
    """Map OBR-15 specimen source (v2.3/2.4, SPS) and OBR-7 to a Specimen, if present."""
    rep = obr.rep(15)
    if rep.is_empty():
        return None
    source = [rep.c(1, i) for i in range(1, 4)]
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": ctx.resource_id("Specimen", *key, "OBR-15"),
        "subject": subject,
    }
    code, text, system = source
    if code or text:
        concept: dict[str, Any] = {}
        if code:
            concept["coding"] = [
                {"system": ctx.local_system("codesystem", system or "0070"), "code": code}
            ]
            if system.upper() in ("HL70070", "0070", ""):
                concept["coding"][0]["system"] = "http://terminology.hl7.org/CodeSystem/v2-0070"
        if text:
            concept["text"] = text
        specimen["type"] = concept
    collected = fhir_datetime(obr.v(7)) if obr.v(7) else None
    site = rep.c(4)
    collection: dict[str, Any] = {}
    if collected:
        collection["collectedDateTime"] = collected
    if site:
        collection["bodySite"] = {"text": site}
    if collection:
        specimen["collection"] = collection
    return ctx.add(specimen)
