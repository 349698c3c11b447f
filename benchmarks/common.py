"""Helpers shared by benchmarks: a server in a subprocess, a timed HTTP load, percentiles."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def served(database_url: str, *, workers: int = 1) -> Iterator[str]:
    """Run ``sharedcare serve`` in a subprocess; yield its base URL."""
    port = free_port()
    exe = Path(sys.executable).with_name("sharedcare")
    env = {**os.environ, "SHAREDCARE_LOG_LEVEL": "WARNING"}
    command = [str(exe), "serve", "--database", database_url, "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def load(
    base: str,
    make_request: Callable[[int], tuple[str, str, dict[str, object]]],
    *,
    total: int,
    concurrency: int,
) -> tuple[float, list[float], int]:
    """Send ``total`` requests with ``concurrency`` clients.

    Returns:
        (requests per second, latencies in ms, count of non-2xx responses)
    """
    latencies: list[float] = []
    errors = 0

    async def run() -> float:
        nonlocal errors
        counter = iter(range(total))
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:

            async def worker() -> None:
                nonlocal errors
                for i in counter:
                    method, path, kwargs = make_request(i)
                    started = time.perf_counter()
                    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
                    latencies.append((time.perf_counter() - started) * 1000)
                    if response.status_code >= 300:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - started

    elapsed = asyncio.run(run())
    return total / elapsed, latencies, errors
