"""A throwaway PostgreSQL 15 cluster, started with Debian's server binaries.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created
and started as the ``postgres`` system user (``runuser -u postgres``) in a temporary
directory that user owns. The cluster listens on 127.0.0.1 on a free port, with fsync
off for tests (it is thrown away), and is stopped at the end of the session. Benchmarks ask
for a ``durable`` cluster: PostgreSQL's default fsync, synchronous commit and full-page
writes, so a figure never counts a commit that would not survive a power cut.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN_CANDIDATES = (Path("/usr/lib/postgresql/15/bin"),)


def _bindir() -> Path:
    env = os.environ.get("SHAREDCARE_TEST_PG_BINDIR")
    candidates = ([Path(env)] if env else []) + list(PG_BIN_CANDIDATES)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError(
        "PostgreSQL 15 server binaries not found; install them with "
        "`apt-get install postgresql-15` (make test does this) or set SHAREDCARE_TEST_PG_BINDIR"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Cluster:
    """A running throwaway cluster."""

    root: Path
    port: int
    bindir: Path
    run_as: str | None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the ``postgres`` superuser."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of another database in this cluster."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        """Stop the server and delete its files."""
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


#: Options that make a test cluster faster by giving up crash safety.
_NOT_DURABLE = ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")


def start_cluster(*, durable: bool = False) -> Cluster:
    """Create and start a cluster; the caller must :meth:`Cluster.stop` it.

    Args:
        durable: Keep PostgreSQL's durability defaults (fsync, synchronous commit, full-page
            writes), as benchmarks must; tests turn them off for speed.
    """
    bindir = _bindir()
    run_as = "postgres" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="sharedcare-pg-"))
    if run_as:
        user = pwd.getpwnam(run_as)
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = Cluster(root=root, port=_free_port(), bindir=bindir, run_as=run_as)
    data = root / "data"
    cluster._run(
        "initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
        "--locale=C.UTF-8", "--no-sync",
    )  # fmt: skip
    options = " ".join(
        [
            f"-p {cluster.port}",
            f"-k {root}",
            "-c listen_addresses=127.0.0.1",
            *([] if durable else _NOT_DURABLE),
            "-c max_connections=200",
            "-c shared_buffers=128MB",
        ]
    )
    cluster._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")
    return cluster
