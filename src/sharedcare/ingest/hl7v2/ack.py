"""ACK and NACK messages (HL7 v2.5.1 section 2.9, original acknowledgement mode).

MSA-1 is ``AA`` (accepted), ``AE`` (application error: the content could not be used) or
``AR`` (application reject: MSH validation failed, or the receiver could not process the
message for reasons unrelated to its content). MSA-3 carries a short reason and ERR
carries the detail: v2.5-style ERR-2 (location), ERR-3 (table 0357 code), ERR-4 (severity)
and ERR-8 (user message) for messages of version 2.5 or later, and the 2.3/2.4-style ERR-1
(segment^sequence^field^code) for older versions. Reasons come from
:class:`~sharedcare.ingest.hl7v2.errors.Issue`, which never contain patient data.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache

from sharedcare.ingest.hl7v2.errors import Issue, Severity
from sharedcare.ingest.hl7v2.parse import SUPPORTED_VERSIONS, Envelope, MessageHeader

__all__ = [
    "AckCode",
    "AckDecision",
    "AckIdentity",
    "build_ack",
    "build_batch_ack",
    "escape",
]

_MSA3_MAX = 80
_ERR_TEXT_MAX = 250
_VERSIONS_WITH_ERR3 = ("2.5", "2.5.1")
_counter = itertools.count(1)
_CONTROL_TO_SPACE = {code: " " for code in range(32)}
_NEEDS_ESCAPE = frozenset("\\|^&~")
_PREFIX = os.urandom(4).hex().upper()


class AckCode(StrEnum):
    """HL7 table 0008 acknowledgement codes (original mode)."""

    ACCEPT = "AA"
    ERROR = "AE"
    REJECT = "AR"


@dataclass(frozen=True, slots=True)
class AckDecision:
    """What to answer for one message.

    Attributes:
        code: AA, AE or AR.
        issues: Errors (for AE/AR) or warnings (for AA) to report in ERR segments. The
            first error's reason becomes MSA-3.
        duplicate: True when the message was a resend already stored; it is still AA.
    """

    code: AckCode
    issues: tuple[Issue, ...] = ()
    duplicate: bool = False

    @classmethod
    def accept(cls, warnings: Sequence[Issue] = (), *, duplicate: bool = False) -> AckDecision:
        """An AA, optionally with warnings (severity W) reported in ERR."""
        return cls(AckCode.ACCEPT, tuple(warnings), duplicate)

    @classmethod
    def error(cls, issue: Issue) -> AckDecision:
        """An AE for a message whose content could not be used."""
        return cls(AckCode.ERROR, (issue,))

    @classmethod
    def reject(cls, issue: Issue) -> AckDecision:
        """An AR for a message rejected at MSH validation or for a receiver-side failure."""
        return cls(AckCode.REJECT, (issue,))

    @property
    def reason(self) -> str:
        """The MSA-3 text: the first error, else the first issue, else empty."""
        for issue in self.issues:
            if issue.severity is Severity.ERROR:
                return issue.reason
        return self.issues[0].reason if self.issues else ""


@dataclass(frozen=True, slots=True)
class AckIdentity:
    """Who the ACK comes from when the message did not name a receiver (MSH-5/6)."""

    application: str = "SHAREDCARE"
    facility: str = ""
    version: str = "2.5.1"


def escape(text: str) -> str:
    """Escape HL7 delimiters with the standard encoding characters ``|^~\\&``.

    Control characters (including CR and LF) become spaces, so text cannot break a segment.
    """
    if text.isalnum():  # no control character and no delimiter: nothing to change
        return text
    text = text.translate(_CONTROL_TO_SPACE)
    if not _NEEDS_ESCAPE.intersection(text):
        return text
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


@lru_cache(maxsize=1024)
def _hd(parts: tuple[str, ...], fallback: str) -> str:
    """An HD field of the ACK, escaped. Remembered: a feed's MSH-3 to MSH-6 recur in every
    message it sends, and the result depends on nothing else."""
    if not parts:
        return escape(fallback)
    return "^".join(escape(p) for p in parts).rstrip("^")


_STAMP: list[tuple[int, str]] = [(-1, "")]


def _now() -> str:
    """MSH-7 of an ACK: the current second in UTC, formatted once per second (every ACK
    sent within a second carries the same text, so it is not rebuilt for each)."""
    second = int(time.time())
    held = _STAMP[0]
    if held[0] != second:
        held = (second, datetime.fromtimestamp(second, UTC).strftime("%Y%m%d%H%M%S+0000"))
        _STAMP[0] = held
    return held[1]


def _next_control_id() -> str:
    return f"ACK{_PREFIX}{next(_counter):010d}"


def _err_segments(issues: Sequence[Issue], version: str) -> list[str]:
    out = []
    if version in _VERSIONS_WITH_ERR3:
        for issue in issues:
            loc = ""
            if issue.segment:
                loc = "^".join(
                    [escape(issue.segment), str(issue.sequence or ""), str(issue.field or "")]
                ).rstrip("^")
            code = f"{int(issue.code)}^{escape(issue.code.text)}^HL70357"
            text = escape(issue.reason[:_ERR_TEXT_MAX])
            out.append(f"ERR||{loc}|{code}|{issue.severity.value}||||{text}")
    elif issues:
        reps = []
        for issue in issues:
            code = f"{int(issue.code)}&{escape(issue.code.text)}&HL70357"
            reps.append(
                "^".join(
                    [escape(issue.segment), str(issue.sequence or ""), str(issue.field or ""), code]
                )
            )
        out.append("ERR|" + "~".join(reps))
    return out


def build_ack(
    header: MessageHeader | None,
    decision: AckDecision,
    identity: AckIdentity | None = None,
    *,
    envelope: Envelope | None = None,
) -> str:
    """Build the acknowledgement for one message as CR-separated text.

    Args:
        header: The MSH of the message being acknowledged, or ``None`` when the message was
            too broken to read (MSA-2 is then empty).
        decision: The answer.
        identity: Our application/facility when the message named no receiver.
        envelope: When ``header`` is ``None``, the FHS/BHS of a rejected batch, used to
            address the NACK.

    Returns:
        The ACK message, segments separated by CR, with no trailing CR.
    """
    identity = identity or AckIdentity()
    if header is not None:
        version = header.version if header.version in SUPPORTED_VERSIONS else identity.version
        send_app = _hd(header.receiving_application_hd, identity.application)
        send_fac = _hd(header.receiving_facility_hd, identity.facility)
        recv_app = _hd(header.sending_application_hd, "")
        recv_fac = _hd(header.sending_facility_hd, "")
        trigger = header.trigger_event
        processing = header.processing_id[:1].upper() or "P"
        control = header.control_id
    else:
        version = identity.version
        send_app, send_fac = escape(identity.application), escape(identity.facility)
        recv_app = recv_fac = trigger = control = ""
        processing = "P"
        if envelope is not None:
            send_app = escape(envelope.receiving_application or identity.application)
            send_fac = escape(envelope.receiving_facility or identity.facility)
            recv_app = escape(envelope.sending_application)
            recv_fac = escape(envelope.sending_facility)
    if version == "2.3":
        msg_type = f"ACK^{escape(trigger)}" if trigger else "ACK"
    else:
        msg_type = f"ACK^{escape(trigger)}^ACK" if trigger else "ACK^^ACK"
    msh = (
        f"MSH|^~\\&|{send_app}|{send_fac}|{recv_app}|{recv_fac}|{_now()}||{msg_type}|"
        f"{_next_control_id()}|{processing}|{escape(version)}"
    )
    msa = f"MSA|{decision.code.value}|{escape(control)}"
    reason = decision.reason
    if reason:
        msa += "|" + escape(reason[:_MSA3_MAX])
    segments = [msh, msa, *_err_segments(decision.issues, version)]
    return "\r".join(segments)


def build_batch_ack(
    envelope: Envelope | None,
    acks: Sequence[str],
    identity: AckIdentity | None = None,
    rejection: Issue | None = None,
) -> str:
    """Wrap ACK messages in a BHS/BTS batch (HL7 v2.5.1 section 2.10.3.3).

    Args:
        envelope: The FHS/BHS of the received batch (its control id goes in BHS-12).
        acks: One ACK per received message, in order.
        identity: Our application/facility when the batch named no receiver.
        rejection: Set when the batch envelope itself was rejected; its reason goes in
            BHS-11 (batch comment).

    Returns:
        The batch, CR-separated.
    """
    identity = identity or AckIdentity()
    if envelope is not None:
        send_app = escape(envelope.receiving_application or identity.application)
        send_fac = escape(envelope.receiving_facility or identity.facility)
        recv_app, recv_fac = escape(envelope.sending_application), escape(envelope.sending_facility)
        reference = escape(envelope.control_id)
    else:
        send_app, send_fac = escape(identity.application), escape(identity.facility)
        recv_app = recv_fac = reference = ""
    comment = escape(rejection.reason[:_ERR_TEXT_MAX]) if rejection else ""
    bhs = (
        f"BHS|^~\\&|{send_app}|{send_fac}|{recv_app}|{recv_fac}|{_now()}|||{comment}|"
        f"{_next_control_id()}|{reference}"
    )
    return "\r".join([bhs, *acks, f"BTS|{len(acks)}"])
