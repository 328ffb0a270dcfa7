"""A throw-away PostgreSQL server for faults that must not touch the shared one.

Restarting the machine's own cluster would break every other test running
against it, so the Postgres-restart scenario (and its regression tests) bring
their own: :class:`PrivatePostgres` creates a cluster with Debian's
``pg_createcluster`` (trust authentication, listening on localhost only, a
free port, a random name ``vidpipe_chaos_<hex>``), creates one database,
restarts or stops it on request with ``pg_ctlcluster``, and always drops it
(``pg_dropcluster --stop``) when the ``with`` block ends, even on failure.

It needs Debian's ``postgresql-common`` tools and root (they run the server
as the ``postgres`` user); without them :class:`PrivatePostgresUnavailable`
says what is missing. Nothing is skipped silently.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)

ShutdownMode = Literal["smart", "fast", "immediate"]
TOOLS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster")
CLUSTER_PREFIX = "vidpipe_chaos_"
COMMAND_TIMEOUT_SECONDS = 120.0


class PrivatePostgresUnavailable(RuntimeError):
    """A private cluster cannot be created here; the message says why and what would fix it."""


def installed_version() -> str:
    """The newest PostgreSQL major version installed under ``/usr/lib/postgresql``."""
    versions = sorted(
        (p.name for p in Path("/usr/lib/postgresql").glob("*") if (p / "bin" / "postgres").is_file()),
        key=float,
    )
    if not versions:
        raise PrivatePostgresUnavailable(
            "no PostgreSQL server binaries under /usr/lib/postgresql; apt-get install postgresql"
        )
    return versions[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """A PostgreSQL cluster of its own: created on enter, dropped on exit.

    ``url`` is ``postgresql://postgres@127.0.0.1:<port>/<database>``.
    :meth:`restart` is ``pg_ctlcluster <version> <name> restart -m <mode>``;
    :meth:`stop` and :meth:`start` split it, for a longer outage.
    """

    def __init__(self, database: str = "vidpipe", *, version: str | None = None) -> None:
        self.database = database
        self.version = version
        self.name = CLUSTER_PREFIX + secrets.token_hex(4)
        self.port = 0
        self.created = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    # ------------------------------------------------------------ lifecycle
    def create(self) -> PrivatePostgres:
        """Create and start the cluster, wait until it answers, create the database."""
        missing = [tool for tool in TOOLS if shutil.which(tool) is None]
        if missing:
            raise PrivatePostgresUnavailable(
                f"{', '.join(missing)} not found: a private Postgres cluster needs Debian's "
                "postgresql-common (apt-get install postgresql)"
            )
        if os.geteuid() != 0:
            raise PrivatePostgresUnavailable(
                "creating a private Postgres cluster with pg_createcluster needs root "
                f"(running as uid {os.geteuid()}); run the Postgres-restart scenario as root"
            )
        self.version = self.version or installed_version()
        self.port = _free_port()
        self.created = True  # from here on, drop() removes whatever part of it exists
        self._run(
            "pg_createcluster", self.version, self.name, "-p", str(self.port),
            "-o", "max_connections=60",
            "-o", "shared_buffers=16MB", "--start", "--", "--auth=trust",
        )
        self.wait_ready()
        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        logger.info("private Postgres %s %s on 127.0.0.1:%d", self.version, self.name, self.port)
        return self

    def drop(self) -> None:
        """Stop the cluster and delete it with its data directory (idempotent)."""
        if not self.created:
            return
        self._run("pg_dropcluster", "--stop", str(self.version), self.name, check=False)
        self.created = False

    def __enter__(self) -> PrivatePostgres:
        try:
            return self.create()
        except BaseException:
            self.drop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.drop()

    # ------------------------------------------------------------ faults
    def restart(self, mode: ShutdownMode = "fast") -> float:
        """``pg_ctlcluster restart -m <mode>``; returns the seconds the command took.

        ``fast`` disconnects every client and shuts down cleanly; ``immediate``
        kills the server processes without a checkpoint (a crash: the start
        runs crash recovery from the WAL).
        """
        started = time.monotonic()
        self._ctl("restart", "-m", mode)
        return time.monotonic() - started

    def stop(self, mode: ShutdownMode = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def start(self) -> None:
        self._ctl("start")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the server accepts connections."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._conninfo("postgres"), connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as error:
                if time.monotonic() > deadline:
                    raise PrivatePostgresUnavailable(
                        f"private Postgres {self.name} on port {self.port} did not accept "
                        f"connections within {timeout:.0f}s: {error}"
                    ) from error
                time.sleep(0.2)

    # ------------------------------------------------------------ helpers
    def _conninfo(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={database} user=postgres"

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctlcluster", str(self.version), self.name, *args)

    @staticmethod
    def _run(*command: str, check: bool = True) -> None:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PrivatePostgresUnavailable(f"{' '.join(command)} failed: {error}") from error
        if check and done.returncode != 0:
            raise PrivatePostgresUnavailable(
                f"{' '.join(command)} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-800:]}"
            )
