"""ACK/NACK building: MSA-1/2/3, ERR in 2.5 and 2.3 styles, batch acknowledgements."""

from __future__ import annotations

import hl7

from sharedcare.ingest.hl7v2.ack import (
    AckCode,
    AckDecision,
    AckIdentity,
    build_ack,
    build_batch_ack,
    escape,
)
from sharedcare.ingest.hl7v2.errors import ErrorCode, Issue, Severity
from sharedcare.ingest.hl7v2.parse import parse_message, split_payload

MSH_251 = "MSH|^~\\&|PAS|RDCH^1.2.3^ISO|SC|ICS|20240102030405||ADT^A01^ADT_A01|CTRL1|T|2.5.1"
MSH_23 = "MSH|^~\\&|LAB|DCH|SC|ICS|20240102030405||ORU^R01|C-23|P|2.3"


def _ack(text: str) -> hl7.Message:
    return hl7.parse(text)


def test_aa_swaps_sender_and_receiver_and_echoes_control_id() -> None:
    header = parse_message(MSH_251).header
    ack = _ack(build_ack(header, AckDecision.accept()))
    msh = ack.segment("MSH")
    assert str(msh[3]) == "SC"
    assert str(msh[4]) == "ICS"
    assert str(msh[5]) == "PAS"
    assert str(msh[6]) == "RDCH^1.2.3^ISO"
    assert str(msh[9]) == "ACK^A01^ACK"
    assert str(msh[11]) == "T"
    assert str(msh[12]) == "2.5.1"
    msa = ack.segment("MSA")
    assert str(msa[1]) == "AA"
    assert str(msa[2]) == "CTRL1"
    assert len(ack.segments("MSH")) == 1
    assert str(msh[10]) != str(build_ack(header, AckDecision.accept()).split("|")[9])


def test_ae_in_251_has_err3_err4_err8_and_msa3() -> None:
    header = parse_message(MSH_251).header
    issue = Issue(
        "PID-3 holds no patient identifier",
        ErrorCode.REQUIRED_FIELD_MISSING,
        "PID",
        2,
        3,
        Severity.ERROR,
    )
    ack = _ack(build_ack(header, AckDecision.error(issue)))
    assert str(ack.segment("MSA")[1]) == "AE"
    assert str(ack.segment("MSA")[3]) == "PID-3 holds no patient identifier"
    err = ack.segment("ERR")
    assert str(err[2]) == "PID^2^3"
    assert str(err[3]) == "101^Required field missing^HL70357"
    assert str(err[4]) == "E"
    assert str(err[8]) == "PID-3 holds no patient identifier"


def test_ar_in_23_uses_err1() -> None:
    header = parse_message(MSH_23).header
    issue = Issue(
        "message type is not accepted",
        ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
        "MSH",
        1,
        9,
        Severity.ERROR,
    )
    text = build_ack(header, AckDecision.reject(issue))
    ack = _ack(text)
    assert str(ack.segment("MSH")[9]) == "ACK^R01"
    assert str(ack.segment("MSA")[1]) == "AR"
    err = ack.segment("ERR")
    assert str(err[1]) == "MSH^1^9^200&Unsupported message type&HL70357"
    assert len(err) == 2


def test_warnings_ride_on_an_aa() -> None:
    header = parse_message(MSH_251).header
    warning = Issue(
        "PID-7: date of birth is not a valid HL7 date",
        ErrorCode.DATA_TYPE,
        "PID",
        2,
        7,
        Severity.WARNING,
    )
    ack = _ack(build_ack(header, AckDecision.accept([warning])))
    assert str(ack.segment("MSA")[1]) == "AA"
    assert str(ack.segment("ERR")[4]) == "W"


def test_reason_text_is_escaped_and_msa3_truncated() -> None:
    header = parse_message(MSH_251).header
    reason = "bad | field ^ with & and ~ and \\ " + "x" * 200
    text = build_ack(header, AckDecision.error(Issue(reason)))
    ack = _ack(text)
    msa3 = str(ack.segment("MSA")[3])
    assert "\\F\\" in msa3
    assert len(ack.unescape(msa3)) == 80
    assert ack.unescape(msa3).startswith("bad | field ^ with & and ~")
    assert len(ack.segment("MSA")) == 4


def test_escape_removes_segment_breaks() -> None:
    assert escape("a\rb\nc") == "a b c"
    assert escape("|^&~\\") == "\\F\\\\S\\\\T\\\\R\\\\E\\"


def test_unreadable_message_gets_nack_with_empty_msa2() -> None:
    decision = AckDecision.reject(
        Issue(
            "the message does not begin with MSH",
            ErrorCode.SEGMENT_SEQUENCE,
            severity=Severity.ERROR,
        )
    )
    ack = _ack(build_ack(None, decision, AckIdentity(application="SC-ICS")))
    assert str(ack.segment("MSH")[3]) == "SC-ICS"
    assert str(ack.segment("MSA")[1]) == "AR"
    assert str(ack.segment("MSA")[2]) == ""


def test_rejected_batch_nack_is_addressed_from_envelope() -> None:
    payload = split_payload("BHS|^~\\&|PAS|RDCH|SC|ICS|20240101||||B7\rEVN|A01")
    assert payload.error is not None
    ack = _ack(build_ack(None, AckDecision.reject(payload.error.issue), envelope=payload.envelope))
    assert str(ack.segment("MSH")[5]) == "PAS"
    assert str(ack.segment("MSH")[3]) == "SC"


def test_batch_ack_wraps_acks_with_count_and_reference() -> None:
    payload = split_payload("BHS|^~\\&|PAS|RDCH|SC|ICS|20240101||||B7\r" + MSH_251 + "\rBTS|1")
    header = parse_message(payload.messages[0]).header
    ack = build_ack(header, AckDecision.accept())
    batch = build_batch_ack(payload.envelope, [ack, ack])
    segments = batch.split("\r")
    assert segments[0].startswith("BHS|^~\\&|SC|ICS|PAS|RDCH|")
    assert segments[0].split("|")[11] == "B7"
    assert segments[-1] == "BTS|2"
    assert sum(1 for s in segments if s.startswith("MSA|AA|CTRL1")) == 2


def test_decision_reason_prefers_errors() -> None:
    warning = Issue("w", severity=Severity.WARNING)
    error = Issue("e", severity=Severity.ERROR)
    assert AckDecision(AckCode.ERROR, (warning, error)).reason == "e"
    assert AckDecision.accept([warning]).reason == "w"
    assert AckDecision.accept().reason == ""
