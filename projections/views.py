"""Read-model storage: SQL sessions on the event store's own database.

A view is one of the library's tracking recorders (``SQLiteTrackingRecorder``,
``PostgresTrackingRecorder``) extended with the read model's tables from
``sql/<dialect>/``. Projections write rows through a :class:`SqlSession` and the
view records the tracking position in the same transaction, so every event is
applied exactly once and a crashed runner resumes where it stopped.

Each follower tracks its position under its own key (``VideoProcessing:queue_status``,
``VideoProcessing:dispatcher``) in the library's single-row tracking table.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import anyio.to_thread
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    Tracking,
    TrackingRecorder,
)
from eventsourcing.postgres import PostgresFactory, PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteFactory, SQLiteTrackingRecorder
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier

from handlers.failpoints import failpoint  # a dependency-free leaf module (fault injection only)
from projections.database import ConfigurationError, Dialect, ddl_statements, to_pyformat
from projections import outage_gate
from projections.read_pool import ReadPool

Row = dict[str, Any]
DROP_COLUMN = re.compile(r"ALTER TABLE (\w+) DROP COLUMN IF EXISTS (\w+)", re.IGNORECASE)
"""A migration that removes a column (``sql/<dialect>/``): run only while the column is there, on either
dialect (SQLite has no ``IF EXISTS`` here, and Postgres would lock the table at every start)."""
_pyformat = functools.lru_cache(maxsize=1024)(to_pyformat)
""":func:`to_pyformat`, remembered: reads repeat a few constant statements; no regex on each one."""


class SqlSession:
    """One transaction's statements, with ``:name`` parameters on either dialect."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self.cursor = cursor
        self.dialect = dialect

    def execute(self, statement: str, params: Mapping[str, Any] | None = None) -> None:
        if self.dialect == "postgres":
            self.cursor.execute(to_pyformat(statement), params or {})
        else:
            self.cursor.execute(statement, params or {})

    def fetchall(self, statement: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        self.execute(statement, params)
        return [dict(row) for row in self.cursor.fetchall()]

    def fetchone(self, statement: str, params: Mapping[str, Any] | None = None) -> Row | None:
        self.execute(statement, params)
        row = self.cursor.fetchone()
        return None if row is None else dict(row)

    def json_param(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True, default=str)

    def has_column(self, table: str, column: str) -> bool:
        if self.dialect == "postgres":
            query = ("SELECT 1 AS found FROM information_schema.columns WHERE table_schema = current_schema() "
                     "AND table_name = :table AND column_name = :column")
        else:
            query = "SELECT 1 AS found FROM pragma_table_info(:table) WHERE name = :column"
        return self.fetchone(query, {"table": table, "column": column}) is not None


class Projection(Protocol):
    """Turns events into read-model rows; runs inside the view's transaction."""

    name: str

    def prepare(self, events: Sequence[Any]) -> None:
        """Side effects for a batch, before its transaction (most projections have none)."""

    def apply(self, domain_event: Any, session: SqlSession) -> None: ...

    def reset(self, session: SqlSession) -> None:
        """Remove every row this projection wrote (before a rebuild)."""


class ReadModelView(TrackingRecorder):
    """What followers and readers need of a view, on either dialect."""

    dialect: Dialect

    @contextmanager
    def session(self, *, commit: bool = True) -> Iterator[SqlSession]:
        raise NotImplementedError  # pragma: no cover

    def record(
        self,
        projection: Projection,
        events: Sequence[Any],
        tracking: Tracking,
        *,
        after: int | None = None,
    ) -> None:
        """Apply ``events`` and advance the position to ``tracking``, atomically.

        ``after`` is the position the batch was read from: when another runner
        moved the position since, or is already at or past ``tracking``, the
        library's ``IntegrityError`` is raised and nothing is written.
        """
        with self.session() as session:
            current = self._max_tracking_id(tracking.application_name, session.cursor) or 0
            if after is not None and current != after:
                raise IntegrityError(
                    f"{tracking.application_name} moved from {after} to {current} meanwhile"
                )
            for domain_event in events:
                projection.apply(domain_event, session)
            self._insert_tracking(session.cursor, tracking)
            failpoint("projection.in_transaction")  # rows and position written, not committed

    def forget_position(self, session: SqlSession, key: str) -> None:
        raise NotImplementedError  # pragma: no cover

    def fetchall(self, statement: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        with self.session(commit=False) as session:
            return session.fetchall(statement, params)

    def fetchone(self, statement: str, params: Mapping[str, Any] | None = None) -> Row | None:
        with self.session(commit=False) as session:
            return session.fetchone(statement, params)

    async def afetchall(self, statement: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """:meth:`fetchall` for the event loop (here in a worker thread; Postgres reads without one)."""
        return await anyio.to_thread.run_sync(self.fetchall, statement, params)

    async def afetchone(self, statement: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await anyio.to_thread.run_sync(self.fetchone, statement, params)

    def _create_read_model(self) -> None:
        with self.session() as session:
            for statement in ddl_statements(self.dialect):
                dropped = DROP_COLUMN.fullmatch(statement)
                if dropped is None:
                    session.cursor.execute(statement)
                elif session.has_column(*dropped.groups()):  # (SQLite's BEGIN IMMEDIATE: one writer at a time)
                    session.cursor.execute(statement if self.dialect == "postgres"  # it may have gone meanwhile
                                           else "ALTER TABLE {} DROP COLUMN {}".format(*dropped.groups()))

    def close(self) -> None:
        self.datastore.close()  # type: ignore[attr-defined]


class SQLiteReadModelView(SQLiteTrackingRecorder, ReadModelView):
    dialect: Dialect = "sqlite"

    def create_table(self) -> None:
        super().create_table()
        self._create_read_model()

    @contextmanager
    def session(self, *, commit: bool = True) -> Iterator[SqlSession]:
        # BEGIN IMMEDIATE takes the write lock up front, so a writer in another
        # process makes us wait (busy timeout) instead of failing mid-transaction.
        with self.datastore.get_connection(commit=commit) as connection:
            cursor = connection.cursor()
            cursor.execute("BEGIN IMMEDIATE" if commit else "BEGIN")
            try:
                yield SqlSession(cursor, "sqlite")
            except sqlite3.IntegrityError as error:
                connection.rollback()
                raise IntegrityError(str(error)) from error
            except BaseException:
                connection.rollback()
                raise
            if commit:
                connection.commit()
            else:
                connection.rollback()

    def forget_position(self, session: SqlSession, key: str) -> None:
        session.execute("DELETE FROM tracking WHERE application_name = :key", {"key": key})


class PostgresReadModelView(PostgresTrackingRecorder, ReadModelView):
    dialect: Dialect = "postgres"

    def create_table(self) -> None:
        super().create_table()
        self._create_read_model()

    @contextmanager
    def session(self, *, commit: bool = True) -> Iterator[SqlSession]:
        with self.datastore.transaction(commit=commit) as cursor:
            cursor.execute(
                SQL("SET LOCAL search_path TO {}").format(Identifier(self.datastore.schema))
            )
            yield SqlSession(cursor, "postgres")

    _reads: ReadPool | None = None
    _reads_lock = threading.Lock()

    def fetchall(self, statement: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """One round trip (see :mod:`projections.read_pool`), not a transaction of five."""
        return self._read_pool().fetchall(_pyformat(statement), params)

    def fetchone(self, statement: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return self._read_pool().fetchone(_pyformat(statement), params)

    async def afetchall(self, statement: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """On the event loop itself: no hop to a worker thread (see :mod:`projections.read_pool`)."""
        return await self._read_pool().afetchall(_pyformat(statement), params)

    async def afetchone(self, statement: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._read_pool().afetchone(_pyformat(statement), params)

    def _read_pool(self) -> ReadPool:
        if self._reads is None:
            with self._reads_lock:
                if self._reads is None:
                    pool = self.datastore.pool
                    self._reads = ReadPool(
                        {**(pool.kwargs or {}), "connect_timeout": max(1, round(pool.timeout))},
                        self.datastore.schema, max_size=pool.max_size, timeout=pool.timeout,
                        gate=outage_gate.gate_for(self.datastore),  # the event store's pools share it
                    )
        return self._reads

    def close(self) -> None:
        with self._reads_lock:
            if self._reads is not None:
                self._reads.close()
        super().close()

    def forget_position(self, session: SqlSession, key: str) -> None:
        session.cursor.execute(
            SQL("DELETE FROM {}.{} WHERE application_name = %s").format(
                Identifier(self.datastore.schema), Identifier(self.tracking_table_name)
            ),
            (key,),
        )


def open_view(event_store_env: Mapping[str, str]) -> ReadModelView:
    """The read-model view on the same database as the event store; tables created."""
    factory = InfrastructureFactory.construct(Environment("VideoProcessing", dict(event_store_env)))
    if isinstance(factory, SQLiteFactory):
        return factory.tracking_recorder(SQLiteReadModelView)  # type: ignore[return-value]
    if isinstance(factory, PostgresFactory):
        return factory.tracking_recorder(PostgresReadModelView)  # type: ignore[return-value]
    raise ConfigurationError(
        "projections need SQL: set DATABASE_URL to sqlite:///... or postgresql://..."
    )
