"""A throwaway PostgreSQL cluster on 127.0.0.1 for the store tests, removed afterwards.

initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user
(created when missing); otherwise to whoever runs the tests. Authentication is trust on
127.0.0.1, except for one role, `PASSWORD_ROLE`, that must give its password (scram), so
that a wrong password can be tried for real. The server's socket directory, data and log
are all in one temporary directory; fsync is off (nothing here must survive a power cut).

`PostgresCluster.database()` gives each test a database of its own on the one cluster.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from tests.peers.base import LOOPBACK, _skip_or_fail, find_binary, free_port

if TYPE_CHECKING:
    import psycopg

#: The role that authenticates by password, and its password.
PASSWORD_ROLE: Final = "kexpw"
PASSWORD: Final = "s3cret-Pw!9"
#: Seconds pg_ctl waits for the server to start, stop or restart.
PG_CTL_TIMEOUT: Final = 60
_OWNER: Final = "postgres"


def pg_binary(name: str) -> str | None:
    """`name` (initdb, pg_ctl) from PATH, else from Debian's /usr/lib/postgresql/N/bin."""
    found = find_binary(name)
    if found is not None:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


class PostgresCluster:
    """initdb + pg_ctl start on a free port; `stop` removes everything."""

    def __init__(self) -> None:
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if initdb is None or pg_ctl is None:
            _skip_or_fail("PostgreSQL server binaries not installed (apt package postgresql)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _skip_or_fail("psycopg 3 not installed (pip install 'kexproxy[postgres]')")
        self._initdb, self._pg_ctl = initdb, pg_ctl
        self._as_owner = os.geteuid() == 0
        if self._as_owner:
            _ensure_owner()
        self.dir = Path(tempfile.mkdtemp(prefix="kexproxy-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = free_port()
        self._names = itertools.count(1)
        if self._as_owner:
            owner = pwd.getpwnam(_OWNER)
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        try:
            self._run(self._initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.write(
                    f"listen_addresses = '{LOOPBACK}'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\n"
                    "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n"
                )
            (self.data / "pg_hba.conf").write_text(
                "local all all trust\n"
                f"host all {PASSWORD_ROLE} {LOOPBACK}/32 scram-sha-256\n"
                f"host all all {LOOPBACK}/32 trust\n"
            )
            self.start()
            with self.connect("postgres") as db:
                db.execute(
                    f"CREATE ROLE {PASSWORD_ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'".encode()
                )
        except BaseException:
            self.stop()
            raise

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", _OWNER, "--", *argv] if self._as_owner else list(argv)
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=PG_CTL_TIMEOUT + 30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:2])} failed ({result.returncode}): {result.stderr.strip()}\n"
                + _tail(self.log)
            )

    def start(self) -> None:
        self._run(self._pg_ctl, "start", "-w", "-t", str(PG_CTL_TIMEOUT), "-D", str(self.data),
                  "-l", str(self.log))  # fmt: skip

    def restart(self) -> None:
        """A fast restart: every connection is cut, as a database fail-over cuts them."""
        self._run(self._pg_ctl, "restart", "-m", "fast", "-w", "-t", str(PG_CTL_TIMEOUT),
                  "-D", str(self.data), "-l", str(self.log))  # fmt: skip

    def url(self, database: str = "postgres", *, user: str = "postgres") -> str:
        return f"postgresql://{user}@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection[Any]:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True, connect_timeout=10)

    def database(self) -> str:
        """A new, empty database on the cluster; its URL (trust authentication)."""
        name = f"kx_{os.getpid()}_{next(self._names)}_{int(time.time() * 1000) % 100000}"
        with self.connect() as db:
            db.execute(f"CREATE DATABASE {name}".encode())
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(self._pg_ctl, "stop", "-m", "immediate", "-w", "-D", str(self.data))
        shutil.rmtree(self.dir, ignore_errors=True)


def _ensure_owner() -> None:
    try:
        pwd.getpwnam(_OWNER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _OWNER],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
