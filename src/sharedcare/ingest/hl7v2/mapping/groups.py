"""Group the flat segment list of an order or result message into orders.

ORU^R01, ORM^O01 and OML^O21 repeat an order group (ORC, OBR, NTE, OBX with NTE, SPM with
its OBX) under each patient (PID). This walks the segments once and builds those groups,
attaching each NTE to the segment it follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sharedcare.ingest.hl7v2.errors import MappingError
from sharedcare.ingest.hl7v2.fields import SegmentView
from sharedcare.ingest.hl7v2.parse import ParsedMessage

__all__ = ["OrderGroup", "ResultLine", "order_groups"]


@dataclass(slots=True)
class ResultLine:
    """An OBX and the NTEs that follow it."""

    obx: SegmentView
    notes: list[SegmentView] = field(default_factory=list)


@dataclass(slots=True)
class OrderGroup:
    """One order: its patient, ORC, OBR, notes, results and specimens."""

    pid: SegmentView | None
    orc: SegmentView | None
    obr: SegmentView | None
    notes: list[SegmentView] = field(default_factory=list)
    results: list[ResultLine] = field(default_factory=list)
    specimens: list[SegmentView] = field(default_factory=list)
    specimen_results: list[ResultLine] = field(default_factory=list)
    diagnoses: list[SegmentView] = field(default_factory=list)
    timing: list[SegmentView] = field(default_factory=list)


def order_groups(parsed: ParsedMessage) -> list[OrderGroup]:
    """Split the message into order groups, in order.

    An ORC starts a group; an OBR joins the group of the ORC just before it, or starts a
    new group when that group already has an OBR. DG1 segments before the first order are
    shared by every group of the same patient.

    Raises:
        MappingError: If an OBX or SPM appears before any ORC/OBR.
    """
    groups: list[OrderGroup] = []
    pid: SegmentView | None = None
    patient_dg1: list[SegmentView] = []
    group: OrderGroup | None = None
    note_target: list[SegmentView] | None = None
    in_specimen = False
    for seg in parsed.segments[1:]:
        sid = seg.id
        if sid == "PID":
            pid, group, note_target, patient_dg1 = seg, None, None, []
        elif sid == "ORC":
            group = OrderGroup(pid, seg, None, diagnoses=list(patient_dg1))
            groups.append(group)
            note_target, in_specimen = group.notes, False
        elif sid == "OBR":
            if group is None or group.obr is not None:
                group = OrderGroup(pid, None, seg, diagnoses=list(patient_dg1))
                groups.append(group)
            else:
                group.obr = seg
            note_target, in_specimen = group.notes, False
        elif sid == "OBX":
            if group is None:
                raise MappingError(
                    f"OBX at segment {seg.index} comes before any ORC or OBR; "
                    "results must follow the order they belong to",
                    "OBX",
                    seg.index,
                )
            line = ResultLine(seg)
            (group.specimen_results if in_specimen else group.results).append(line)
            note_target = line.notes
        elif sid == "SPM":
            if group is None:
                raise MappingError(
                    f"SPM at segment {seg.index} comes before any ORC or OBR", "SPM", seg.index
                )
            group.specimens.append(seg)
            in_specimen, note_target = True, None
        elif sid == "NTE":
            if note_target is not None:
                note_target.append(seg)
        elif sid == "DG1":
            if group is None:
                patient_dg1.append(seg)
            else:
                group.diagnoses.append(seg)
        elif sid == "TQ1" and group is not None:
            group.timing.append(seg)
    return groups
