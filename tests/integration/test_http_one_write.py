"""One socket write per response: :class:`sharedcare.api.http_protocol.OneWriteHttpToolsProtocol`.

Two uvicorn servers run in threads of this process on real sockets, one with uvicorn's own
httptools protocol and one with ours, serving the same small ASGI application (fixed
bodies, an empty 204, a streamed body, a file, a body read after ``100 Continue``, errors
before and after the head, a body shorter than its ``Content-Length``). Every exchange,
sent as raw bytes, must get the same bytes back from both (the ``date`` header aside), and
our server must make one ``write`` system call per fixed-length response where uvicorn's
makes two (counted from ``/proc`` for the server's thread). Then the real ``sharedcare
serve`` answers FHIR interactions, keep-alive, pipelining and ``HEAD`` through it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from starlette.responses import FileResponse, StreamingResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sharedcare.api.http_protocol import OneWriteHttpToolsProtocol, http_protocol
from tests.support.server import free_port, serving

pytestmark = pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc")


def _app(file: Path) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path = scope["path"]
        if path == "/fixed":
            body = b'{"resourceType":"Patient"}'
            headers = [(b"content-type", b"application/fhir+json"), (b"etag", b'W/"1"')]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif path == "/empty":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/stream":

            async def parts() -> Any:
                for part in (b"first,", b"second,", b"third"):
                    await asyncio.sleep(0.01)
                    yield part

            await StreamingResponse(parts(), media_type="text/plain")(scope, receive, send)
        elif path == "/file":
            await FileResponse(file, media_type="application/fhir+ndjson")(scope, receive, send)
        elif path == "/echo":
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            headers = [(b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif path == "/fails-before-head":
            raise RuntimeError("before the head")
        elif path == "/fails-after-head":
            headers = [(b"content-length", b"5")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            raise RuntimeError("after the head")
        elif path == "/short":
            headers = [(b"content-length", b"10")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"abc"})
        else:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such path"})

    return app


class _Server:
    """A uvicorn server in a thread of this process."""

    def __init__(self, app: Any, protocol: type[asyncio.Protocol]) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http=protocol,
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="critical",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)

    def writes(self) -> int:
        """Write system calls made so far by the server's thread."""
        io = Path(f"/proc/self/task/{self.thread.native_id}/io").read_text()
        return int(re.search(r"^syscw: (\d+)$", io, re.M).group(1))  # type: ignore[union-attr]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_Server, _Server]]:
    file = tmp_path_factory.mktemp("one-write") / "Patient.ndjson"
    file.write_bytes(b"".join(b'{"resourceType":"Patient","id":"%d"}\n' % i for i in range(9000)))
    app = _app(file)
    stock, ours = _Server(app, HttpToolsProtocol), _Server(app, OneWriteHttpToolsProtocol)
    try:
        yield stock, ours
    finally:
        stock.stop()
        ours.stop()


def _exchange(port: int, requests: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send ``requests`` on one connection (``pause`` seconds apart) and read until the
    server closes it; the ``date`` header is blanked (it differs between servers)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for request in requests:
            sock.sendall(request)
            time.sleep(pause)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: -", received)


CLOSE = b"connection: close\r\n"
EXCHANGES = {
    "fixed": [b"GET /fixed HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "keep-alive, then close": [
        b"GET /fixed HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\n",
        b"GET /fixed HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n",
    ],
    "pipelined": [
        b"GET /fixed HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\n\r\n"
        b"GET /empty HTTP/1.1\r\nhost: x\r\n\r\nGET /fixed HTTP/1.1\r\nhost: x\r\n"
        + CLOSE
        + b"\r\n"
    ],
    "HEAD": [b"HEAD /fixed HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "HEAD of a file": [b"HEAD /file HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "204": [b"GET /empty HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "streamed": [b"GET /stream HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "file": [b"GET /file HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "HTTP/1.0": [b"GET /fixed HTTP/1.0\r\n\r\n"],
    "not found": [b"GET /nowhere HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"],
    "100-continue": [
        b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n"
        + CLOSE
        + b"\r\n",
        b"hello",
    ],
    "fails before the head": [b"GET /fails-before-head HTTP/1.1\r\nhost: x\r\n\r\n"],
    "fails after the head": [b"GET /fails-after-head HTTP/1.1\r\nhost: x\r\n\r\n"],
    "body shorter than its length": [b"GET /short HTTP/1.1\r\nhost: x\r\n\r\n"],
    "bad request": [b"GET /fixed HTTP/1.1\r\nhost x\r\n\r\n"],
}


@pytest.mark.parametrize("name", list(EXCHANGES))
def test_the_same_bytes_as_uvicorns_own_protocol(
    servers: tuple[_Server, _Server], name: str
) -> None:
    stock, ours = servers
    requests = EXCHANGES[name]
    pause = 0.2 if name == "100-continue" else 0.0
    expected = _exchange(stock.port, requests, pause=pause)
    assert expected.startswith(b"HTTP/1.1 ")
    assert _exchange(ours.port, requests, pause=pause) == expected


def test_the_100_continue_goes_out_before_the_body_is_sent(
    servers: tuple[_Server, _Server],
) -> None:
    _, ours = servers
    with socket.create_connection(("127.0.0.1", ours.port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        received = b""
        while not received.endswith(b"hello"):
            received += sock.recv(1024)
        assert received.startswith(b"HTTP/1.1 201 Created\r\n")


def test_a_response_head_waits_for_its_streamed_body_no_more_than_before(
    servers: tuple[_Server, _Server],
) -> None:
    # A chunked response's head goes out at once, before its first part is ready.
    _, ours = servers
    with socket.create_connection(("127.0.0.1", ours.port), timeout=10) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"transfer-encoding: chunked\r\n\r\n")


def test_one_write_per_response_where_uvicorn_makes_two(servers: tuple[_Server, _Server]) -> None:
    counts = []
    for server in servers:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /fixed HTTP/1.1\r\nhost: x\r\n\r\n")
            sock.recv(65536)  # the connection is up and served once
            before = server.writes()
            for _ in range(50):
                sock.sendall(b"GET /fixed HTTP/1.1\r\nhost: x\r\n\r\n")
                received = b""
                while not received.endswith(b'"Patient"}'):
                    received += sock.recv(65536)
            counts.append(server.writes() - before)
    assert counts == [100, 50]


def test_sharedcare_serve_uses_it() -> None:
    assert http_protocol() == "sharedcare.api.http_protocol:OneWriteHttpToolsProtocol"


def test_fhir_interactions_through_the_served_application(tmp_path: Path) -> None:
    patient = b'{"resourceType":"Patient","gender":"female"}'
    with serving(f"sqlite:///{tmp_path / 'w.db'}") as (_, base):
        port = int(base.rsplit(":", 1)[1])
        with httpx.Client(base_url=base) as client:
            created = client.post(
                "/fhir/Patient", content=patient, headers={"content-type": "application/fhir+json"}
            )
            assert created.status_code == 201
            assert created.headers["etag"] == 'W/"1"'
            assert created.headers["location"].startswith(f"{base}/fhir/Patient/")
            assert "last-modified" in created.headers
            pid = created.json()["id"]
            read = client.get(f"/fhir/Patient/{pid}")
            assert read.status_code == 200 and read.json()["id"] == pid
            assert read.headers["etag"] == 'W/"1"'
            missing = client.get("/fhir/Patient/absent")
            assert missing.status_code == 404
            assert missing.json()["resourceType"] == "OperationOutcome"
            deleted = client.delete(f"/fhir/Patient/{pid}")
            assert deleted.status_code == 204 and deleted.content == b""
            assert client.get(f"/fhir/Patient/{pid}").status_code == 410
            status = client.get("/healthz")
            assert status.status_code == 200
        # Pipelined on one connection, then HEAD, then closed by the client's request.
        received = _exchange(
            port,
            [
                b"GET /fhir/metadata HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /fhir/Patient/absent HTTP/1.1\r\nhost: x\r\n\r\n"
                b"HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /healthz HTTP/1.1\r\nhost: x\r\n" + CLOSE + b"\r\n"
            ],
        )
    responses = _split(received)
    # HEAD /healthz is answered as its GET: 200, whose head says how long the body it left
    # out is (the same as the GET's that follows).
    assert [status for status, _, _ in responses] == [200, 404, 200, 200]
    assert b'"CapabilityStatement"' in responses[0][2]
    assert b'"OperationOutcome"' in responses[1][2]
    assert responses[2][1]["content-length"] == responses[3][1]["content-length"]
    assert orjson.loads(responses[3][2])["status"] == "ok"


def _split(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Responses with ``Content-Length`` (or none, for a ``HEAD``) one after another."""
    out = []
    rest = received
    heads = 0
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:])
        heads += 1
        # The third response answers HEAD: headers only.
        length = 0 if heads == 3 else int(headers.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        rest = rest[length:]
    return out
