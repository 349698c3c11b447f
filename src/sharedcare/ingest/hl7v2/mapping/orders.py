"""ORM^O01 and OML^O21 orders to ServiceRequest.

After the v2-to-FHIR message maps ORM_O01 and OML_O21 and the ORC/OBR[ServiceRequest]
segment maps: https://hl7.org/fhir/uv/v2mappings/ . Each ORC (with its OBR) becomes a
ServiceRequest. Status follows ORC-1 order control and ORC-5 order status; ask-at-order-
entry OBX segments become Observations in ``supportingInfo``; SPM segments become
Specimens; DG1 diagnoses become ``reasonCode``.
"""

from __future__ import annotations

from typing import Any

from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.mapping.context import MappingContext
from sharedcare.ingest.hl7v2.mapping.datatypes import codeable, fhir_datetime
from sharedcare.ingest.hl7v2.mapping.groups import OrderGroup, order_groups
from sharedcare.ingest.hl7v2.mapping.observations import (
    map_observation,
    map_specimen,
    notes_text,
    specimen_from_obr,
)
from sharedcare.ingest.hl7v2.mapping.oru import order_identifiers
from sharedcare.ingest.hl7v2.mapping.parties import practitioner
from sharedcare.ingest.hl7v2.mapping.patient import map_patient

__all__ = ["map_order"]

_CONTROL_STATUS = {
    "NW": "active",
    "XO": "active",
    "RP": "active",
    "SN": "active",
    "OK": "active",
    "CA": "revoked",
    "OC": "revoked",
    "CR": "revoked",
    "DC": "revoked",
    "OD": "revoked",
    "DR": "revoked",
    "HD": "on-hold",
    "OH": "on-hold",
    "RL": "active",
    "OR": "active",
}
_ORDER_STATUS = {
    "A": "active",
    "IP": "active",
    "SC": "active",
    "CM": "completed",
    "CA": "revoked",
    "DC": "revoked",
    "ER": "entered-in-error",
    "HD": "on-hold",
    "RP": "active",
}
_PRIORITY = {"S": "stat", "A": "asap", "R": "routine", "P": "urgent", "T": "urgent", "C": "urgent"}


def _status(group: OrderGroup) -> str:
    orc = group.orc
    if orc is None:
        return "active"
    order_status = orc.v(5).upper()
    if order_status in _ORDER_STATUS:
        return _ORDER_STATUS[order_status]
    return _CONTROL_STATUS.get(orc.v(1).upper(), "unknown")


def _priority(group: OrderGroup) -> str | None:
    for seg, field_no, comp in ((group.orc, 7, 6), (group.obr, 27, 6)):
        if seg is not None and seg.v(field_no, comp):
            return _PRIORITY.get(seg.v(field_no, comp).upper()[:1])
    for tq1 in group.timing:
        if tq1.v(9):
            return _PRIORITY.get(tq1.v(9).upper()[:1])
    return None


def _request(ctx: MappingContext, group: OrderGroup, ordinal: int) -> None:
    subject = map_patient(ctx, group.pid)
    assert subject is not None
    placer, filler = order_identifiers(ctx, group)
    obr = group.obr
    code_key = obr.v(4, 1) if obr is not None else ""
    if placer:
        key: tuple[str, ...] = ("PLAC", placer["system"], placer["value"], code_key)
    elif filler:
        key = ("FILL", filler["system"], filler["value"], code_key)
    else:
        seg = group.orc or obr
        header = ctx.parsed.header
        ctx.warn(
            seg,
            2,
            "no placer (ORC-2/OBR-2) or filler (ORC-3/OBR-3) order number; the "
            "order is keyed on this message only, so later updates cannot find it",
        )
        key = (subject["reference"], header.sending_application, header.control_id, str(ordinal))
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": ctx.resource_id("ServiceRequest", *key),
        "status": _status(group),
        "intent": "order",
        "subject": subject,
    }
    identifiers = [i for i in (placer, filler) if i]
    if identifiers:
        request["identifier"] = identifiers
    group_number = group.orc.rep(4) if group.orc is not None else None
    if group_number is not None and group_number.c(1):
        request["requisition"] = {
            "system": ctx.identifier_system(
                group_number.c(2), group_number.c(3), group_number.c(4), kind="order-group"
            ),
            "value": group_number.c(1),
        }
    code = codeable(obr.rep(4), ctx) if obr is not None else None
    if code:
        request["code"] = code
    priority = _priority(group)
    if priority:
        request["priority"] = priority
    authored = group.orc.v(9) if group.orc is not None else ""
    if authored:
        when = fhir_datetime(authored)
        if when:
            request["authoredOn"] = when
        else:
            ctx.warn(group.orc, 9, "the value is not a valid HL7 timestamp; authoredOn was omitted")
    requester = None
    for seg, field_no in ((group.orc, 12), (obr, 16)):
        if seg is not None and requester is None:
            requester = practitioner(ctx, seg.rep(field_no))
    if requester:
        request["requester"] = requester
    occurrence = obr.v(7) if obr is not None else ""
    for tq1 in group.timing:
        occurrence = occurrence or tq1.v(7)
    if occurrence:
        when = fhir_datetime(occurrence)
        if when:
            request["occurrenceDateTime"] = when
    reasons = [c for c in (codeable(d.rep(3), ctx) for d in group.diagnoses) if c]
    if reasons:
        request["reasonCode"] = reasons
    specimens = [map_specimen(ctx, spm, key, subject) for spm in group.specimens]
    if not specimens and obr is not None:
        from_obr = specimen_from_obr(ctx, obr, key, subject)
        if from_obr:
            specimens = [from_obr]
    if specimens:
        request["specimen"] = specimens
    support = []
    seen: dict[tuple[str, str], int] = {}
    for line in group.results + group.specimen_results:
        obx = line.obx
        obs_code = (obx.v(3, 1) or obx.v(3, 2), obx.v(4))
        seen[obs_code] = seen.get(obs_code, 0) + 1
        support.append(
            map_observation(
                ctx,
                obx,
                key=(*key, "OBX", *obs_code, str(seen[obs_code])),
                subject=subject,
                notes=line.notes,
                default_time=None,
                specimen=specimens[0] if len(specimens) == 1 else None,
                category="laboratory",
            )
        )
    if support:
        request["supportingInfo"] = support
    notes = notes_text(group.notes)
    if notes:
        request["note"] = [{"text": n} for n in notes]
    ctx.add(request)


def map_order(ctx: MappingContext) -> None:
    """Map an ORM^O01 or OML^O21 into ``ctx``.

    Raises:
        MappingError: If there is no PID, or no ORC/OBR order segment.
    """
    event = ctx.parsed.header.message_type
    if ctx.parsed.first("PID") is None:
        raise MappingError(f"{event} has no PID segment; an order must name the patient", "PID")
    groups = order_groups(ctx.parsed)
    if not groups:
        raise MappingError(f"{event} has no ORC or OBR segment; send the order details", "ORC")
    for ordinal, group in enumerate(groups, start=1):
        _request(ctx, group, ordinal)
