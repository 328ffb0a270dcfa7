"""Where the event log and the read model live, chosen by one URL.

``DATABASE_URL`` takes one of three forms:

- ``sqlite:///data/vidpipe.db`` (relative) or ``sqlite:////abs/path.db``: the
  embedded default, one SQLite file (WAL mode) for events and read model;
- ``postgresql://user:password@host:5432/dbname?schema=public``: production,
  events and read model in one Postgres database (``schema`` optional);
- ``memory://``: the library's in-memory store, for unit tests of the domain
  (projections need SQL and refuse it).

The event store and the read model share the database so that a projection
can write its rows and its tracking position in one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg_pool.pool
from psycopg_pool.base import AttemptWithBackoff

from domain.errors import VidpipeError
from projections import outage_gate

Dialect = Literal["sqlite", "postgres", "memory"]

RECONNECT_MAX_DELAY_SECONDS = 1.0
"""Longest pause between a connection pool's attempts to reach a Postgres that went away."""

POOL_TIMEOUT_SECONDS = 3
"""Longest a request waits for a pooled Postgres connection (the library's ``POSTGRES_CONNECT_TIMEOUT``):
a busy pool makes it wait this long per try; a server that is down, once per outage
(:mod:`projections.outage_gate` refuses later requests at once)."""

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


class ConfigurationError(VidpipeError):
    """Configuration that cannot work; the message says what to set."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A parsed ``DATABASE_URL``."""

    dialect: Dialect
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    dbname: str = ""
    schema: str = "public"

    @classmethod
    def parse(cls, url: str) -> DatabaseUrl:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme == "memory":
            return cls(dialect="memory")
        if scheme == "sqlite":
            path = unquote(url.split("://", 1)[1])
            path = path[1:] if path.startswith("/") else path
            if not path:
                raise ConfigurationError(
                    f"DATABASE_URL {url!r} names no file; use sqlite:///data/vidpipe.db"
                )
            return cls(dialect="sqlite", path=path)
        if scheme in ("postgres", "postgresql", "postgresql+psycopg"):
            dbname = unquote(parts.path.lstrip("/"))
            if not dbname:
                raise ConfigurationError(
                    f"DATABASE_URL {_redacted(url)!r} names no database; "
                    "use postgresql://user@host:5432/dbname"
                )
            schema = parse_qs(parts.query).get("schema", ["public"])[0]
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", schema):
                raise ConfigurationError(f"schema {schema!r} is not a plain SQL identifier")
            return cls(
                dialect="postgres",
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 5432,
                user=unquote(parts.username or "postgres"),
                password=unquote(parts.password or ""),
                dbname=dbname,
                schema=schema,
            )
        raise ConfigurationError(
            f"DATABASE_URL {_redacted(url)!r} is not understood; use sqlite:///path.db, "
            "postgresql://user@host:5432/dbname or memory://"
        )

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for this database."""
        if self.dialect == "memory":
            return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
        if self.dialect == "sqlite":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            return {
                "PERSISTENCE_MODULE": "eventsourcing.sqlite",
                "SQLITE_DBNAME": self.path,
                "SQLITE_LOCK_TIMEOUT": "30",
            }
        cap_reconnect_backoff()
        outage_gate.install()
        return {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": self.dbname,
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_SCHEMA": self.schema,
            "POSTGRES_PRE_PING": "y",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "8",
            "POSTGRES_CONNECT_TIMEOUT": str(POOL_TIMEOUT_SECONDS),
        }

    def conninfo(self) -> str:
        """A libpq connection string (Postgres only)."""
        return (
            f"host={self.host} port={self.port} dbname={self.dbname} "
            f"user={self.user} password={self.password}"
        )


class _CappedBackoff(AttemptWithBackoff):
    """psycopg_pool's reconnection attempts, at most :data:`RECONNECT_MAX_DELAY_SECONDS` apart."""

    def update_delay(self, now: float) -> None:
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY_SECONDS)


def cap_reconnect_backoff() -> None:
    """Make the Postgres connection pools notice a returning server within a second.

    When the server goes away, psycopg_pool retries connecting with
    exponential backoff (1, 2, 4, ... s, for up to 5 minutes) and requests
    wait for those attempts: after a 20 s restart the API kept answering 503
    for 5 s more, after a minute's outage it could be a minute more. The
    eventsourcing library builds its pools itself and offers no setting, so
    the pool module's backoff class is replaced, once, for the process; a
    connection attempt a second per pool is nothing to a server that is up.
    """
    psycopg_pool.pool.AttemptWithBackoff = _CappedBackoff  # type: ignore[misc]


def _redacted(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


_NAMED_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def to_pyformat(statement: str) -> str:
    """``:name`` parameters (SQLite style) as ``%(name)s`` (psycopg style)."""
    return _NAMED_PARAM.sub(r"%(\1)s", statement.replace("%", "%%"))


def ddl_statements(dialect: Dialect) -> list[str]:
    """The read model's DDL for ``dialect``, from ``sql/<dialect>/*.sql`` in order."""
    statements: list[str] = []
    for path in sorted((SQL_DIR / dialect).glob("*.sql")):
        text = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("--")
        )
        statements += [s.strip() for s in text.split(";") if s.strip()]
    return statements
