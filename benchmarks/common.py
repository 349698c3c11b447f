"""Helpers shared by benchmarks: a server in a subprocess, a timed HTTP load, percentiles."""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import orjson

from tests.support.server import serving


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def served(database_url: str, *, workers: int = 1) -> Iterator[str]:
    """Run ``sharedcare serve`` in a subprocess (as the tests do); yield its base URL."""
    with serving(database_url, workers=workers) as (_, base):
        yield base


def load(
    base: str,
    make_request: Callable[[int], tuple[str, str, dict[str, object]]],
    *,
    total: int,
    concurrency: int,
) -> tuple[float, list[float], int]:
    """Send ``total`` requests with ``concurrency`` clients, one keep-alive connection each.

    ``make_request(i)`` gives ``(method, path, kwargs)``; ``kwargs`` may hold ``content``
    (bytes or str), ``json`` (encoded with orjson) and ``headers``. ``path`` may also be an
    absolute URL on ``base``.

    This is a deliberately small HTTP/1.1 client on raw asyncio streams rather than httpx:
    the client shares this machine's two cores with the server, and every cycle the client
    spends is taken from the server. Measured here with one server worker on ``GET
    /healthz``: 1,311 req/s through ``httpx.AsyncClient`` against 2,596 req/s through this
    client. It reads ``Content-Length`` and chunked bodies, reconnects when the server
    closes the connection, and counts any response outside 2xx as an error.

    Returns:
        (requests per second, latencies in ms, count of non-2xx responses)
    """
    url = urlsplit(base)
    host = url.hostname or "127.0.0.1"
    port = url.port or 80
    origin = f"{url.scheme}://{url.netloc}"
    latencies: list[float] = []
    errors = 0

    def encode(i: int) -> bytes:
        method, path, kwargs = make_request(i)
        if path.startswith(origin):
            path = path[len(origin) :] or "/"
        target = quote(path, safe=_SAFE)
        headers: dict[str, str] = {"host": url.netloc}
        body = b""
        if "json" in kwargs:
            body = orjson.dumps(kwargs["json"])
            headers["content-type"] = "application/json"
        content = kwargs.get("content")
        if isinstance(content, str):
            body = content.encode()
        elif isinstance(content, bytes | bytearray | memoryview):
            body = bytes(content)
        for name, value in dict(kwargs.get("headers") or {}).items():  # type: ignore[call-overload]
            headers[str(name).lower()] = str(value)
        if body or method in {"POST", "PUT", "PATCH"}:
            headers["content-length"] = str(len(body))
        head = f"{method} {target} HTTP/1.1\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (head + "\r\n").encode("latin-1") + body

    async def run() -> float:
        nonlocal errors
        counter = iter(range(total))

        async def worker() -> None:
            nonlocal errors
            reader, writer = await asyncio.open_connection(host, port)
            try:
                for i in counter:
                    request = encode(i)
                    head_only = request.startswith(b"HEAD ")
                    started = time.perf_counter()
                    writer.write(request)
                    status, keep_alive = await _read_response(reader, head_only)
                    latencies.append((time.perf_counter() - started) * 1000)
                    if not 200 <= status < 300:
                        errors += 1
                    if not keep_alive:
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
            finally:
                writer.close()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return total / elapsed, latencies, errors


# Characters left as they are in a request target; anything else is percent-encoded.
_SAFE = "/:?#[]@!$&'()*+,;=%-._~"


async def _read_response(reader: asyncio.StreamReader, head_only: bool) -> tuple[int, bool]:
    """Read one response; return its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    keep_alive = not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, keep_alive
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                # Trailers, if any, end with an empty line.
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                break
            await reader.readexactly(size + 2)
    elif length is not None:
        await reader.readexactly(length)
    else:  # no length: the body runs to the end of the connection
        await reader.read()
        keep_alive = False
    return status, keep_alive


def _descendants(root: int) -> list[int]:
    """``root`` and every process below it (from ``/proc``)."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children[int(fields[1])].append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(roots: list[int]) -> float:
    """CPU time used so far by the process trees under ``roots``, including children that
    have exited (their time is in their parent's ``cutime``)."""
    ticks = 0
    for root in roots:
        for pid in _descendants(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def server_roots(base: str, postgres_root: Path | None = None) -> list[int]:
    """The PostgreSQL postmaster (when ``postgres_root`` is given) first, then the API
    server started by :func:`served` for ``base`` (found by its port)."""
    port = base.rsplit(":", 1)[1].encode()
    roots = []
    if postgres_root is not None:
        roots.append(int((postgres_root / "data" / "postmaster.pid").read_text().split()[0]))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and port in argv:
                roots.append(int(entry.name))
    return roots
