"""``sharedcare serve --workers N``: every worker gets connections of its own.

uvicorn's shared listening socket let the first worker to wake accept every waiting
connection; each worker now listens on a ``SO_REUSEPORT`` socket of its own. This starts a
real server with two workers, opens many connections at once, and finds from ``/proc``
which process holds each one.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from sharedcare.cli.workers import bind_reuseport
from tests.support.server import free_port, serving

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def test_sockets_with_reuseport_share_a_port() -> None:
    port = free_port()
    first = bind_reuseport("127.0.0.1", port)
    second = bind_reuseport("127.0.0.1", port)
    try:
        assert first.getsockname()[1] == second.getsockname()[1] == port
    finally:
        first.close()
        second.close()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _established_on(port: int) -> set[str]:
    """Inodes of established TCP sockets whose local port is ``port`` (the server side)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":
            inodes.add(fields[9])
    return inodes


def test_two_workers_both_accept_connections(tmp_path: Path) -> None:
    clients: list[socket.socket] = []
    with serving(f"sqlite:///{tmp_path / 'w.db'}", workers=2) as (server, base):
        port = int(base.rsplit(":", 1)[1])
        try:
            workers = [p for p in _children(server.pid) if _socket_inodes(p)]
            # Both workers must be up (each answers on its own socket).
            deadline = time.monotonic() + 60
            while len(workers) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
                workers = [p for p in _children(server.pid) if _socket_inodes(p)]
            clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(32)]
            for client in clients:
                client.sendall(b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n")
            for client in clients:
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
            accepted = _established_on(port)
            per_worker = [len(_socket_inodes(p) & accepted) for p in workers]
            assert sum(per_worker) == 32
            assert all(count > 0 for count in per_worker), per_worker
        finally:
            for client in clients:
                client.close()


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        exe = Path(sys.executable).with_name("sharedcare")
        command = [str(exe), "serve", "--database", f"sqlite:///{tmp_path / 'w.db'}"]
        command += ["--port", str(port), "--workers", "2"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "could not listen on" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_a_terminated_server_shuts_down_in_order_and_exits_0(tmp_path: Path, workers: int) -> None:
    # `serving` asserts exit code 0 once it has sent SIGTERM; uvicorn raises the signal
    # again after its shutdown, which used to make one worker die of it (-15).
    with serving(f"sqlite:///{tmp_path / 'w.db'}", workers=workers) as (_, base):
        headers = {"X-Sharedcare-User": "t", "X-Sharedcare-Organisation": "X"}
        created = httpx.post(f"{base}/fhir/Organization", json=ORG, headers=headers)
        assert created.status_code == 201


ORG = {"resourceType": "Organization", "name": "Dorset County Hospital"}
