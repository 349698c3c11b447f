"""The transport-free listener: store-then-ACK, NACK reasons, resends and batches."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from typing import Any, TypeVar

import hl7

from sharedcare.ingest.hl7v2.ack import AckCode, AckDecision
from sharedcare.ingest.hl7v2.errors import ErrorCode
from sharedcare.ingest.hl7v2.listener import INTERNAL_ERROR_REASON, acknowledge
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.hl7v2.parse import MessageHeader

MSH = "MSH|^~\\&|PAS|RDCH|SC|ICS|20240102030405||ADT^A04|{cid}|P|2.4"
BODY = "EVN|A04|20240102030405\rPID|1||H123^^^RDCH^MR||QUINCE^HARRIET||19700101|F\rPV1|1|O|CLINIC1"


def message(cid: str = "M1", body: str = BODY) -> bytes:
    return (MSH.format(cid=cid) + "\r" + body).encode()


class RecordingSink:
    """In-memory test sink: idempotent on sender + MSH-10, maps to FHIR like a real sink."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str, str], bytes] = {}
        self.calls = 0

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        self.calls += 1
        key = header.idempotency_key
        if key in self.stored:
            same = hashlib.sha256(self.stored[key]).digest() == hashlib.sha256(raw).digest()
            return AckDecision.accept(duplicate=same)
        mapped = map_message(raw)
        self.stored[key] = raw
        return AckDecision.accept(mapped.issues)


T = TypeVar("T")


class FailingSink:
    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        raise RuntimeError("database down while storing QUINCE HARRIET")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_valid_message_is_stored_then_acknowledged() -> None:
    sink = RecordingSink()
    result = run(acknowledge(message(), sink))
    assert result.codes == [AckCode.ACCEPT]
    assert sink.stored[("PAS", "RDCH", "M1")] == message()
    ack = hl7.parse(result.reply.decode())
    assert str(ack.segment("MSA")[2]) == "M1"


def test_resend_is_idempotent() -> None:
    sink = RecordingSink()
    first = run(acknowledge(message(), sink))
    second = run(acknowledge(message(), sink))
    assert first.codes == second.codes == [AckCode.ACCEPT]
    assert second.results[0].decision.duplicate
    assert len(sink.stored) == 1


def test_unsupported_type_is_rejected_without_calling_the_sink() -> None:
    sink = RecordingSink()
    raw = (MSH.format(cid="M2").replace("ADT^A04", "ADT^A24") + "\r" + BODY).encode()
    result = run(acknowledge(raw, sink))
    assert result.codes == [AckCode.REJECT]
    assert result.results[0].decision.issues[0].code is ErrorCode.UNSUPPORTED_EVENT
    assert sink.calls == 0


def test_parse_error_is_rejected_without_calling_the_sink() -> None:
    sink = RecordingSink()
    result = run(acknowledge(b"this is not hl7", sink))
    assert result.codes == [AckCode.REJECT]
    assert sink.calls == 0
    assert b"MSA|AR|" in result.reply


def test_mapping_error_becomes_ae_with_reason() -> None:
    sink = RecordingSink()
    raw = message(body="EVN|A04\rPID|1||^^^RDCH^MR||QUINCE^HARRIET\rPV1|1|O")
    result = run(acknowledge(raw, sink))
    assert result.codes == [AckCode.ERROR]
    reply = result.reply.decode()
    assert "PID-3 holds no patient identifier" in reply
    assert "QUINCE" not in reply


def test_sink_failure_becomes_ar_without_leaking_the_exception_text() -> None:
    result = run(acknowledge(message(), FailingSink()))
    assert result.codes == [AckCode.REJECT]
    decision = result.results[0].decision
    assert decision.reason == INTERNAL_ERROR_REASON
    assert decision.issues[0].code is ErrorCode.INTERNAL_ERROR
    assert b"QUINCE" not in result.reply


def test_warnings_are_reported_in_the_aa() -> None:
    sink = RecordingSink()
    raw = message(body="EVN|A04\rPID|1||H9^^^RDCH^MR||QUINCE^HARRIET||NOTADATE|F\rPV1|1|O|C1")
    result = run(acknowledge(raw, sink))
    assert result.codes == [AckCode.ACCEPT]
    ack = hl7.parse(result.reply.decode())
    err = ack.segment("ERR")
    assert "PID^" in str(err[1])
    assert "NOTADATE" not in result.reply.decode()


def test_batch_gets_a_batch_ack_with_one_ack_per_message() -> None:
    sink = RecordingSink()
    bad = (MSH.format(cid="B2").replace("ADT^A04", "ORM^O02") + "\r" + BODY).encode()
    block = b"\n".join(
        [b"BHS|^~\\&|PAS|RDCH|SC|ICS|20240101||||BATCH1", message("B1"), bad, b"BTS|2"]
    )
    result = run(acknowledge(block, sink))
    assert result.codes == [AckCode.ACCEPT, AckCode.REJECT]
    segments = result.reply.decode().split("\r")
    assert segments[0].startswith("BHS|")
    assert segments[-1] == "BTS|2"
    assert len(sink.stored) == 1
    assert sink.stored[("PAS", "RDCH", "B1")].startswith(b"MSH|")


def test_broken_batch_is_rejected_whole() -> None:
    sink = RecordingSink()
    block = b"\r".join([b"BHS|^~\\&|PAS|RDCH", message("B1"), b"BTS|5"])
    result = run(acknowledge(block, sink))
    assert result.codes == [AckCode.REJECT]
    assert sink.calls == 0
    assert b"BTS-1" in result.reply


def test_reply_uses_the_senders_character_set() -> None:
    sink = RecordingSink()
    msh = "MSH|^~\\&|PAS|RDCH|SC|ICS|20240102030405||ADT^A04|L1|P|2.4||||||8859/1"
    raw = (msh + "\r" + BODY.replace("HARRIET", "HÉLÈNE")).encode("latin-1")
    result = run(acknowledge(raw, sink))
    assert result.codec == "latin-1"
    assert result.codes == [AckCode.ACCEPT]


class WrongTypeSink:
    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        return "AA"  # type: ignore[return-value]


def test_sink_returning_the_wrong_type_is_not_an_accept() -> None:
    result = run(acknowledge(message(), WrongTypeSink()))
    assert result.codes == [AckCode.REJECT]
    assert result.results[0].decision.reason == INTERNAL_ERROR_REASON


def test_undeclared_latin1_is_accepted_with_a_warning() -> None:
    sink = RecordingSink()
    raw = (MSH.format(cid="L2") + "\r" + BODY.replace("HARRIET", "HÉLÈNE")).encode("latin-1")
    result = run(acknowledge(raw, sink))
    assert result.codec == "latin-1"
    assert result.codes == [AckCode.ACCEPT]
    assert any(i.field == 18 for i in result.results[0].decision.issues)
    assert b"MSH^1^18" in result.reply
