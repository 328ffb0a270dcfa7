"""One-round-trip reads of the Postgres read model, for the API's hot paths.

The event store's pool (the eventsourcing library's) pings every connection
it hands out and a read through it runs in a transaction: ``SELECT 1``,
``BEGIN``, ``SET LOCAL search_path``, the query, ``ROLLBACK`` -- five round
trips to Postgres for one status row. Reads need none of that: a single
statement is its own snapshot in autocommit, and the schema can be the
connection's ``search_path`` from the moment it connects. This pool's
connections are set up that way, so a read is one round trip (psycopg
prepares a statement it has seen five times on that connection, in the
same round trip).

Instead of a ping per request, a read that meets a broken connection (the
server restarted, the connection was killed) checks the other idle ones
and tries once more; if Postgres is really down, that attempt waits for
the pool's connection timeout and the error reaches the API as a 503.
Errors are raised as the eventsourcing library's classes, as the event
store raises them, so callers and the API's error handlers treat them alike.
The API's hot paths read with ``await afetchone``/``afetchall``: the same
one round trip on psycopg's async connections, on the event loop, so a
status read costs no hop to the thread pool (with 200 clients that hop, and
40 threads taking turns at the GIL, cost more CPU than the rest of the
request). The async connections are kept here, not in psycopg_pool's
``AsyncConnectionPool``, whose locks and workers belong to the event loop
that opened it: a connection is not, so this pool serves whichever loop
calls it (uvicorn's, a test client's) and closes from synchronous code.

An optional *gate* (:mod:`projections.outage_gate`'s, shared with the event
store's pools) is asked before each connection is taken and told of each
connection failure, so a known outage is refused at once here too.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

import anyio.to_thread
import psycopg
import psycopg_pool
from eventsourcing import persistence
from psycopg.rows import dict_row
from psycopg.sql import SQL, Identifier

Row = dict[str, Any]

_TRANSLATED: tuple[tuple[type[psycopg.Error], type[persistence.PersistenceError]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, persistence.PersistenceError),
)


def translated(error: psycopg.Error) -> persistence.PersistenceError:
    """``error`` as the eventsourcing library raises it (the driver's error stays its cause)."""
    for driver_class, library_class in _TRANSLATED:  # pragma: no branch - psycopg.Error is last
        if isinstance(error, driver_class):
            wrapped = library_class(str(error))
            wrapped.__cause__ = error
            return wrapped
    raise AssertionError(error)  # pragma: no cover


class Gate(Protocol):
    """What the pool asks of an outage gate (see :class:`projections.outage_gate.OutageGate`)."""

    @property
    def down(self) -> bool: ...

    def admit(self) -> None: ...

    def failed(self) -> None: ...

    def succeeded(self) -> None: ...


class ReadPool:
    """Autocommit connections with ``search_path`` set once; ``fetchall``/``fetchone`` in one round trip."""

    def __init__(
        self,
        connect_kwargs: Mapping[str, Any],
        schema: str,
        *,
        max_size: int = 10,
        timeout: float = 5.0,
        name: str = "vidpipe-reads",
        gate: Gate | None = None,
    ) -> None:
        self.schema = schema
        self.gate = gate
        set_path = SQL("SET search_path TO {}").format(Identifier(schema))

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(set_path)  # once per connection, before autocommit: commit it
            conn.commit()
            conn.autocommit = True

        kwargs = {k: v for k, v in connect_kwargs.items() if k not in ("row_factory", "autocommit")}
        self.timeout = timeout
        self.max_size = max(1, max_size)
        self._set_path = set_path
        self._async_kwargs = {**kwargs, "row_factory": dict_row, "autocommit": True}
        self._idle: deque[psycopg.AsyncConnection[Any]] = deque()
        self._limits: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False
        self.pool: psycopg_pool.ConnectionPool[Any] = psycopg_pool.ConnectionPool(
            kwargs={**kwargs, "row_factory": dict_row},
            min_size=0,  # connect on the first read: a process that never reads holds no connection
            max_size=max(1, max_size),
            open=False,
            configure=configure,
            timeout=timeout,
            name=name,
        )
        self._opened = False
        self._lock = threading.Lock()

    def fetchall(self, query: Any, params: Mapping[str, Any] | None = None) -> list[Row]:
        return self._run(query, params, one=False)  # type: ignore[no-any-return]

    def fetchone(self, query: Any, params: Mapping[str, Any] | None = None) -> Row | None:
        return self._run(query, params, one=True)  # type: ignore[no-any-return]

    def _run(self, query: Any, params: Mapping[str, Any] | None, *, one: bool) -> Any:
        if not self._opened:
            self._open()
        gate = self.gate
        for attempt in (1, 2):
            if gate is not None:
                gate.admit()  # raises at once while the database is known to be down
            conn: psycopg.Connection[Any] | None = None
            try:
                with self.pool.connection() as conn:
                    cursor = conn.execute(query, params or {})
                    row_or_rows = cursor.fetchone() if one else cursor.fetchall()
            except psycopg.Error as error:
                lost = conn is None or conn.broken  # no connection came, or it broke under the query
                if lost and gate is not None:
                    gate.failed()
                if attempt == 1 and conn is not None and conn.broken:
                    self.pool.check()  # a restart broke the idle ones too: replace them, then retry once
                    continue
                raise translated(error) from error
            if gate is not None:
                gate.succeeded()
            return row_or_rows
        raise AssertionError("unreachable")  # pragma: no cover

    def _open(self) -> None:
        with self._lock:
            if not self._opened:
                self.pool.open(wait=False)
                self._opened = True

    # --- on the event loop ---

    async def afetchall(self, query: Any, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._arun(query, params, one=False)  # type: ignore[no-any-return]

    async def afetchone(self, query: Any, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._arun(query, params, one=True)  # type: ignore[no-any-return]

    async def _arun(self, query: Any, params: Mapping[str, Any] | None, *, one: bool) -> Any:
        gate = self.gate
        limit = self._limit()
        if limit.locked():  # every connection in use: wait as long as the sync pool would
            try:
                async with asyncio.timeout(self.timeout):
                    await limit.acquire()
            except TimeoutError:
                raise translated(psycopg_pool.PoolTimeout(
                    f"couldn't get a connection after {self.timeout:.2f} sec"
                )) from None
        else:
            await limit.acquire()
        try:
            for attempt in (1, 2):
                if gate is not None and gate.down:
                    await anyio.to_thread.run_sync(gate.admit)  # refuses at once, or probes (a blocking connect)
                conn: psycopg.AsyncConnection[Any] | None = None
                try:
                    conn = self._take_idle() or await self._connect()
                    cursor = await conn.execute(query, params or {})
                    row_or_rows = await (cursor.fetchone() if one else cursor.fetchall())
                except psycopg.Error as error:
                    lost = conn is None or conn.broken
                    if conn is not None:
                        self._give_back(conn)
                    if lost and gate is not None:
                        await anyio.to_thread.run_sync(gate.failed)
                    if attempt == 1 and conn is not None and conn.broken:
                        self._drop_idle()  # a restart broke the idle ones too: retry once on a new one
                        continue
                    raise translated(error) from error
                except BaseException:  # cancelled mid-query: the connection's state is unknown
                    if conn is not None:
                        _close_now(conn)
                    raise
                self._give_back(conn)
                if gate is not None:
                    gate.succeeded()
                return row_or_rows
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            limit.release()

    def _limit(self) -> asyncio.Semaphore:
        """At most ``max_size`` connections in use per event loop (there is one in production)."""
        loop = asyncio.get_running_loop()
        limit = self._limits.get(loop)
        if limit is None:
            limit = self._limits[loop] = asyncio.Semaphore(self.max_size)
        return limit

    def _take_idle(self) -> psycopg.AsyncConnection[Any] | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        if self._closed:
            raise psycopg.OperationalError("the read pool is closed")
        conn = await psycopg.AsyncConnection.connect(**self._async_kwargs)
        try:
            await conn.execute(self._set_path)
        except BaseException:
            await conn.close()
            raise
        return conn

    def _give_back(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Keep ``conn`` for the next read if it is idle and healthy; else close it."""
        if conn.closed or self._closed or conn.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            _close_now(conn)
            return
        with self._lock:
            self._idle.append(conn)

    def _drop_idle(self) -> None:
        with self._lock:
            dropped, self._idle = list(self._idle), deque()
        for conn in dropped:
            _close_now(conn)

    def close(self) -> None:
        with self._lock:
            self._opened = True  # a read after close fails (the pool is closed), it does not reopen
            self._closed = True
        self._drop_idle()
        self.pool.close()


def _close_now(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close an async connection from any thread: its ``close()`` never waits (it only calls libpq)."""
    closing = conn.close()
    try:
        closing.send(None)
    except StopIteration:
        return
    closing.close()  # pragma: no cover - close() does not suspend
