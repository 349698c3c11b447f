"""uvicorn's HTTP/1.1 protocol, with each whole response sent in one socket write.

uvicorn's httptools protocol writes a response's status line and headers to the socket when
the application sends ``http.response.start``, and its body at ``http.response.body``: two
``send`` system calls for every response, and a client on the same host woken twice. py-spy
of an API worker under the CRUD mix put 7-12% of its GIL samples in those writes (decision
0032). :class:`OneWriteHttpToolsProtocol` holds the head of a response whose length is
known (``Content-Length``, or a 204/304 without a body) until the body's first write and
sends the two together (``writelines``: one ``writev`` on uvloop).

Nothing else changes: the head and body bytes are uvicorn's own, and a response whose body
is streamed (``Transfer-Encoding: chunked``), the answer to a ``HEAD`` (which has no body
write), ``100 Continue`` and everything outside a response's head go out as before. A held
head is written before the connection is closed, so a response that fails after its head
(an application error, a body shorter than its ``Content-Length``) reaches the client as
far as it did before.

``sharedcare serve`` passes :func:`http_protocol` to uvicorn as its ``http`` setting. This
leans on how uvicorn's cycle writes (the head in one ``write`` once ``response_started`` is
set, then one per body message); ``tests/integration/test_http_one_write.py`` compares the
bytes of every kind of exchange with uvicorn's own protocol, so an upgrade that changes it
fails there.
"""

from __future__ import annotations

import asyncio
from typing import Any

# httptools comes with uvicorn[standard], a dependency.
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle


def http_protocol() -> str:
    """The ``http`` setting for uvicorn: this module's protocol, as an import string (so
    that it travels to worker processes as it is)."""
    return f"{__name__}:OneWriteHttpToolsProtocol"


class _OneWriteTransport:
    """The transport as one request's cycle sees it: a response's head waits for its body.

    The cycle writes the head in one ``write`` once it has set ``response_started``; its
    body writes follow (every ``http.response.body`` message of a response with a length
    writes, if only ``b""``). The held head goes out with the first of them, or before a
    ``close``.
    """

    __slots__ = ("_cycle", "_head", "_seen_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: RequestResponseCycle) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._seen_head = False

    def write(self, data: bytes) -> None:
        """Write ``data``, holding a response's head until its body is written."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.writelines((head, data))
            return
        cycle = self._cycle
        if not self._seen_head and cycle.response_started:
            self._seen_head = True
            # Streamed (chunked) bodies and HEAD answers go out as before.
            if cycle.chunked_encoding is not True and cycle.scope["method"] != "HEAD":
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        """Write a held head, then close the connection (after its buffered writes)."""
        head = self._head
        if head is not None:
            self._head = None
            if not self._transport.is_closing():
                self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        """Whether the connection is closing or closed."""
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        # Anything else a later uvicorn asks of its cycle's transport.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._transport, name)


class OneWriteHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, each response's head written with its body."""

    def on_headers_complete(self) -> None:
        """Start the request as uvicorn does; its cycle writes through
        :class:`_OneWriteTransport`."""
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not previous:  # not an upgrade (WebSocket), which makes no cycle
            # The cycle's task (or its place in the pipeline) exists but has not run yet.
            cycle.transport = _OneWriteTransport(self.transport, cycle)  # type: ignore[assignment]
