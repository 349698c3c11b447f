"""HL7 v2.4 messages as the acute trusts' systems would send them (PAS, LIMS, RIS).

Messages are built as strings: segments end with a carriage return, fields are escaped with the
standard HL7 escape sequences. Each trust puts its own hospital number first in PID-3 and adds
the NHS number as a second repetition only when its record holds one (and not on every message).
Message structures follow HL7 v2.4 chapter 3 (ADT), 4 (ORM) and 7 (ORU).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

from sharedcare.synthetic import codes
from sharedcare.synthetic.events import Imaging, LabOrder
from sharedcare.synthetic.geography import ACUTE_SITES
from sharedcare.synthetic.people import Person
from sharedcare.synthetic.quality import OrgRecord

SEGMENT_END = "\r"
MESSAGE_SEPARATOR = "\n"
"""Messages in a file are separated by a newline after the final segment's carriage return."""

_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def escape(text: str) -> str:
    """Escape HL7 delimiters in free text (HL7 v2.4 section 2.9)."""
    if _SPECIAL.search(text):
        for raw, esc in _ESCAPES:
            text = text.replace(raw, esc)
    return text


_SPECIAL = re.compile(r"[\\|^&~]")


def hl7_ts(moment: datetime) -> str:
    """HL7 TS to the minute (f-string: several times faster than strftime)."""
    return (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}{moment.hour:02d}{moment.minute:02d}"
    )


def _d(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


class MessageBuilder:
    """Builds messages for one trust with its own message-control-id sequence."""

    def __init__(self, trust_code: str, chunk: int) -> None:
        self.trust = trust_code
        self.chunk = chunk
        self.sequence = 0

    def _msh(self, app: str, site: str, moment: datetime, kind: str) -> str:
        self.sequence += 1
        control = f"{self.trust}{self.chunk:05d}{self.sequence:07d}"
        return f"MSH|^~\\&|{app}|{site}|SHAREDCARE|QVV|{hl7_ts(moment)}00||{kind}|{control}|P|2.4"

    def pid(
        self, person: Person, record: OrgRecord, with_nhs: bool, dead: datetime | None = None
    ) -> str:
        """PID segment from the trust's own record of the person."""
        ids = f"{record.local_id}^^^{self.trust}^MR"
        if with_nhs and record.nhs_number:
            ids += f"~{record.nhs_number}^^^NHS^NH"
        a = record.address
        address = f"{escape(a.line)}^^{escape(a.town)}^^{a.postcode}^GBR^H"
        sex = "M" if person.male else "F"
        ethnic = f"{person.ethnic}^^NHSEC"
        death = f"|{hl7_ts(dead)}|Y" if dead else ""
        return (
            f"PID|1||{ids}||{escape(record.family)}^{escape(record.given)}^^^^^L||"
            f"{_d(record.birth_date)}|{sex}|||{address}|||||||||||{ethnic}{death}"
        )

    def adt(
        self,
        event: str,
        moment: datetime,
        site: int,
        pid: str,
        pv1: str,
        extra: tuple[str, ...] = (),
    ) -> str:
        """A complete ADT^<event> message."""
        s = ACUTE_SITES[site]
        msh = self._msh("PAS", s.key, moment, f"ADT^{event}")
        evn = f"EVN|{event}|{hl7_ts(moment)}"
        return SEGMENT_END.join((msh, evn, pid, pv1, *extra)) + SEGMENT_END

    def merge(self, moment: datetime, site: int, pid: str, old_id: str) -> str:
        """ADT^A40: merge the duplicate hospital number ``old_id`` into the PID-3 record."""
        s = ACUTE_SITES[site]
        msh = self._msh("PAS", s.key, moment, "ADT^A40")
        evn = f"EVN|A40|{hl7_ts(moment)}"
        mrg = f"MRG|{old_id}^^^{self.trust}^MR"
        return SEGMENT_END.join((msh, evn, pid, mrg)) + SEGMENT_END

    def lab_result(self, order: LabOrder, pid: str, placer: str) -> str:
        """ORU^R01 from One Dorset Pathology for one panel."""
        s = ACUTE_SITES[order.site]
        panel_code, tests = codes.LAB_PANELS[order.panel]
        msh = self._msh("ODP", s.key, order.reported, "ORU^R01")
        patient_class = "I" if order.requester.startswith("ward:") else "O"
        location = order.requester.removeprefix("ward:")
        pv1 = f"PV1|1|{patient_class}|{location}^^^{s.key}"
        orc = f"ORC|RE|{placer}|{placer}F"
        obr = (
            f"OBR|1|{placer}|{placer}F|{panel_code.code}^{panel_code.display}^L|||"
            f"{hl7_ts(order.requested)}||||||||{location}|{location}||||||{hl7_ts(order.reported)}||"
            f"{'HM'}|F"
        )
        segments = [msh, pid, pv1, orc, obr]
        for i, (test, value) in enumerate(zip(tests, order.values, strict=True), start=1):
            flag = "L" if value < test.low else "H" if value > test.high else "N"
            low = f"{test.low:g}" if test.low else ""
            rng = f"{low}-{test.high:g}" if low else f"<{test.high:g}"
            segments.append(
                f"OBX|{i}|NM|{test.code.code}^{test.code.display}^LN||{value:g}|{test.unit}|"
                f"{rng}|{flag}|||F|||{hl7_ts(order.reported)}"
            )
        return SEGMENT_END.join(segments) + SEGMENT_END

    def radiology_order(self, study: Imaging, pid: str, placer: str) -> str:
        """ORM^O01 for a radiology examination."""
        s = ACUTE_SITES[study.site]
        msh = self._msh("RIS", s.key, study.ordered, "ORM^O01")
        pv1 = f"PV1|1|{'E' if study.requester == 'ED' else 'O'}|{study.requester}^^^{s.key}"
        orc = f"ORC|NW|{placer}||||||||||||||{hl7_ts(study.ordered)}"
        obr = (
            f"OBR|1|{placer}||{_proc_code(study)}^{study.procedure}^L|||{hl7_ts(study.ordered)}"
            f"||||||||||||||||{study.modality}"
        )
        return SEGMENT_END.join((msh, pid, pv1, orc, obr)) + SEGMENT_END

    def radiology_report(self, study: Imaging, pid: str, placer: str, report_time: datetime) -> str:
        """ORU^R01 carrying the radiologist's report text."""
        s = ACUTE_SITES[study.site]
        msh = self._msh("RIS", s.key, report_time, "ORU^R01")
        pv1 = f"PV1|1|{'E' if study.requester == 'ED' else 'O'}|{study.requester}^^^{s.key}"
        orc = f"ORC|RE|{placer}|{placer}R"
        obr = (
            f"OBR|1|{placer}|{placer}R|{_proc_code(study)}^{study.procedure}^L|||"
            f"{hl7_ts(study.performed)}||||||||||||||{hl7_ts(report_time)}||{study.modality}|F"
        )
        code = _proc_code(study)
        obx = f"OBX|1|TX|{code}^{study.procedure} report^L||{escape(study.report)}||||||F"
        return SEGMENT_END.join((msh, pid, pv1, orc, obr, obx)) + SEGMENT_END


def _proc_code(study: Imaging) -> str:
    """Local RIS examination code, e.g. ``CTHEAD``."""
    return "".join(ch for ch in study.procedure.upper() if ch.isalpha())[:8]


def pv1(
    patient_class: str,
    site: int,
    ward: str,
    visit: str,
    *,
    admission_type: str = "",
    prior_ward: str = "",
    service: str = "",
    disposition: str = "",
    admitted: datetime | None = None,
    discharged: datetime | None = None,
) -> str:
    """PV1: class (PV1-2), location (PV1-3), admission type (PV1-4), prior location (PV1-6),
    hospital service (PV1-10), visit number (PV1-19), discharge disposition (PV1-36) and
    admit/discharge times (PV1-44/45)."""
    key = ACUTE_SITES[site].key
    fields = [""] * 46
    fields[0] = "PV1"
    fields[1] = "1"
    fields[2] = patient_class
    fields[3] = f"{ward}^^^{key}"
    fields[4] = admission_type
    fields[6] = f"{prior_ward}^^^{key}" if prior_ward else ""
    fields[10] = service
    fields[19] = visit
    fields[36] = disposition
    fields[44] = hl7_ts(admitted) if admitted else ""
    fields[45] = hl7_ts(discharged) if discharged else ""
    while fields and not fields[-1]:
        fields.pop()
    return "|".join(fields)


def iter_messages(path: Path) -> Iterator[str]:
    """Yield each message in a ``.hl7`` (or ``.hl7.gz``) file written by the generator."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:  # binary: only b"\n" ends a line, never the segment \r
        for line in handle:
            text = line.rstrip(b"\n").decode("utf-8")
            if text:
                yield text


__all__ = [
    "MESSAGE_SEPARATOR",
    "SEGMENT_END",
    "MessageBuilder",
    "escape",
    "hl7_ts",
    "iter_messages",
    "pv1",
]
