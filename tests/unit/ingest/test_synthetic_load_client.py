"""The load-synthetic HTTP client resends on a fresh connection when the server has closed
an idle keep-alive connection (uvicorn does after a few seconds)."""

from __future__ import annotations

import socket
import threading

from sharedcare.ingest.synthetic_load import _Client

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += conn.recv(65536)
    return body


def test_client_reconnects_after_the_server_drops_a_keep_alive_connection() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    bodies: list[bytes] = []

    def serve() -> None:
        first, _ = server.accept()
        bodies.append(_read_request(first))
        first.sendall(OK)
        _read_request(first)  # the second request arrives, and the server drops it
        first.close()
        second, _ = server.accept()
        bodies.append(_read_request(second))
        second.sendall(OK)
        second.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = _Client("127.0.0.1", port)
    try:
        assert client.post("/fhir", b"one", {}) == (200, b"{}")
        assert client.post("/fhir", b"two", {}) == (200, b"{}")
    finally:
        client.close()
        thread.join(10)
        server.close()
    assert bodies == [b"one", b"two"]
