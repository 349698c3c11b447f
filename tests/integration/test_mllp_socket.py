"""The MLLP listener over a real TCP socket on 127.0.0.1, driven by python-hl7's MLLP client."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import hl7
import hl7.mllp

from sharedcare.ingest.hl7v2.ack import AckDecision
from sharedcare.ingest.hl7v2.mapping import map_message
from sharedcare.ingest.hl7v2.mllp import MllpServer, frame
from sharedcare.ingest.hl7v2.parse import MessageHeader

TIMEOUT = 10.0


def adt(cid: str, event: str = "A01") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|PAS|RBCH|SC|ICS|20240315101500||ADT^{event}|{cid}|P|2.4",
            f"EVN|{event}|20240315101500",
            "PID|1||H100^^^RBCH^MR||OCTAVIA^PRIMROSE||19650412|F",
            "PV1|1|I|W12^B^3^RBCH||||||||||||||||V555^^^RBCH^VN",
        ]
    )


class InMemorySink:
    """Test sink: maps, then keeps the raw message; idempotent on sender + MSH-10.

    ``gate`` lets a test hold the "commit" open to prove the ACK waits for the store.
    """

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str, str], bytes] = {}
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0

    async def accept(self, raw: bytes, header: MessageHeader) -> AckDecision:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            mapped = map_message(raw)
            if self.gate is not None:
                await self.gate.wait()
            else:
                await asyncio.sleep(0.001)
            key = header.idempotency_key
            if key in self.stored:
                return AckDecision.accept(duplicate=True)
            self.stored[key] = raw
            return AckDecision.accept(mapped.issues)
        finally:
            self.in_flight -= 1


def serve(sink: InMemorySink, body: Callable[[MllpServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = MllpServer(sink)
        await server.start("127.0.0.1", 0)
        try:
            await asyncio.wait_for(body(server), TIMEOUT)
        finally:
            await server.close()

    asyncio.run(main())


async def send(server: MllpServer, text: str) -> hl7.Message:
    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
    try:
        writer.writemessage(text)
        await writer.drain()
        return await reader.readmessage()
    finally:
        writer.close()
        await writer.wait_closed()


def msa(message: hl7.Message) -> tuple[str, str]:
    segment = message.segment("MSA")
    return str(segment[1]), str(segment[2])


def test_message_is_acknowledged_after_it_is_stored() -> None:
    sink = InMemorySink()

    async def body(server: MllpServer) -> None:
        ack = await send(server, adt("M1"))
        assert msa(ack) == ("AA", "M1")
        assert sink.stored[("PAS", "RBCH", "M1")] == adt("M1").encode()

    serve(sink, body)


def test_ack_waits_for_the_sink() -> None:
    sink = InMemorySink()
    sink.gate = asyncio.Event()

    async def body(server: MllpServer) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        writer.writemessage(adt("HOLD"))
        await writer.drain()
        pending = asyncio.ensure_future(reader.readmessage())
        await asyncio.sleep(0.2)
        assert not pending.done(), "the ACK must not go out before the sink returns"
        assert sink.stored == {}
        assert server.active_connections == 1
        assert sink.gate is not None
        sink.gate.set()
        ack = await pending
        assert msa(ack) == ("AA", "HOLD")
        assert ("PAS", "RBCH", "HOLD") in sink.stored
        writer.close()
        await writer.wait_closed()

    serve(sink, body)


def test_many_connections_are_served_at_once() -> None:
    sink = InMemorySink()
    clients, per_client = 12, 5

    async def client(server: MllpServer, n: int) -> list[tuple[str, str]]:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        results = []
        for i in range(per_client):
            writer.writemessage(adt(f"C{n}-{i}"))
            await writer.drain()
            results.append(msa(await reader.readmessage()))
        writer.close()
        await writer.wait_closed()
        return results

    async def body(server: MllpServer) -> None:
        answers = await asyncio.gather(*(client(server, n) for n in range(clients)))
        for n, results in enumerate(answers):
            assert results == [("AA", f"C{n}-{i}") for i in range(per_client)]
        assert len(sink.stored) == clients * per_client
        assert server.messages_handled == clients * per_client
        assert sink.max_in_flight > 1

    serve(sink, body)


def test_resend_is_acknowledged_and_stored_once() -> None:
    sink = InMemorySink()

    async def body(server: MllpServer) -> None:
        assert msa(await send(server, adt("R1"))) == ("AA", "R1")
        assert msa(await send(server, adt("R1"))) == ("AA", "R1")
        assert list(sink.stored) == [("PAS", "RBCH", "R1")]

    serve(sink, body)


def test_bad_message_gets_a_nack_and_the_connection_stays_usable() -> None:
    sink = InMemorySink()

    async def body(server: MllpServer) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        writer.writemessage(adt("B1").replace("|2.4", "|9.9"))
        await writer.drain()
        nack = await reader.readmessage()
        assert msa(nack) == ("AR", "B1")
        assert "MSH-12" in str(nack.segment("MSA")[3])
        writer.writemessage(adt("B2", event="A24"))
        await writer.drain()
        nack = await reader.readmessage()
        assert msa(nack) == ("AR", "B2")
        assert str(nack.segment("ERR")[1]).startswith("MSH^1^9^201")
        writer.writemessage(adt("B3"))
        await writer.drain()
        assert msa(await reader.readmessage()) == ("AA", "B3")
        writer.close()
        await writer.wait_closed()
        assert list(sink.stored) == [("PAS", "RBCH", "B3")]

    serve(sink, body)


def test_mapping_error_gets_an_ae() -> None:
    sink = InMemorySink()
    no_identifier = adt("E1").replace("H100^^^RBCH^MR", "^^^RBCH^MR")

    async def body(server: MllpServer) -> None:
        nack = await send(server, no_identifier)
        assert msa(nack) == ("AE", "E1")
        assert "PID-3" in str(nack.segment("MSA")[3])
        assert "OCTAVIA" not in str(nack)

    serve(sink, body)


def test_framing_tolerates_noise_and_answers_blocks_without_a_start_byte() -> None:
    sink = InMemorySink()

    async def body(server: MllpServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"\r\n" + frame(adt("F1").encode()))
        writer.write(b"no start block here\x1c\r")
        await writer.drain()
        first = hl7.parse((await reader.readuntil(b"\x1c\r"))[1:-2].decode())
        assert msa(first) == ("AA", "F1")
        second = hl7.parse((await reader.readuntil(b"\x1c\r"))[1:-2].decode())
        assert msa(second)[0] == "AR"
        assert "0x0B" in str(second.segment("MSA")[3])
        writer.close()
        await writer.wait_closed()

    serve(sink, body)


def test_batch_over_mllp_gets_a_batch_ack() -> None:
    sink = InMemorySink()
    batch = "\r".join(
        ["BHS|^~\\&|PAS|RBCH|SC|ICS|20240315||||BATCH9", adt("X1"), adt("X2"), "BTS|2"]
    )

    async def body(server: MllpServer) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        writer.writeblock(batch.encode())
        await writer.drain()
        reply = (await reader.readblock()).decode()
        segments = reply.split("\r")
        assert segments[0].startswith("BHS|")
        assert [s for s in segments if s.startswith("MSA")] == ["MSA|AA|X1", "MSA|AA|X2"]
        assert segments[-1] == "BTS|2"
        writer.close()
        await writer.wait_closed()

    serve(sink, body)


def test_oversized_block_is_rejected() -> None:
    sink = InMemorySink()

    async def main() -> None:
        server = MllpServer(sink, max_message_bytes=2048)
        await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"\x0b" + b"A" * 10_000)
            await writer.drain()
            reply = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), TIMEOUT)
            assert b"MSA|AR|" in reply
            assert b"larger than 2048 bytes" in reply
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_unexpected_failure_still_answers_and_keeps_the_connection(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sharedcare.ingest.hl7v2.mllp as mllp_module

    real = mllp_module.acknowledge  # type: ignore[attr-defined]  # the name it calls
    calls = {"n": 0}

    async def flaky(block, sink, identity=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("bug")
        return await real(block, sink, identity)

    monkeypatch.setattr(mllp_module, "acknowledge", flaky)
    sink = InMemorySink()

    async def body(server: MllpServer) -> None:
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        writer.writemessage(adt("U1"))
        await writer.drain()
        nack = await reader.readmessage()
        assert str(nack.segment("MSA")[1]) == "AR"
        assert str(nack.segment("ERR")[3]).startswith("207")
        writer.writemessage(adt("U2"))
        await writer.drain()
        assert msa(await reader.readmessage()) == ("AA", "U2")
        writer.close()
        await writer.wait_closed()

    serve(sink, body)


def test_close_lets_the_message_in_flight_finish() -> None:
    sink = InMemorySink()
    sink.gate = asyncio.Event()

    async def main() -> None:
        server = MllpServer(sink)
        await server.start("127.0.0.1", 0)
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", server.port)
        writer.writemessage(adt("Z1"))
        await writer.drain()
        while sink.in_flight == 0:
            await asyncio.sleep(0.01)
        closing = asyncio.ensure_future(server.close())
        await asyncio.sleep(0.1)
        assert not closing.done()
        assert sink.gate is not None
        sink.gate.set()
        ack = await asyncio.wait_for(reader.readmessage(), TIMEOUT)
        assert msa(ack) == ("AA", "Z1")
        await asyncio.wait_for(closing, TIMEOUT)
        assert await reader.read() == b""
        writer.close()

    asyncio.run(main())


def test_idle_connections_are_closed() -> None:
    sink = InMemorySink()

    async def main() -> None:
        server = MllpServer(sink, idle_timeout=0.2)
        await server.start("127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""
            writer.close()
        finally:
            await server.close()

    asyncio.run(main())
