"""ADT events to Patient and Encounter, and A40 merges to identity instructions.

After the v2-to-FHIR message maps ADT_A01 (used for A01, A04, A08, A13), ADT_A02, ADT_A03,
ADT_A05 (A28, A31), ADT_A09/A11 and ADT_A39 (A40), and the PV1[Encounter] segment map:
https://hl7.org/fhir/uv/v2mappings/ . Encounter.location carries the location history the
message describes: the current PV1-3 location as ``active`` and, for an A02 transfer, the
prior PV1-6 location as ``completed`` ending at the transfer time. PV1-4 (admission type,
table 0007) goes to ``Encounter.type`` with the ``v2-0007`` system, as in that map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sharedcare.ingest.hl7v2.errors import ErrorCode, MappingError
from sharedcare.ingest.hl7v2.fields import SegmentView
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.datatypes import codeable, fhir_datetime
from sharedcare.ingest.hl7v2.mapping.parties import location, practitioner
from sharedcare.ingest.hl7v2.mapping.patient import identifiers_from, map_patient, patient_id_for

__all__ = ["ADT_EVENTS", "PatientMerge", "map_adt"]

ADT_EVENTS = frozenset({"A01", "A02", "A03", "A04", "A08", "A11", "A13", "A28", "A31", "A40"})
_PERSON_ONLY = frozenset({"A28", "A31", "A40"})
_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_CLASS = {
    "E": ("EMER", "emergency"),
    "I": ("IMP", "inpatient encounter"),
    "O": ("AMB", "ambulatory"),
    "P": ("PRENC", "pre-admission"),
    "R": ("AMB", "ambulatory"),
    "B": ("IMP", "inpatient encounter"),
}
_PARTICIPANTS = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)


@dataclass(frozen=True, slots=True)
class PatientMerge:
    """An A40 merge for the identity service: ``prior`` is merged into ``surviving``.

    Attributes:
        surviving: Reference to the surviving Patient (mapped from PID).
        surviving_identifiers: The surviving patient's identifiers (PID-3).
        prior_patient_id: The id the prior patient would have been given by this mapping.
        prior_identifiers: The identifiers being retired (MRG-1).
    """

    surviving: dict[str, str]
    surviving_identifiers: list[dict[str, Any]]
    prior_patient_id: str
    prior_identifiers: list[dict[str, Any]] = field(default_factory=list)


def _event_time(ctx: MappingContext) -> str | None:
    evn = ctx.parsed.first("EVN")
    for value in (evn.v(6), evn.v(2)) if evn else ():
        if value:
            when = fhir_datetime(value)
            if when:
                return when
    msh_time = ctx.parsed.header.timestamp
    return fhir_datetime(msh_time) if msh_time else None


def _has_visit(pv1: SegmentView) -> bool:
    if pv1.v(2).upper() == "N":
        return False
    return any(pv1.reps(n) for n in (2, 3, 19, 44, 45))


def _status(event: str, pv1: SegmentView) -> str:
    if event == "A11":
        return "cancelled"
    if event == "A03" or (event != "A13" and pv1.v(45)):
        return "finished"
    if pv1.v(2).upper() == "P":
        return "planned"
    return "in-progress"


def _period(ctx: MappingContext, pv1: SegmentView, event: str) -> dict[str, str]:
    period: dict[str, str] = {}
    for key, field_no in (("start", 44), ("end", 45)):
        if key == "end" and event == "A13":
            continue
        value = pv1.v(field_no)
        if not value:
            continue
        when = fhir_datetime(value)
        if when:
            period[key] = when
        else:
            ctx.warn(
                pv1,
                field_no,
                "the value is not a valid HL7 timestamp; the encounter period omits it",
            )
    return period


def _encounter_id(
    ctx: MappingContext, pv1: SegmentView, patient: dict[str, str]
) -> tuple[str, list[dict[str, Any]]]:
    visit = identifiers_from(ctx, pv1, (19,))
    if visit:
        first = visit[0]
        return ctx.resource_id("Encounter", first["system"], first["value"]), visit
    admit = pv1.v(44)
    if admit:
        return ctx.resource_id("Encounter", patient["reference"], admit), []
    header = ctx.parsed.header
    ctx.warn(
        pv1,
        19,
        "no visit number (PV1-19) or admit time (PV1-44); the encounter is "
        "keyed on this message only, so later messages cannot update it",
    )
    return ctx.resource_id(
        "Encounter", patient["reference"], header.sending_application, header.control_id
    ), []


def _encounter(
    ctx: MappingContext, pv1: SegmentView, patient: dict[str, str], event: str
) -> dict[str, str]:
    enc_id, identifiers = _encounter_id(ctx, pv1, patient)
    patient_class = pv1.v(2).upper()
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": enc_id,
        "status": _status(event, pv1),
        "subject": patient,
    }
    if identifiers:
        encounter["identifier"] = identifiers
    # PV1-4 admission type (table 0007: E emergency, U urgent, A accident, C elective...)
    # goes to Encounter.type, as the v2-to-FHIR PV1 map says.
    admission_type = codeable(pv1.rep(4), ctx, "HL70007")
    if admission_type:
        encounter["type"] = [admission_type]
    if patient_class in _CLASS:
        code, display = _CLASS[patient_class]
        encounter["class"] = {"system": _ACT, "code": code, "display": display}
    elif patient_class:
        encounter["class"] = {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0004",
            "code": patient_class,
        }
    else:
        ctx.warn(
            pv1, 2, "patient class is empty; Encounter.class is required, so it was set to unknown"
        )
        encounter["class"] = {
            "system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
            "code": "UNK",
        }
    period = _period(ctx, pv1, event)
    if period:
        encounter["period"] = period
    service = codeable(pv1.rep(10), ctx, "HL70069")
    if service:
        encounter["serviceType"] = service
    participants = []
    for field_no, code, display in _PARTICIPANTS:
        for rep in pv1.reps(field_no):
            who = practitioner(ctx, rep)
            if who:
                participants.append(
                    {
                        "type": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                        "code": code,
                                        "display": display,
                                    }
                                ]
                            }
                        ],
                        "individual": who,
                    }
                )
    if participants:
        encounter["participant"] = participants
    locations = _locations(ctx, pv1, event, encounter["status"])
    if locations:
        encounter["location"] = locations
    hospitalization = {}
    admit_source = codeable(pv1.rep(14), ctx, "HL70023")
    if admit_source:
        hospitalization["admitSource"] = admit_source
    disposition = codeable(pv1.rep(36), ctx, "HL70112")
    if disposition:
        hospitalization["dischargeDisposition"] = disposition
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    pv2 = ctx.parsed.first("PV2")
    reason = codeable(pv2.rep(3), ctx) if pv2 else None
    if reason:
        encounter["reasonCode"] = [reason]
    return ctx.add(encounter)


def _locations(
    ctx: MappingContext, pv1: SegmentView, event: str, status: str
) -> list[dict[str, Any]]:
    when = _event_time(ctx)
    out: list[dict[str, Any]] = []
    if event == "A02":
        prior = location(ctx, pv1.rep(6))
        if prior:
            entry: dict[str, Any] = {"location": prior, "status": "completed"}
            if when:
                entry["period"] = {"end": when}
            out.append(entry)
        else:
            ctx.warn(
                pv1,
                6,
                "the A02 transfer has no prior location (PV1-6); the location history "
                "shows only the new location",
            )
    current = location(ctx, pv1.rep(3))
    if current:
        loc_status = "completed" if status in ("finished", "cancelled") else "active"
        if status == "planned":
            loc_status = "planned"
        entry = {"location": current, "status": loc_status}
        if when and event in ("A01", "A02", "A04"):
            entry["period"] = {"start": when}
        out.append(entry)
    return out


def _merges(ctx: MappingContext) -> list[PatientMerge]:
    merges: list[PatientMerge] = []
    current_pid: SegmentView | None = None
    for seg in ctx.parsed.segments:
        if seg.id == "PID":
            current_pid = seg
        elif seg.id == "MRG":
            if current_pid is None:
                raise MappingError(
                    "MRG comes before any PID; each MRG must follow the PID of "
                    "the surviving patient",
                    "MRG",
                    seg.index,
                )
            surviving = map_patient(ctx, current_pid)
            assert surviving is not None
            prior = identifiers_from(ctx, seg, (1, 4))
            if not prior:
                raise MappingError(
                    "MRG-1 holds no prior patient identifier; an A40 merge needs "
                    "the identifier being retired",
                    "MRG",
                    seg.index,
                    1,
                )
            surviving_ids = identifiers_from(ctx, current_pid, (3, 2, 4))
            merges.append(PatientMerge(surviving, surviving_ids, patient_id_for(ctx, prior), prior))
    if not merges:
        raise MappingError("an A40 merge needs an MRG segment naming the prior patient", "MRG")
    return merges


def map_adt(ctx: MappingContext) -> list[PatientMerge]:
    """Map an ADT message into ``ctx``; return merge instructions (A40 only).

    Raises:
        MappingError: If PID (or, for A40, MRG) is missing or unusable, or an event that
            concerns a visit (A01-A13) has no PV1.
    """
    event = ctx.parsed.header.trigger_event
    if event == "A40":
        return _merges(ctx)
    patient = map_patient(ctx)
    assert patient is not None
    if event in _PERSON_ONLY:
        return []
    pv1 = ctx.parsed.first("PV1")
    if pv1 is None and event == "A08":
        ctx.warn(
            None,
            0,
            "ADT^A08 has no PV1 segment; the patient was updated but no Encounter was recorded",
            ErrorCode.REQUIRED_FIELD_MISSING,
        )
        return []
    if pv1 is None:
        raise MappingError(f"ADT^{event} has no PV1 segment; the visit cannot be recorded", "PV1")
    if _has_visit(pv1):
        _encounter(ctx, pv1, patient, event)
    else:
        ctx.note("PV1 holds no visit details, so no Encounter was created")
    return []
