"""ORU^R01 results to DiagnosticReport with its Observations and Specimens.

After the v2-to-FHIR message map ORU_R01 and segment map OBR[DiagnosticReport]:
https://hl7.org/fhir/uv/v2mappings/ . Each OBR becomes a DiagnosticReport whose ``result``
lists the Observations from its OBX segments. Radiology reports (OBR-24 a radiology
section) are handed to :mod:`.radiology`, which adds the report text and an ImagingStudy.
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.fields import Composite, SegmentView
from sharedcare.ingest.hl7v2.mapping import radiology
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.datatypes import codeable, fhir_datetime
from sharedcare.ingest.hl7v2.mapping.groups import OrderGroup, order_groups
from sharedcare.ingest.hl7v2.mapping.observations import (
    map_observation,
    map_specimen,
    notes_text,
    specimen_from_obr,
)
from sharedcare.ingest.hl7v2.mapping.parties import organization, practitioner
from sharedcare.ingest.hl7v2.mapping.patient import map_patient

__all__ = ["map_oru", "order_identifiers"]

_REPORT_STATUS = {
    "O": "registered",
    "I": "registered",
    "S": "partial",
    "A": "partial",
    "P": "preliminary",
    "C": "corrected",
    "R": "partial",
    "F": "final",
    "X": "cancelled",
    "Y": "unknown",
    "Z": "unknown",
    "M": "partial",
}
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _ei(ctx: MappingContext, rep: Composite, type_code: str) -> dict[str, Any] | None:
    values = rep.values(4)  # values[i - 1] is component i (its first sub-component)
    value = values[0]
    if not value:
        return None
    return {
        "type": {"coding": [{"system": _V2_0203, "code": type_code}]},
        "system": ctx.identifier_system(values[1], values[2], values[3], kind="order"),
        "value": value,
    }


def order_identifiers(
    ctx: MappingContext, group: OrderGroup
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Placer and filler order numbers (ORC-2/OBR-2, ORC-3/OBR-3) as FHIR Identifiers."""
    placer = filler = None
    for seg in (group.orc, group.obr):
        if seg is None:
            continue
        placer = placer or _ei(ctx, seg.rep(2), "PLAC")
        filler = filler or _ei(ctx, seg.rep(3), "FILL")
    return placer, filler


def _cnn_practitioner(ctx: MappingContext, rep: Composite) -> dict[str, str] | None:
    subs = rep.subs(1)
    if not any(subs):
        return None
    return practitioner(ctx, Composite(subs, subcomponent=""))


def _report(ctx: MappingContext, group: OrderGroup, ordinal: int) -> None:
    obr = group.obr
    assert obr is not None
    subject = map_patient(ctx, group.pid)
    assert subject is not None
    code = codeable(obr.rep(4), ctx)
    if code is None:
        raise MappingError(
            f"OBR-4 universal service identifier is empty in segment "
            f"{obr.index}; a report needs to say what was tested",
            "OBR",
            obr.index,
            4,
        )
    placer, filler = order_identifiers(ctx, group)
    code_key = obr.v(4, 1) or obr.v(4, 2)
    if filler:
        key: tuple[str, ...] = ("FILL", filler["system"], filler["value"], code_key)
    elif placer:
        key = ("PLAC", placer["system"], placer["value"], code_key)
    else:
        header = ctx.parsed.header
        ctx.warn(
            obr,
            3,
            "no filler (OBR-3) or placer (OBR-2) order number; the report is keyed "
            "on this message only, so corrections cannot update it",
        )
        key = (subject["reference"], header.sending_application, header.control_id, str(ordinal))
    status_code = obr.v(25).upper()
    status = _REPORT_STATUS.get(status_code)
    if status is None:
        ctx.warn(
            obr, 25, "result status is empty or not a table 0123 code; status was set to unknown"
        )
        status = "unknown"
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": ctx.resource_id("DiagnosticReport", *key),
        "status": status,
        "code": code,
        "subject": subject,
    }
    identifiers = [i for i in (filler, placer) if i]
    if identifiers:
        report["identifier"] = identifiers
    if placer:
        report["basedOn"] = [{"type": "ServiceRequest", "identifier": placer}]
    section = obr.v(24).upper()
    is_imaging = radiology.is_radiology(group)
    categories = []
    if section:
        categories.append(
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section}
                ]
            }
        )
    if not is_imaging and not section:
        categories.append(
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}
        )
    if categories:
        report["category"] = categories
    effective = _time(ctx, obr, 7)
    if effective:
        report["effectiveDateTime"] = effective
    issued = _time(ctx, obr, 22)
    if issued and "T" in issued:
        report["issued"] = issued
    performers = []
    for line in group.results:
        for rep in line.obx.reps(23):
            org = organization(ctx, rep)
            if org and org not in performers:
                performers.append(org)
    if performers:
        report["performer"] = performers
    interpreters = [p for p in (_cnn_practitioner(ctx, r) for r in obr.reps(32)) if p]
    if interpreters:
        report["resultsInterpreter"] = interpreters
    specimens = [map_specimen(ctx, spm, key, subject) for spm in group.specimens]
    if not specimens:
        from_obr = specimen_from_obr(ctx, obr, key, subject)
        if from_obr:
            specimens = [from_obr]
    if specimens:
        report["specimen"] = specimens
    single_specimen = specimens[0] if len(specimens) == 1 else None
    category = "imaging" if is_imaging else "laboratory"
    results = []
    seen: dict[tuple[str, str], int] = {}
    for line in group.results + group.specimen_results:
        obx = line.obx
        obs_code = (obx.v(3, 1) or obx.v(3, 2), obx.v(4))
        seen[obs_code] = seen.get(obs_code, 0) + 1
        obs_key = (*key, "OBX", *obs_code, str(seen[obs_code]))
        results.append(
            map_observation(
                ctx,
                obx,
                key=obs_key,
                subject=subject,
                notes=line.notes,
                default_time=effective,
                specimen=single_specimen,
                category=category,
            )
        )
    if results:
        report["result"] = results
    conclusion = notes_text(group.notes)
    if conclusion:
        report["conclusion"] = "\n".join(conclusion)
    if is_imaging:
        radiology.add_imaging(ctx, group, report, subject, key)
    ctx.add(report)


def _time(ctx: MappingContext, seg: SegmentView, field_no: int) -> str | None:
    value = seg.v(field_no)
    if not value:
        return None
    when = fhir_datetime(value)
    if when is None:
        ctx.warn(seg, field_no, "the value is not a valid HL7 timestamp; it was omitted")
    return when


def map_oru(ctx: MappingContext) -> None:
    """Map an ORU^R01 into ``ctx``.

    Raises:
        MappingError: If there is no PID or no OBR, or a report or result lacks its code.
    """
    if ctx.parsed.first("PID") is None:
        raise MappingError("ORU^R01 has no PID segment; results must name the patient", "PID")
    groups = [g for g in order_groups(ctx.parsed) if g.obr is not None]
    if not groups:
        raise MappingError("ORU^R01 has no OBR segment; each result must follow its OBR", "OBR")
    for ordinal, group in enumerate(groups, start=1):
        _report(ctx, group, ordinal)
