"""Bounded waits while Postgres is down: a request meets a known outage at once.

The eventsourcing library retries every recorder call 10 times on a
connection error, and each try waits the pool's whole timeout for a
connection that cannot come: 10 × (5 s + 0.2 s) = 52 s before a request
reaching the event store during an outage got its 503. Lowering the retries
or the timeout would also fail requests that merely wait for a busy pool.

So each database (host, port, name, user) gets an :class:`OutageGate` that
tells *down* from *busy* by asking the server itself: when a connection
attempt or a query fails, the gate opens a fresh connection of its own (the
probe, at most one at a time and one a second). If that fails too, the
database is down: every later attempt to take a connection from any pool of
that database fails at once with the library's own ``OperationalError``
(so every existing handler turns it into 503 + ``Retry-After``) instead of
waiting for the pool, and the library's 10 retries cost 10 × 0.2 s. While
down, one caller a second probes again; the first probe that connects opens
the gate, and the pools (which look for the server every second, see
:func:`projections.database.cap_reconnect_backoff`) serve as before.

A request's longest wait in an outage is therefore the pool timeout once
(:data:`~projections.database.POOL_TIMEOUT_SECONDS`, the first request to
meet the outage) plus the fast retries; every later one answers in about
two seconds. A busy pool (server up, every connection in use) still makes
requests wait as before: its probe connects, so the gate stays open.

:func:`install` hooks the gate into the library's ``PostgresDatastore``
(which builds its pools itself and offers no setting for this), once per
process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing import postgres as es_postgres
from eventsourcing.persistence import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0
"""Least time between two probes of one database (down: how soon a returning server is seen)."""
PROBE_CONNECT_TIMEOUT_SECONDS = 2
"""libpq's ``connect_timeout`` of a probe (2 is libpq's least)."""


class DatabaseDown(OperationalError):
    """The database is known to be unreachable: refused without waiting for a connection."""


class OutageGate:
    """Whether one database is down, by probing it when something failed (see the module docstring)."""

    def __init__(self, probe: Callable[[], None], name: str, *, probe_interval: float = PROBE_INTERVAL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._probe = probe
        self._interval = probe_interval
        self._clock = clock
        self._probing = threading.Lock()
        self.down_since: float | None = None
        self.last_probe = -float("inf")
        self.probes = 0
        self.refused = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def admit(self) -> None:
        """Return if a connection may be waited for; raise :class:`DatabaseDown` at once if not."""
        if self.down_since is None:
            return
        if self._clock() - self.last_probe >= self._interval and self._probe_once():
            return
        if self.down_since is None:  # another caller's probe just found it back
            return
        self.refused += 1
        raise DatabaseDown(
            f"the database {self.name} is unreachable (for {self._clock() - self.down_since:.0f} s); "
            "not waiting for a connection"
        )

    def failed(self) -> None:
        """A connection attempt or a query failed: probe (unless one ran just now) to tell down from busy."""
        if self._clock() - self.last_probe >= min(self._interval, 0.5):
            self._probe_once()

    def succeeded(self) -> None:
        if self.down_since is not None:
            self._mark_up()

    def _probe_once(self) -> bool:
        """Probe unless another caller is probing; True when the database answered."""
        if not self._probing.acquire(blocking=False):
            return False
        try:
            self.last_probe = self._clock()
            self.probes += 1
            try:
                self._probe()
            except Exception as error:  # noqa: BLE001 - any failure to connect means down
                self._mark_down(error)
                return False
            self._mark_up()
            return True
        finally:
            self._probing.release()

    def _mark_down(self, error: BaseException) -> None:
        if self.down_since is None:
            self.down_since = self._clock()
            first_line = (str(error).strip().splitlines() or [""])[0]
            logger.warning("database %s is down (%s); requests are refused at once until it answers",
                           self.name, first_line)

    def _mark_up(self) -> None:
        if self.down_since is not None:
            logger.warning("database %s answers again after %.1f s", self.name, self._clock() - self.down_since)
        self.down_since = None


_gates: dict[tuple[Any, ...], OutageGate] = {}
_gates_lock = threading.Lock()


def gate_for(datastore: Any) -> OutageGate:
    """The gate of the database the library's ``datastore`` connects to."""
    return gate_for_connection(datastore.pool.kwargs)


def gate_for_connection(kwargs: Mapping[str, Any]) -> OutageGate:
    """The gate of the database that psycopg connection ``kwargs`` (host, port, dbname, user,
    password) name: one per database, shared by every pool of the process that connects to it."""
    key = (kwargs.get("host"), str(kwargs.get("port")), kwargs.get("dbname"), kwargs.get("user"))
    password = kwargs.get("password") or None
    with _gates_lock:
        gate = _gates.get(key)
        if gate is None:
            def probe() -> None:
                with psycopg.connect(host=key[0], port=key[1], dbname=key[2], user=key[3], password=password,
                                     connect_timeout=PROBE_CONNECT_TIMEOUT_SECONDS):
                    pass

            gate = _gates[key] = OutageGate(probe, f"{key[0]}:{key[1]}/{key[2]}")
        return gate


_original_get_connection = es_postgres.PostgresDatastore.get_connection


@contextmanager
def _gated_get_connection(self: Any) -> Iterator[Any]:
    gate = gate_for(self)
    gate.admit()
    try:
        with _original_get_connection(self) as connection:
            gate.succeeded()
            yield connection
    except (OperationalError, InterfaceError) as error:
        if not isinstance(error, DatabaseDown):
            gate.failed()
        raise


def install() -> None:
    """Put the gate in front of every Postgres connection the library takes (idempotent)."""
    es_postgres.PostgresDatastore.get_connection = _gated_get_connection  # type: ignore[method-assign,assignment]
