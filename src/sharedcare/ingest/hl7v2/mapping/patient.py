"""PID (and MRG) to FHIR Patient, after the v2-to-FHIR PID[Patient] segment map.

https://hl7.org/fhir/uv/v2mappings/ (Segment Map PID to Patient). Identifiers come from
PID-3 (and PID-2, PID-4 in older feeds); each is scoped to its assigning authority, or to
the sending facility when none is given. An identifier labelled as an NHS number (assigning
authority ``NHS`` or identifier type ``NH``) that passes the modulus 11 check becomes a UK
Core NHS number identifier (https://fhir.nhs.uk/Id/nhs-number).
"""

from __future__ import annotations

from typing import Any

from sharedcare.identity import nhs_number
from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.fields import Composite, SegmentView
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.datatypes import (
    address,
    codeable,
    contact_point,
    fhir_date,
    fhir_datetime,
    gender,
    human_name,
)
from sharedcare.ingest.hl7v2.mapping.parties import organization, practitioner

__all__ = ["identifiers_from", "map_patient", "patient_id_for"]

NHS_AUTHORITIES = frozenset(
    {
        "NHS",
        "NHSNBR",
        "NHSNMBR",
        "NHSNUMBER",
        "NHS_NUMBER",
        "NHS-NUMBER",
        "2.16.840.1.113883.2.1.4.1",
    }
)
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _identifier(
    ctx: MappingContext, rep: Composite, seg: SegmentView, field_no: int
) -> dict[str, Any] | None:
    values = rep.values(5)  # values[i - 1] is component i (its first sub-component)
    value = values[0]
    if not value:
        return None
    namespace, universal, utype = values[3], rep.c(4, 2), rep.c(4, 3)
    type_code = values[4]
    labelled_nhs = (
        namespace.upper() in NHS_AUTHORITIES
        or universal in NHS_AUTHORITIES
        or type_code.upper() in ("NH", "NHS")
    )
    if labelled_nhs:
        bare = nhs_number.normalise(value)
        problem = nhs_number.problem(value)
        if bare is not None and problem is None:
            return {"system": nhs_number.NHS_NUMBER_SYSTEM, "value": bare}
        ctx.warn(
            seg,
            field_no,
            f"an identifier labelled as an NHS number is not valid "
            f"({problem.value if problem else 'unreadable'}); it was kept as a local "
            "identifier, correct it at source",
        )
    ident: dict[str, Any] = {
        "system": ctx.identifier_system(namespace, universal, utype),
        "value": value,
    }
    if type_code:
        ident["type"] = {"coding": [{"system": _V2_0203, "code": type_code}]}
    assigner = namespace or universal or ctx.facility
    if assigner:
        ident["assigner"] = {"display": assigner}
    return ident


def identifiers_from(
    ctx: MappingContext, seg: SegmentView, fields: tuple[int, ...]
) -> list[dict[str, Any]]:
    """Map every CX repetition of the given fields of ``seg`` to FHIR Identifiers."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for field_no in fields:
        for rep in seg.reps(field_no):
            ident = _identifier(ctx, rep, seg, field_no)
            if ident is None:
                continue
            key = (ident["system"], ident["value"])
            if key not in seen:
                seen.add(key)
                out.append(ident)
    return out


def patient_id_for(ctx: MappingContext, identifiers: list[dict[str, Any]]) -> str:
    """Deterministic Patient id: from the first local identifier, else the NHS number."""
    local = [i for i in identifiers if i["system"] != nhs_number.NHS_NUMBER_SYSTEM]
    chosen = (local or identifiers)[0]
    return ctx.resource_id("Patient", chosen["system"], chosen["value"])


def map_patient(
    ctx: MappingContext, pid: SegmentView | None = None, required: bool = True
) -> dict[str, str] | None:
    """Map a PID segment (the message's first by default) to a Patient; return a reference.

    Args:
        ctx: The mapping context.
        pid: The PID to map; the message's first PID when ``None``.
        required: Whether a missing PID is an error (it is for every supported type).

    Returns:
        ``{"reference": "Patient/<id>"}``, or ``None`` when there is no PID and it is
        not required.

    Raises:
        MappingError: If PID is missing or holds no usable identifier.
    """
    pid = pid or ctx.parsed.first("PID")
    if pid is None:
        if not required:
            return None
        raise MappingError(
            "the message has no PID segment; patient identification is required", "PID"
        )
    identifiers = identifiers_from(ctx, pid, (3, 2, 4))
    if not identifiers:
        raise MappingError(
            "PID-3 holds no patient identifier; send at least one identifier "
            "(e.g. hospital number or NHS number)",
            "PID",
            pid.index,
            3,
        )
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id_for(ctx, identifiers),
        "identifier": identifiers,
    }
    names = [n for n in (human_name(r) for r in pid.reps(5)) if n]
    if names:
        patient["name"] = names
    telecom = [t for t in (contact_point(r, "home") for r in pid.reps(13)) if t]
    telecom += [t for t in (contact_point(r, "work") for r in pid.reps(14)) if t]
    if telecom:
        patient["telecom"] = telecom
    sex = pid.v(8)
    if sex:
        mapped = gender(sex)
        if mapped:
            patient["gender"] = mapped
        else:
            ctx.warn(
                pid,
                8,
                "administrative sex is not a table 0001 code (M, F, O, U, A, N); "
                "gender was not recorded",
            )
    dob = pid.v(7)
    if dob:
        birth = fhir_date(dob)
        if birth:
            patient["birthDate"] = birth
        else:
            ctx.warn(
                pid,
                7,
                "date of birth is not a valid HL7 date (YYYYMMDD); birthDate was not recorded",
            )
    death_flag = pid.v(30).upper()
    death_time = pid.v(29)
    if death_time:
        when = fhir_datetime(death_time)
        if when:
            patient["deceasedDateTime"] = when
        else:
            ctx.warn(pid, 29, "date of death is not a valid HL7 timestamp; it was not recorded")
    if "deceasedDateTime" not in patient and death_flag in ("Y", "N"):
        patient["deceasedBoolean"] = death_flag == "Y"
    addresses = [a for a in (address(r) for r in pid.reps(11)) if a]
    if addresses:
        patient["address"] = addresses
    contacts = [c for c in (_contact(ctx, nk1) for nk1 in _next_of_kin(ctx, pid)) if c]
    if contacts:
        patient["contact"] = contacts
    pd1 = _following(ctx, pid, "PD1")
    if pd1 is not None:
        carers = [o for o in (organization(ctx, r) for r in pd1.reps(3)) if o]
        carers += [p for p in (practitioner(ctx, r) for r in pd1.reps(4)) if p]
        if carers:
            patient["generalPractitioner"] = carers
    return ctx.add(patient)


def _following(ctx: MappingContext, pid: SegmentView, seg_id: str) -> SegmentView | None:
    """The first ``seg_id`` segment after ``pid`` and before the next PID."""
    for seg in ctx.parsed.segments[pid.index :]:
        if seg.id == "PID":
            return None
        if seg.id == seg_id:
            return seg
    return None


def _next_of_kin(ctx: MappingContext, pid: SegmentView) -> list[SegmentView]:
    out = []
    for seg in ctx.parsed.segments[pid.index :]:
        if seg.id == "PID":
            break
        if seg.id == "NK1":
            out.append(seg)
    return out


def _contact(ctx: MappingContext, nk1: SegmentView) -> dict[str, Any] | None:
    """NK1 to Patient.contact (v2-to-FHIR NK1[Patient.contact])."""
    contact: dict[str, Any] = {}
    relationships = [
        c for c in (codeable(nk1.rep(3), ctx, "HL70063"), codeable(nk1.rep(7), ctx, "HL70131")) if c
    ]
    if relationships:
        contact["relationship"] = relationships
    name = human_name(nk1.rep(2))
    if name:
        contact["name"] = name
    telecom = [t for t in (contact_point(r, "home") for r in nk1.reps(5)) if t]
    telecom += [t for t in (contact_point(r, "work") for r in nk1.reps(6)) if t]
    if telecom:
        contact["telecom"] = telecom
    home = address(nk1.rep(4))
    if home:
        contact["address"] = home
    if not (name or telecom or home):
        return None
    return contact
