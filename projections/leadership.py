"""Leadership: one active runner of each follower of the log, the others on standby.

Projection runners and the dispatcher may run in several processes on several
hosts (every API replica with ``VIDPIPE_RUN_FOLLOWERS=true``, or ``make
project`` / ``make dispatch`` twice). For each follower (its key, say
``VideoProcessing:dispatcher``) exactly one process leads and applies or
publishes; the others stand by and try again every ``poll_interval``.

The lock is the database's or the operating system's, so it dies with its
holder:

- :class:`PostgresLeadership`: a session-level ``pg_try_advisory_lock`` per
  key on one dedicated connection per process, held for the leader's life.
  A process that dies (even by ``SIGKILL``) closes its socket and Postgres
  releases its locks at once; a host that vanishes is noticed by the server's
  TCP keepalives (set to about 11 s on this session) and by the client's
  ``tcp_user_timeout``. Losing the connection loses every key.
- :class:`FileLeadership` (SQLite: one host): ``flock`` on a file per key
  next to the database file; the kernel drops it when the process dies.
- :class:`LocalLeadership` (``memory://``): a lock inside the process.

:class:`LedFollower` wraps an :class:`~projections.follower.EventFollower`:
its thread applies batches only while this process leads the key, and each
batch first *confirms* the lock with its owner (one query on the lock's
connection; ``fstat`` for a file), so a runner that lost its connection stops
before its next batch instead of at the next poll. A batch already past that
check may still commit after the loss, while the new leader starts: that is
why leadership is an optimisation on top of exactly-once, not its basis —
projections commit their tracking position in the same transaction as their
rows (the second writer of a batch rolls back), and the dispatcher's publish
carries a QStash deduplication id per (queue, step, attempt) and skips a
message already recorded.

A one-off job that writes a projection (``make rebuild-projections``) takes
the same keys first with :func:`exclusive`: it refuses, or waits, while a
follower leads them, and no follower can take them until it is done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import socket
import threading
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import psycopg

from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.worker import PeriodicWorker

logger = logging.getLogger(__name__)

NAMESPACE = 0x76696470
"""First half of every vidpipe advisory lock (``'vidp'``); the second is a hash of schema and key."""


def identity() -> str:
    """Who this process is, as the holder of a lock: host and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


def lock_id(scope: str, key: str) -> int:
    """The advisory lock's second half (a signed int4) for ``key`` in ``scope`` (the schema)."""
    value = zlib.crc32(f"{scope}:{key}".encode())
    return value - (1 << 32) if value >= 1 << 31 else value


class LeadershipLost(Exception):
    """This process no longer leads the follower it was about to apply a batch for."""


class Leadership(ABC):
    """Locks, one per follower key, that only one process holds at a time."""

    @abstractmethod
    def tick(self, wanted: Collection[str]) -> set[str]:
        """Check the keys held, try to take the other ``wanted`` ones; return the keys held now."""

    @abstractmethod
    def confirm(self, key: str) -> bool:
        """Whether ``key`` is still held, asked of the lock's owner (not remembered)."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Give ``key`` up (a clean stop), so a standby takes it at its next try."""

    @abstractmethod
    def holders(self, keys: Collection[str]) -> dict[str, str | None]:
        """Who holds each key (any process), ``None`` when nobody does."""

    def close(self) -> None:
        """Release everything."""


# --------------------------------------------------------------------- Postgres
class PostgresLeadership(Leadership):
    """Session-level advisory locks on one dedicated connection (autocommit, no pool).

    The connection must reach Postgres itself (or a session-mode pooler): a
    transaction-mode pooler hands the session to other clients between
    statements, and a session lock means nothing there.
    """

    def __init__(self, url: DatabaseUrl, *, connect_timeout: int = 5) -> None:
        self.conninfo = url.conninfo()
        self.scope = url.schema
        self.connect_timeout = connect_timeout
        self.application_name = f"vidpipe leader {identity()}"[:63]
        self._conn: psycopg.Connection[Any] | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._down = False

    @property
    def session_pid(self) -> int | None:
        """The server process of the lock's session (``pg_terminate_backend`` of it loses every key)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    def _ids(self, keys: Collection[str]) -> dict[int, str]:
        """pg_locks shows the halves as unsigned oids."""
        return {lock_id(self.scope, key) & 0xFFFFFFFF: key for key in keys}

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._held.clear()  # a new session holds nothing
            self._conn = psycopg.connect(
                self.conninfo, autocommit=True, application_name=self.application_name,
                connect_timeout=self.connect_timeout,
                # the client gives up on a silent server within ~10 s ...
                keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=3, tcp_user_timeout=10000,
            )
            # ... and the server on a silent client (its default is the OS's: two hours)
            for setting in ("tcp_keepalives_idle = 5", "tcp_keepalives_interval = 2", "tcp_keepalives_count = 3"):
                self._conn.execute(f"SET {setting}")
            if self._down:
                logger.warning("leadership: the database answers again (%s)", self.application_name)
            self._down = False
        return self._conn

    def _lost(self, error: Exception) -> None:
        if not self._down:
            logger.warning("leadership: connection lost (%s); leading nothing until it is back",
                           str(error).strip() or type(error).__name__)
        self._down = True
        self._held.clear()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    def _verify(self) -> None:
        if not self._held:
            return
        assert self._conn is not None
        ids = self._ids(self._held)
        rows = self._conn.execute(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
            "AND classid = %s AND objsubid = 2 AND granted", (NAMESPACE,),
        ).fetchall()
        self._held = {ids[int(r[0])] for r in rows if int(r[0]) in ids}

    def tick(self, wanted: Collection[str]) -> set[str]:
        with self._lock:
            try:
                before = set(self._held)
                self._verify()
                lost = before - self._held  # not retaken in the same round
                missing = [key for key in wanted if key not in self._held and key not in lost]
                if missing:
                    conn = self._connection()
                    for key in missing:
                        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)",
                                           (NAMESPACE, lock_id(self.scope, key))).fetchone()
                        if row is not None and row[0]:
                            self._held.add(key)
            except psycopg.Error as error:
                self._lost(error)
            return set(self._held)

    def confirm(self, key: str) -> bool:
        with self._lock:
            if key not in self._held:
                return False
            try:
                self._verify()
            except psycopg.Error as error:
                self._lost(error)
            return key in self._held

    def release(self, key: str) -> None:
        with self._lock:
            if key not in self._held or self._conn is None:
                return
            self._held.discard(key)
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (NAMESPACE, lock_id(self.scope, key)))
            except psycopg.Error as error:
                self._lost(error)

    def holders(self, keys: Collection[str]) -> dict[str, str | None]:
        ids = self._ids(keys)
        found: dict[str, str | None] = dict.fromkeys(keys)
        with self._lock:  # on the dedicated connection: asking often opens no connection each time
            try:
                rows = self._connection().execute(
                    "SELECT l.objid, l.pid, a.application_name, a.client_addr FROM pg_locks l "
                    "LEFT JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                    "AND l.classid = %s AND l.objsubid = 2 AND l.granted", (NAMESPACE,),
                ).fetchall()
            except psycopg.Error as error:
                self._lost(error)
                raise
        for objid, pid, name, address in rows:
            if int(objid) in ids:
                where = f" from {address}" if address else ""
                found[ids[int(objid)]] = f"{name or 'a session'} (backend {pid}{where})"
        return found

    def close(self) -> None:
        with self._lock:
            self._held.clear()
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()  # the session's locks go with it
            self._conn = None


# --------------------------------------------------------------------- file locks
class FileLeadership(Leadership):
    """``flock`` on ``<database file>.leader-<key>.lock``: for SQLite, whose processes share one host.

    The file holds the holder's host and pid. A lock file removed or replaced
    under a holder counts as lost (its inode is compared), so deleting it
    cannot make two leaders.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()

    def path(self, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
        return self.base.with_name(f"{self.base.name}.leader-{safe}.lock")

    @staticmethod
    def _same_file(fd: int, path: Path) -> bool:
        try:
            on_disk = os.stat(path)
        except FileNotFoundError:
            return False
        held = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)

    def _try(self, key: str) -> bool:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (ffmpeg)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return False
            raise
        if not self._same_file(fd, path):  # replaced between open and flock
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{identity()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        self._fds[key] = fd
        return True

    def _drop(self, key: str) -> None:
        fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)  # closing the last descriptor releases the flock

    def tick(self, wanted: Collection[str]) -> set[str]:
        with self._lock:
            lost = [k for k, fd in self._fds.items() if not self._same_file(fd, self.path(k))]
            for key in lost:
                self._drop(key)
            for key in wanted:
                if key not in self._fds and key not in lost:  # one that just lost it does not retake it
                    try:
                        self._try(key)
                    except OSError as error:
                        logger.warning("leadership: cannot lock %s: %s", self.path(key), error)
            return set(self._fds)

    def confirm(self, key: str) -> bool:
        with self._lock:
            fd = self._fds.get(key)
            if fd is None:
                return False
            if not self._same_file(fd, self.path(key)):
                self._drop(key)
                return False
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._drop(key)

    def holders(self, keys: Collection[str]) -> dict[str, str | None]:
        found: dict[str, str | None] = {}
        for key in keys:
            found[key] = None
            try:
                fd = os.open(self.path(key), os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:  # held (by any process, this one too)
                    found[key] = os.pread(fd, 256, 0).decode(errors="replace").strip() or "a process"
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        return found

    def close(self) -> None:
        with self._lock:
            for key in list(self._fds):
                self._drop(key)


# --------------------------------------------------------------------- in-process
class LocalLeadership(Leadership):
    """Leadership among the electors of one process (``memory://``: there is no other process)."""

    _owners: ClassVar[dict[str, LocalLeadership]] = {}
    _guard: ClassVar[threading.Lock] = threading.Lock()

    def tick(self, wanted: Collection[str]) -> set[str]:
        with self._guard:
            for key in wanted:
                self._owners.setdefault(key, self)
            return {key for key, owner in self._owners.items() if owner is self}

    def confirm(self, key: str) -> bool:
        with self._guard:
            return self._owners.get(key) is self

    def release(self, key: str) -> None:
        with self._guard:
            if self._owners.get(key) is self:
                del self._owners[key]

    def holders(self, keys: Collection[str]) -> dict[str, str | None]:
        with self._guard:
            return {key: identity() if key in self._owners else None for key in keys}

    def close(self) -> None:
        with self._guard:
            for key in [k for k, owner in self._owners.items() if owner is self]:
                del self._owners[key]


def leadership_for(url: DatabaseUrl) -> Leadership:
    """Advisory locks on Postgres, file locks beside a SQLite file, an in-process lock for ``memory://``."""
    if url.dialect == "postgres":
        return PostgresLeadership(url)
    if url.dialect == "sqlite":
        return FileLeadership(Path(url.path).resolve())
    return LocalLeadership()


# --------------------------------------------------------------------- the elector
class Elector:
    """One per process: every ``poll_interval`` it checks the keys it leads and tries to take the others.

    Changes are logged: ``leads`` (with how long this process stood by),
    ``standing by`` (with who leads, once per stretch), ``lost``.
    """

    def __init__(self, leadership: Leadership, *, poll_interval: float = 0.5) -> None:
        self.leadership = leadership
        self.poll_interval = poll_interval
        self._leading: dict[str, threading.Event] = {}
        self._standby_since: dict[str, float] = {}
        self._announced: set[str] = set()
        self._cooling: dict[str, float] = {}  # key -> when a runner that lost it may try again
        self._lock = threading.RLock()
        self._worker = PeriodicWorker(
            "leadership", self.tick, interval=poll_interval, log=logger,
            failure="%s: election round failed; trying again in %.1f s",
        )
        self._users = 0

    def leads(self, key: str) -> bool:
        event = self._leading.get(key)
        return event is not None and event.is_set()

    def leading(self, key: str) -> threading.Event:
        return self._leading[key]

    def register(self, key: str) -> threading.Event:
        with self._lock:
            self._standby_since[key] = time.monotonic()
            return self._leading.setdefault(key, threading.Event())

    def unregister(self, key: str) -> None:
        with self._lock:
            event = self._leading.pop(key, None)
            if event is not None and event.is_set():
                event.clear()
                self.leadership.release(key)
                logger.info("%s: stepped down (stopping)", key)
            self._standby_since.pop(key, None)
            self._announced.discard(key)

    def confirm(self, key: str) -> bool:
        """Ask the lock's owner whether this process still leads ``key``; a no is acted on at once."""
        if self.leads(key) and self.leadership.confirm(key):
            return True
        self._lost(key)
        return False

    def _lost(self, key: str) -> None:
        with self._lock:
            event = self._leading.get(key)
            if event is not None and event.is_set():
                event.clear()
                self._standby_since[key] = time.monotonic()
                self._announced.discard(key)
                # step back for a few rounds: a healthy standby should take over, not the runner in trouble
                self._cooling[key] = time.monotonic() + 4 * self.poll_interval
                logger.warning("%s: leadership lost; stopped applying (standing by)", key)

    def tick(self) -> None:
        with self._lock:
            now = time.monotonic()
            wanted = [k for k in self._leading if self._cooling.get(k, 0.0) <= now or self._leading[k].is_set()]
            held = self.leadership.tick(wanted)
            for key in wanted:
                event = self._leading[key]
                if key in held and not event.is_set():
                    waited = time.monotonic() - self._standby_since.get(key, time.monotonic())
                    event.set()
                    took_over = waited > 1.5 * self.poll_interval  # not merely the first round
                    logger.log(logging.WARNING if took_over else logging.INFO,
                               "%s: this process (%s) leads now, after %.1f s standing by", key, identity(), waited)
                elif key not in held and event.is_set():
                    self._lost(key)
            standing = [k for k in wanted if k not in held and k not in self._announced]
        if standing:
            try:
                holders = self.leadership.holders(standing)
            except Exception as error:  # noqa: BLE001 - only for the log line
                holders = dict.fromkeys(standing, f"unknown ({error})")
            for key in standing:
                logger.info("%s: standing by; led by %s", key, holders.get(key) or "nobody yet")
                self._announced.add(key)

    def start(self) -> None:
        with self._lock:
            self._users += 1
            if not self._worker.running:
                self._worker.start()

    def stop(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or not self._worker.running:
                return
            thread = self._worker.halt()
        if thread is not None:
            thread.join()  # outside the lock: the round in hand takes it
        self.leadership.close()


class _Fenced:
    """A projection whose every batch first confirms this process still leads it."""

    def __init__(self, projection: Any, confirm: Callable[[], bool]) -> None:
        self._projection = projection
        self._confirm = confirm

    def prepare(self, events: Sequence[Any]) -> None:
        if not self._confirm():
            raise LeadershipLost(self._projection.name)
        self._projection.prepare(events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._projection, name)


class LedFollower:
    """Runs ``follower`` only while this process leads its key; the same interface as the follower.

    ``follower`` itself is left as it is (tests and tools may still call its
    ``catch_up`` or ``wait_for``); the batches run through a twin whose
    projection confirms the lock before each batch.
    """

    def __init__(self, follower: EventFollower, elector: Elector) -> None:
        self.follower = follower
        self.elector = elector
        self.key = follower.key
        self.projection = follower.projection
        self._runner = EventFollower(
            follower.app, follower.view, _Fenced(follower.projection, lambda: elector.confirm(self.key)),
            batch_size=follower.batch_size, poll_interval=follower.poll_interval, max_backoff=follower.max_backoff,
        )
        self._worker = PeriodicWorker(
            self.key, self._follow, interval=follower.poll_interval, max_backoff=follower.max_backoff,
            log=logger, failure="%s: failed to apply events; retrying in %.1fs",
        )

    @property
    def position(self) -> int:
        return self.follower.position

    @property
    def leading(self) -> bool:
        return self.elector.leads(self.key)

    @property
    def errors(self) -> int:
        return self._worker.errors

    def wait_for(self, notification_id: int, timeout: float = 10.0) -> None:
        self.follower.wait_for(notification_id, timeout)

    def _follow(self) -> bool:
        """One round: while standing by, a short wait for leadership; while leading, one batch."""
        if not self.elector.leading(self.key).wait(0.1):
            return True  # the wait was the pause: look again
        try:
            return self._runner.catch_up() > 0
        except LeadershipLost:
            return True

    def start(self) -> LedFollower:
        self.elector.register(self.key)
        self.elector.start()
        self._worker.start()
        return self

    def stop(self) -> None:
        """Finish the batch in hand, give the lock up, release the projection's resources."""
        if self._worker.running:
            self._worker.stop()
            self.elector.unregister(self.key)
            self.elector.stop()
        self.follower.stop()


def led(followers: Sequence[EventFollower], elector: Elector) -> list[LedFollower]:
    return [LedFollower(follower, elector) for follower in followers]


# --------------------------------------------------------------------- one-off jobs
class FollowersRunning(Exception):
    """Keys a one-off job needs are led by running followers (``holders``: key → who, or ``None``)."""

    def __init__(self, holders: dict[str, str | None]) -> None:
        self.holders = holders
        super().__init__(", ".join(f"{key} (led by {who or 'a process that just let go'})"
                                   for key, who in holders.items()))


@contextlib.contextmanager
def exclusive(
    leadership: Leadership,
    keys: Sequence[str],
    *,
    wait: bool,
    poll_interval: float = 0.5,
    waiting: Callable[[dict[str, str | None]], None] | None = None,
) -> Iterator[Callable[[], None]]:
    """Lead every one of ``keys`` for a one-off job such as a rebuild, so no follower of them runs meanwhile.

    A key led by a running follower is :class:`FollowersRunning` at once, or,
    with ``wait``, tried again every ``poll_interval`` until its followers stop
    or hand over (``waiting`` is told who leads, again whenever that changes);
    the keys already taken are kept meanwhile, so a standby cannot take them.
    Yields a fence: it raises :class:`LeadershipLost` once any key is lost
    (call it before each batch, as followers confirm theirs). Every key is
    released on the way out, as is ``leadership``.
    """
    try:
        told: dict[str, str | None] | None = None
        while missing := [key for key in keys if key not in leadership.tick(keys)]:
            holders = leadership.holders(missing)
            if not wait:
                raise FollowersRunning(holders)
            if holders != told and waiting is not None:
                waiting(holders)
            told = holders
            time.sleep(poll_interval)

        def fence() -> None:
            for key in keys:
                if not leadership.confirm(key):
                    raise LeadershipLost(key)

        yield fence
    finally:
        leadership.close()
