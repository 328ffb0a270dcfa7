"""Durable state of the server: messages, dead letters and deduplication ids in SQLite.

Every state change is one transaction, and the callback that follows a final
outcome is inserted in the same transaction as the outcome, so a crash never
loses a message, a dead letter or a callback. A message being delivered is
``delivering``; after a crash ``recover_in_flight`` makes it ``pending`` again
(at-least-once). Outcomes are recorded only while a message is still
``delivering``, so a delivered or cancelled message is never delivered again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from local.qstash.admission import FlowState, QueueState, admit
from local.qstash.message import DeadLetter, Kind, Message, Schedule, State
from local.qstash.publication import Publication
from local.qstash.selection import Selection

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    max_retries INTEGER NOT NULL,
    retry_delay TEXT,
    timeout_s REAL,
    callback TEXT,
    failure_callback TEXT,
    callback_headers TEXT NOT NULL,
    failure_callback_headers TEXT NOT NULL,
    label TEXT,
    caller_ip TEXT,
    created_at REAL NOT NULL,
    not_before REAL NOT NULL,
    state TEXT NOT NULL,
    next_attempt_at REAL NOT NULL,
    retried INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    parallelism INTEGER NOT NULL,
    paused INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    message_id TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    next_delivery_time REAL,
    response_status INTEGER,
    response_body BLOB
);
CREATE INDEX IF NOT EXISTS events_message ON events (message_id);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    destination TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    caller_ip TEXT,
    queue TEXT,
    paused INTEGER NOT NULL,
    created_at REAL NOT NULL,
    next_fire REAL NOT NULL,
    last_fire REAL,
    last_message_id TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS url_group_endpoints (
    group_name TEXT NOT NULL,
    url TEXT NOT NULL,
    name TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (group_name, url)
);
CREATE TABLE IF NOT EXISTS signing_keys (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seed TEXT NOT NULL,
    current TEXT NOT NULL,
    next TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flow_controls (
    key TEXT PRIMARY KEY,
    parallelism INTEGER,
    rate INTEGER,
    period_s REAL NOT NULL,
    updated_at REAL NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    pinned_parallelism INTEGER,
    pinned_rate INTEGER,
    pinned_period_s REAL,
    rate_reset_at REAL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    dlq_id TEXT NOT NULL UNIQUE,
    message_id TEXT NOT NULL REFERENCES messages (id),
    response_status INTEGER NOT NULL,
    response_headers TEXT NOT NULL,
    response_body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dedup_keys (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""

_ADDED_COLUMNS = {
    "queue": "TEXT",
    "queue_seq": "INTEGER",
    "flow_control_key": "TEXT",
    "parallelism": "INTEGER",
    "rate": "INTEGER",
    "period_s": "REAL",
    "schedule_id": "TEXT",
    "started_at": "REAL",
    "topic_name": "TEXT",
    "endpoint_name": "TEXT",
    "redact": "TEXT",
}
"""Message columns added after the first schema: added in place to an older database."""

_ADDED_FLOW_COLUMNS = {
    "paused": "INTEGER NOT NULL DEFAULT 0",
    "pinned_parallelism": "INTEGER",
    "pinned_rate": "INTEGER",
    "pinned_period_s": "REAL",
    "rate_reset_at": "REAL",
}

_COLUMNS = (
    "id, kind, url, method, body, headers, max_retries, retry_delay, timeout_s, callback,"
    " failure_callback, callback_headers, failure_callback_headers, label, caller_ip,"
    " created_at, not_before, state, next_attempt_at, retried,"
    " queue, queue_seq, flow_control_key, parallelism, rate, period_s, schedule_id,"
    " topic_name, endpoint_name, redact"
)
_COLUMN_COUNT = len(_COLUMNS.split(","))
_ACTIVE = (State.PENDING.value, State.DELIVERING.value)


class MessageStore:
    """SQLite-backed store (WAL); safe to share between threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        for table, columns in (("messages", _ADDED_COLUMNS), ("flow_controls", _ADDED_FLOW_COLUMNS)):
            present = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            for column, kind in columns.items():
                if column not in present:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, state, queue_seq)")
        self._db.execute("CREATE INDEX IF NOT EXISTS messages_flow ON messages (flow_control_key, state)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- publishing -------------------------------------------------------

    def publish(self, publication: Publication, now: float, window_s: float) -> tuple[str, bool]:
        """Store a new message unless its dedup key is live: ``(message id, deduplicated)``."""
        with self._transaction() as db:
            return _publish(db, publication, now, window_s)

    def publish_many(
        self, publications: Sequence[Publication], now: float, window_s: float
    ) -> list[tuple[str, bool]]:
        """``publish`` for each of a batch, in one transaction (all stored or none)."""
        with self._transaction() as db:
            return [_publish(db, publication, now, window_s) for publication in publications]

    def insert(self, message: Message) -> None:
        """Store a message built by the server itself (a DLQ retry)."""
        with self._transaction() as db:
            _insert(db, message)

    # --- the delivery worker's view ----------------------------------------

    def recover_in_flight(self) -> int:
        """Make messages left ``delivering`` by a dead process ``pending`` again."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE messages SET state = ? WHERE state = ?",
                (State.PENDING.value, State.DELIVERING.value),
            )
            return cursor.rowcount

    def claim_due(self, now: float, limit: int) -> list[Message]:
        """Up to ``limit`` pending messages whose time has come and that their queue and
        flow control let start (``local.qstash.admission``), now marked ``delivering``."""
        if limit <= 0:
            return []
        with self._transaction() as db:
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE state = ? AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, queue_seq",
                (State.PENDING.value, now),
            ).fetchall()
            candidates = [_message(row) for row in rows]
            admitted, _held = admit(
                candidates,
                limit=limit,
                queues=_queue_states(db, {m.queue for m in candidates if m.queue}),
                flows=_flow_states(db, {m.flow_control_key for m in candidates if m.flow_control_key}, now),
            )
            db.executemany(
                "UPDATE messages SET state = ?, started_at = ? WHERE id = ?",
                [(State.DELIVERING.value, now, message.id) for message in admitted],
            )
            for message in admitted:
                _log(db, message.id, "ACTIVE")
        return [dataclasses.replace(message, state=State.DELIVERING) for message in admitted]

    def next_due(self, after: float | None = None) -> float | None:
        """When the earliest pending message is due (the earliest after ``after``), if any.

        Due messages held back by a queue or flow control are left out with
        ``after=now``: they are offered again when a delivery ends or on the next poll.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(next_attempt_at) FROM messages WHERE state = ? AND next_attempt_at > ?",
                (State.PENDING.value, float("-inf") if after is None else after),
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def mark_delivered(
        self, message_id: str, follow_up: Message | None = None, response_status: int | None = None
    ) -> bool:
        """Record success (and queue its callback); False if no longer ``delivering``."""
        with self._transaction() as db:
            if not _finish(db, message_id, State.DELIVERED):
                return False
            _log(db, message_id, "DELIVERED", response_status=response_status)
            if follow_up is not None:
                _insert(db, follow_up)
        return True

    def reschedule(
        self,
        message_id: str,
        retried: int,
        next_attempt_at: float,
        error: str | None = None,
        response_status: int | None = None,
    ) -> bool:
        """Record a failed attempt to be retried at ``next_attempt_at``."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE messages SET state = ?, retried = ?, next_attempt_at = ?"
                " WHERE id = ? AND state = ?",
                (State.PENDING.value, retried, next_attempt_at, message_id, State.DELIVERING.value),
            )
            if cursor.rowcount != 1:
                return False
            _log(db, message_id, "ERROR", error=error, response_status=response_status)
            _log(db, message_id, "RETRY", next_delivery_time=next_attempt_at)
            return True

    def bury(self, letter: DeadLetter, follow_up: Message | None = None, error: str | None = None) -> bool:
        """Move a message to the DLQ (and queue its failure callback)."""
        with self._transaction() as db:
            if not _finish(db, letter.message.id, State.DLQ, retried=letter.message.retried):
                return False
            _log(
                db,
                letter.message.id,
                "FAILED",
                error=error,
                response_status=letter.response_status,
                response_body=letter.response_body,
            )
            db.execute(
                "INSERT INTO dead_letters (dlq_id, message_id, response_status,"
                " response_headers, response_body, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    letter.dlq_id,
                    letter.message.id,
                    letter.response_status,
                    json.dumps(letter.response_headers),
                    letter.response_body,
                    letter.created_at,
                ),
            )
            if follow_up is not None:
                _insert(db, follow_up)
        return True

    # --- the REST API's view -------------------------------------------------

    def get_active(self, message_id: str) -> Message | None:
        """A message not yet delivered, cancelled or dead (``GET /v2/messages/{id}``)."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE id = ? AND state IN (?, ?)",
                (message_id, *_ACTIVE),
            ).fetchone()
        return None if row is None else _message(row)

    def cancel(self, message_ids: Sequence[str]) -> int:
        """Cancel exactly the given active messages; how many were."""
        with self._transaction() as db:
            return _cancel_ids(db, message_ids)

    def cancel_selected(self, selection: Selection) -> int:
        """Cancel what a bulk request targets (ids, filter matches, or all); how many were.

        Only ``selection.everything`` (no ids, no filters) reaches every active
        message, as in QStash; ``selection.count`` caps how many are cancelled.
        """
        with self._transaction() as db:
            if selection.ids is not None:
                return _cancel_ids(db, selection.ids)
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM messages WHERE state IN (?, ?) ORDER BY created_at, id",
                _ACTIVE,
            ).fetchall()
            chosen = [row[0] for row in rows if selection.matches(_message(row))]
            return _cancel_ids(db, chosen[: selection.count] if selection.count else chosen)

    def dead_letter(self, dlq_id: str) -> DeadLetter | None:
        with self._lock:
            row = self._db.execute(
                f"SELECT {_DEAD_COLUMNS} FROM dead_letters d JOIN messages m"
                " ON m.id = d.message_id WHERE d.dlq_id = ?",
                (dlq_id,),
            ).fetchone()
        return None if row is None else _dead_letter(row)

    def delete_dead_letters(self, dlq_ids: Sequence[str]) -> int:
        with self._transaction() as db:
            return sum(
                db.execute("DELETE FROM dead_letters WHERE dlq_id = ?", (dlq_id,)).rowcount
                for dlq_id in dict.fromkeys(dlq_ids)
            )

    def select_dead_letters(
        self, selection: Selection, default_count: int, latest_first: bool = False
    ) -> tuple[list[DeadLetter], int | None]:
        """The dead letters a request targets, oldest (or newest) first, and the next page's cursor.

        Ids select exactly those (no paging); otherwise filter matches (all of the
        DLQ without filters) past ``selection.cursor``, at most ``count`` of them.
        """
        if latest_first:
            where, order = ("d.seq < ?", "DESC") if selection.cursor else ("d.seq > ?", "DESC")
        else:
            where, order = "d.seq > ?", "ASC"
        bound = selection.cursor if selection.ids is None else 0
        if selection.ids is not None:
            where = "d.seq > ?"
        with self._lock:
            rows = self._db.execute(
                f"SELECT d.seq, {_DEAD_COLUMNS} FROM dead_letters d JOIN messages m"
                f" ON m.id = d.message_id WHERE {where} ORDER BY d.seq {order}",
                (bound,),
            ).fetchall()
        if selection.ids is not None:
            wanted = set(selection.ids)
            return [_dead_letter(row[1:]) for row in rows if row[1] in wanted], None
        matches = [
            (int(row[0]), letter)
            for row in rows
            if selection.matches((letter := _dead_letter(row[1:])).message, letter.response_status)
        ]
        count = selection.count or default_count
        page = matches[:count]
        cursor = page[-1][0] if len(matches) > count else None
        return [letter for _, letter in page], cursor

    def requeue_dead_letter(self, dlq_id: str, message: Message) -> bool:
        """Remove a dead letter and store ``message`` (its fresh copy) in one step."""
        with self._transaction() as db:
            cursor = db.execute("DELETE FROM dead_letters WHERE dlq_id = ?", (dlq_id,))
            if cursor.rowcount != 1:
                return False
            _insert(db, message)
        return True


    # --- the events log ---------------------------------------------------------

    def events(
        self, *, before: int | None, count: int, filters: dict[str, tuple[str, ...]]
    ) -> tuple[list[tuple[Event, Message]], int | None]:
        """A page of the events log, newest first, and the cursor of the next (older) page.

        ``filters``: ``messageId``/``messageIds``, ``state``, ``url``, ``label``,
        ``queueName``, ``scheduleId``, ``flowControlKey``, ``fromDate``/``toDate`` (ms).
        """
        where, params = ["e.seq < ?"], [before if before is not None else 2**62]
        for name, column in _EVENT_FILTERS.items():
            values = filters.get(name)
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        if "fromDate" in filters:
            where.append("e.time * 1000 >= ?")
            params.append(int(filters["fromDate"][-1]))
        if "toDate" in filters:
            where.append("e.time * 1000 <= ?")
            params.append(int(filters["toDate"][-1]))
        with self._lock:
            rows = self._db.execute(
                "SELECT e.seq, e.time, e.message_id, e.state, e.error, e.next_delivery_time,"
                f" e.response_status, e.response_body, {_PREFIXED_COLUMNS}"
                " FROM events e JOIN messages m ON m.id = e.message_id"
                f" WHERE {' AND '.join(where)} ORDER BY e.seq DESC LIMIT ?",
                (*params, count + 1),
            ).fetchall()
        page = [
            (Event(row[1], row[2], row[3], row[4], row[5], row[6], None if row[7] is None else bytes(row[7])),
             _message(row[8:]))
            for row in rows[:count]
        ]
        return page, (int(rows[count - 1][0]) if len(rows) > count else None)

    def prune_events(self, older_than: float) -> int:
        """Drop events logged before ``older_than`` (unix seconds)."""
        with self._transaction() as db:
            return db.execute("DELETE FROM events WHERE time < ?", (older_than,)).rowcount

    # --- schedules ---------------------------------------------------------------

    def save_schedule(self, schedule: Schedule) -> None:
        """Create a schedule, or replace the one with its id (keeping its creation time)."""
        with self._transaction() as db:
            db.execute(
                f"INSERT INTO schedules ({_SCHEDULE_COLUMNS}) VALUES ({', '.join('?' * 13)})"
                " ON CONFLICT (id) DO UPDATE SET cron = excluded.cron, destination = excluded.destination,"
                " headers = excluded.headers, body = excluded.body, caller_ip = excluded.caller_ip,"
                " queue = excluded.queue, paused = excluded.paused, next_fire = excluded.next_fire,"
                " error = NULL",
                _schedule_row(schedule),
            )

    def schedules(self, schedule_id: str | None = None) -> list[Schedule]:
        where, params = ("WHERE id = ?", (schedule_id,)) if schedule_id is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM schedules {where} ORDER BY created_at, id", params
            ).fetchall()
        return [_schedule(row) for row in rows]

    def delete_schedule(self, schedule_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,)).rowcount == 1

    def set_schedule_paused(self, schedule_id: str, paused: bool, next_fire: float | None) -> bool:
        """Pause, or resume (firing next at ``next_fire``); False when it does not exist."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE schedules SET paused = ?, next_fire = COALESCE(?, next_fire) WHERE id = ?",
                (int(paused), next_fire, schedule_id),
            )
            return cursor.rowcount == 1

    def due_schedules(self, now: float) -> list[Schedule]:
        """Schedules not paused whose next fire time has come."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_SCHEDULE_COLUMNS} FROM schedules WHERE paused = 0 AND next_fire <= ? ORDER BY next_fire",
                (now,),
            ).fetchall()
        return [_schedule(row) for row in rows]

    def next_schedule_fire(self) -> float | None:
        with self._lock:
            (when,) = self._db.execute("SELECT MIN(next_fire) FROM schedules WHERE paused = 0").fetchone()
        return None if when is None else float(when)

    def fire_schedule(
        self, schedule: Schedule, messages: Sequence[Message], next_fire: float, now: float, error: str | None
    ) -> bool:
        """Record one firing: store its messages (none if they could not be built) and the
        next fire time, in one transaction; False if the schedule changed or vanished meanwhile."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE schedules SET next_fire = ?, last_fire = ?, last_message_id = ?, error = ?"
                " WHERE id = ? AND next_fire = ? AND paused = 0",
                (next_fire, now, messages[0].id if messages else None, error, schedule.id, schedule.next_fire),
            )
            if cursor.rowcount != 1:
                return False
            for message in messages:
                _insert(db, message)
        return True

    # --- signing keys -------------------------------------------------------------

    def signing_keys(self, current: str, next_key: str) -> tuple[str, str]:
        """The keys deliveries are signed with: the configured pair, or what rotations made
        of it. Configuring a different pair starts over from that pair."""
        seed = f"{current}\0{next_key}"
        with self._lock:
            row = self._db.execute("SELECT seed, current, next FROM signing_keys WHERE id = 1").fetchone()
        if row is not None and row[0] == seed:
            return str(row[1]), str(row[2])
        with self._transaction() as db:
            row = db.execute("SELECT seed, current, next FROM signing_keys WHERE id = 1").fetchone()
            if row is None or row[0] != seed:
                db.execute(
                    "INSERT INTO signing_keys (id, seed, current, next) VALUES (1, ?, ?, ?) ON CONFLICT (id)"
                    " DO UPDATE SET seed = excluded.seed, current = excluded.current, next = excluded.next",
                    (seed, current, next_key),
                )
                return current, next_key
            return str(row[1]), str(row[2])

    def rotate_signing_keys(self, current: str, next_key: str, fresh: str) -> tuple[str, str]:
        """QStash's rotation: the next key becomes current, ``fresh`` becomes next."""
        _, now_next = self.signing_keys(current, next_key)
        with self._transaction() as db:
            db.execute("UPDATE signing_keys SET current = ?, next = ? WHERE id = 1", (now_next, fresh))
        return now_next, fresh

    # --- URL groups ---------------------------------------------------------------

    def add_endpoints(self, group: str, endpoints: Sequence[tuple[str | None, str]], now: float) -> None:
        """Add (or rename) ``(name, url)`` endpoints; the group exists while it has one."""
        with self._transaction() as db:
            for name, url in endpoints:
                db.execute(
                    "INSERT INTO url_group_endpoints (group_name, url, name, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (group_name, url) DO UPDATE SET"
                    " name = COALESCE(excluded.name, name), updated_at = excluded.updated_at",
                    (group, url, name, now, now),
                )

    def remove_endpoints(self, group: str, endpoints: Sequence[tuple[str | None, str | None]]) -> int:
        """Remove endpoints named by url or name; removing the last one removes the group."""
        with self._transaction() as db:
            return sum(
                db.execute(
                    "DELETE FROM url_group_endpoints WHERE group_name = ? AND (url = ? OR (name IS NOT NULL AND name = ?))",
                    (group, url, name),
                ).rowcount
                for name, url in endpoints
            )

    def url_groups(self, group: str | None = None) -> list[UrlGroup]:
        where, params = ("WHERE group_name = ?", (group,)) if group is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                f"SELECT group_name, name, url, created_at, updated_at FROM url_group_endpoints {where}"
                " ORDER BY group_name, created_at, url",
                params,
            ).fetchall()
        groups: dict[str, UrlGroup] = {}
        for name, endpoint, url, created, updated in rows:
            found = groups.get(name)
            if found is None:
                found = groups[name] = UrlGroup(name, created, updated, [])
            found.endpoints.append((endpoint, url))
            groups[name] = dataclasses.replace(
                found, created_at=min(found.created_at, created), updated_at=max(found.updated_at, updated)
            )
        return list(groups.values())

    def delete_url_group(self, group: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM url_group_endpoints WHERE group_name = ?", (group,)).rowcount > 0

    # --- queues and flow control ----------------------------------------------

    def upsert_queue(self, name: str, parallelism: int, paused: bool, now: float) -> None:
        """Create a queue or change its parallelism and paused flag."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO queues (name, parallelism, paused, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET parallelism = excluded.parallelism,"
                " paused = excluded.paused, updated_at = excluded.updated_at",
                (name, parallelism, int(paused), now, now),
            )

    def set_queue_paused(self, name: str, paused: bool, now: float) -> bool:
        """Pause or resume a queue; False when it does not exist."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE queues SET paused = ?, updated_at = ? WHERE name = ?", (int(paused), now, name)
            )
            return cursor.rowcount == 1

    def queues(self, name: str | None = None) -> list[QueueInfo]:
        """Every queue (or the one named), with its lag: messages not yet finished."""
        where, params = ("WHERE q.name = ?", (name,)) if name is not None else ("", ())
        with self._lock:
            rows = self._db.execute(
                "SELECT q.name, q.parallelism, q.paused, q.created_at, q.updated_at,"
                " (SELECT COUNT(*) FROM messages m WHERE m.queue = q.name AND m.state IN (?, ?))"
                f" FROM queues q {where} ORDER BY q.created_at, q.name",
                (*_ACTIVE, *params),
            ).fetchall()
        return [QueueInfo(row[0], row[1], bool(row[2]), row[3], row[4], row[5]) for row in rows]

    def delete_queue(self, name: str) -> str:
        """``deleted``, ``missing``, or ``busy`` (it still holds unfinished messages)."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM queues WHERE name = ?", (name,)).fetchone() is None:
                return "missing"
            busy = db.execute(
                "SELECT 1 FROM messages WHERE queue = ? AND state IN (?, ?) LIMIT 1", (name, *_ACTIVE)
            ).fetchone()
            if busy is not None:
                return "busy"
            db.execute("DELETE FROM queues WHERE name = ?", (name,))
            return "deleted"

    def flow_control_keys(self) -> list[str]:
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT key FROM flow_controls ORDER BY key")]

    def flow_control_info(self, key: str, now: float) -> dict[str, Any] | None:
        """``GET /v2/flowControl/{key}``: the key's limits, use and waitlist; None if unknown."""
        with self._transaction() as db:
            row = db.execute(f"SELECT {_FLOW_CONFIG} FROM flow_controls WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            parallelism, rate, period_s, paused, pinned_parallelism, pinned_rate, reset_at = row
            state = _flow_states(db, {key}, now)[key]
            (waiting,) = db.execute(
                "SELECT COUNT(*) FROM messages WHERE flow_control_key = ? AND state = ? AND next_attempt_at <= ?",
                (key, State.PENDING.value, now),
            ).fetchone()
        return {
            "flowControlKey": key,
            "waitListSize": waiting,
            "parallelismMax": parallelism or 0,
            "parallelismCount": state.in_flight,
            "rateMax": rate or 0,
            "rateCount": state.started_in_period,
            "ratePeriod": int(period_s),
            "ratePeriodStart": int(max(now - period_s, reset_at or 0.0) * 1000),
            "isPaused": bool(paused),
            "isPinnedParallelism": bool(pinned_parallelism),
            "isPinnedRate": bool(pinned_rate),
        }

    def update_flow_control(self, key: str, **changes: Any) -> bool:
        """Set columns of a key (paused, pinned_*, rate_reset_at); False when it is unknown."""
        assert set(changes) <= {"paused", "pinned_parallelism", "pinned_rate", "pinned_period_s", "rate_reset_at"}
        with self._transaction() as db:
            assignments = ", ".join(f"{column} = ?" for column in changes)
            cursor = db.execute(
                f"UPDATE flow_controls SET {assignments} WHERE key = ?", (*changes.values(), key)
            )
            return cursor.rowcount == 1

    def in_flight(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "SELECT COUNT(*) FROM messages WHERE state = ?", (State.DELIVERING.value,)
            ).fetchone()
        return int(count)


@dataclasses.dataclass(frozen=True)
class Event:
    """One entry of the events log: a message's state change."""

    time: float
    message_id: str
    state: str
    error: str | None
    next_delivery_time: float | None
    response_status: int | None
    response_body: bytes | None


_EVENT_FILTERS = {
    "messageId": "e.message_id",
    "messageIds": "e.message_id",
    "state": "e.state",
    "url": "m.url",
    "label": "m.label",
    "queueName": "m.queue",
    "scheduleId": "m.schedule_id",
    "topicName": "m.topic_name",
    "flowControlKey": "m.flow_control_key",
    "callerIp": "m.caller_ip",
}


@dataclasses.dataclass(frozen=True)
class UrlGroup:
    """A URL group (QStash's topic): publishing to its name fans out to every endpoint."""

    name: str
    created_at: float
    updated_at: float
    endpoints: list[tuple[str | None, str]]


@dataclasses.dataclass(frozen=True)
class QueueInfo:
    """A FIFO queue: its settings and how many messages it still holds (``lag``)."""

    name: str
    parallelism: int
    paused: bool
    created_at: float
    updated_at: float
    lag: int


_SCHEDULE_COLUMNS = (
    "id, cron, destination, headers, body, caller_ip, queue, paused, created_at, next_fire,"
    " last_fire, last_message_id, error"
)


def _schedule_row(schedule: Schedule) -> tuple[Any, ...]:
    return (
        schedule.id,
        schedule.cron,
        schedule.destination,
        json.dumps(schedule.headers),
        schedule.body,
        schedule.caller_ip,
        schedule.queue,
        int(schedule.paused),
        schedule.created_at,
        schedule.next_fire,
        schedule.last_fire,
        schedule.last_message_id,
        schedule.error,
    )


def _schedule(row: Sequence[Any]) -> Schedule:
    return Schedule(
        id=row[0],
        cron=row[1],
        destination=row[2],
        headers=json.loads(row[3]),
        body=bytes(row[4]),
        caller_ip=row[5],
        queue=row[6],
        paused=bool(row[7]),
        created_at=row[8],
        next_fire=row[9],
        last_fire=row[10],
        last_message_id=row[11],
        error=row[12],
    )


_PREFIXED_COLUMNS = ", ".join(f"m.{column.strip()}" for column in _COLUMNS.split(","))

_DEAD_COLUMNS = (
    "d.dlq_id, d.response_status, d.response_headers, d.response_body, d.created_at, "
    + ", ".join(f"m.{column.strip()}" for column in _COLUMNS.split(","))
)


def _publish(
    db: sqlite3.Connection, publication: Publication, now: float, window_s: float
) -> tuple[str, bool]:
    key = publication.dedup_key
    if key is not None:
        db.execute("DELETE FROM dedup_keys WHERE expires_at <= ?", (now,))
        row = db.execute("SELECT message_id FROM dedup_keys WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0]), True
        db.execute(
            "INSERT INTO dedup_keys (key, message_id, expires_at) VALUES (?, ?, ?)",
            (key, publication.message.id, now + window_s),
        )
    _insert(db, publication.message)
    return publication.message.id, False


def _cancel_ids(db: sqlite3.Connection, message_ids: Sequence[str]) -> int:
    cancelled = 0
    for message_id in dict.fromkeys(message_ids):
        cursor = db.execute(
            "UPDATE messages SET state = ? WHERE id = ? AND state IN (?, ?)",
            (State.CANCELLED.value, message_id, *_ACTIVE),
        )
        if cursor.rowcount:
            _log(db, message_id, "CANCELED")
            cancelled += 1
    return cancelled


def _log(
    db: sqlite3.Connection,
    message_id: str,
    state: str,
    *,
    error: str | None = None,
    next_delivery_time: float | None = None,
    response_status: int | None = None,
    response_body: bytes | None = None,
) -> None:
    """Append to the events log (``GET /v2/events``), in the caller's transaction."""
    db.execute(
        "INSERT INTO events (time, message_id, state, error, next_delivery_time, response_status,"
        " response_body) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (time.time(), message_id, state, error, next_delivery_time, response_status, response_body),
    )


def _finish(db: sqlite3.Connection, message_id: str, state: State, retried: int | None = None) -> bool:
    cursor = db.execute(
        "UPDATE messages SET state = ?, retried = COALESCE(?, retried) WHERE id = ? AND state = ?",
        (state.value, retried, message_id, State.DELIVERING.value),
    )
    return cursor.rowcount == 1


def _insert(db: sqlite3.Connection, message: Message) -> None:
    """Store ``message``; a queued one gets the next place in its queue (creating the
    queue with parallelism 1 if it does not exist); a flow-controlled one sets its key's
    limits (the latest publish wins)."""
    if message.queue is not None:
        _ensure_queue(db, message.queue, message.created_at)
        if message.queue_seq is None:
            (last,) = db.execute("SELECT COALESCE(MAX(queue_seq), 0) FROM messages").fetchone()
            message = dataclasses.replace(message, queue_seq=int(last) + 1)
    if message.flow_control_key is not None and message.kind is Kind.MESSAGE:
        db.execute(
            "INSERT INTO flow_controls (key, parallelism, rate, period_s, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET parallelism = excluded.parallelism, rate = excluded.rate,"
            " period_s = excluded.period_s, updated_at = excluded.updated_at",
            (message.flow_control_key, message.parallelism, message.rate, message.period_s or 1.0, message.created_at),
        )
    _log(db, message.id, "CREATED")
    db.execute(
        f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * _COLUMN_COUNT)})",
        (
            message.id,
            message.kind.value,
            message.url,
            message.method,
            message.body,
            json.dumps(message.headers),
            message.max_retries,
            message.retry_delay,
            message.timeout_s,
            message.callback,
            message.failure_callback,
            json.dumps(message.callback_headers),
            json.dumps(message.failure_callback_headers),
            message.label,
            message.caller_ip,
            message.created_at,
            message.not_before,
            message.state.value,
            message.next_attempt_at,
            message.retried,
            message.queue,
            message.queue_seq,
            message.flow_control_key,
            message.parallelism,
            message.rate,
            message.period_s,
            message.schedule_id,
            message.topic_name,
            message.endpoint_name,
            message.redact,
        ),
    )


def _ensure_queue(db: sqlite3.Connection, name: str, now: float) -> None:
    db.execute(
        "INSERT INTO queues (name, parallelism, paused, created_at, updated_at) VALUES (?, 1, 0, ?, ?)"
        " ON CONFLICT (name) DO NOTHING",
        (name, now, now),
    )


def _queue_states(db: sqlite3.Connection, names: set[str]) -> dict[str, QueueState]:
    states = {}
    for name in names:
        row = db.execute("SELECT parallelism, paused FROM queues WHERE name = ?", (name,)).fetchone()
        parallelism, paused = (1, 0) if row is None else row
        window = db.execute(
            "SELECT id FROM messages WHERE queue = ? AND state IN (?, ?) ORDER BY queue_seq LIMIT ?",
            (name, *_ACTIVE, parallelism),
        ).fetchall()
        states[name] = QueueState(paused=bool(paused), window=frozenset(r[0] for r in window))
    return states


_FLOW_CONFIG = (
    "COALESCE(pinned_parallelism, parallelism), CASE WHEN pinned_rate IS NULL THEN rate ELSE pinned_rate END,"
    " COALESCE(pinned_period_s, period_s), paused, pinned_parallelism IS NOT NULL, pinned_rate IS NOT NULL,"
    " rate_reset_at"
)
"""A key's limits in force: pinned values win over what publishes set."""


def _flow_states(db: sqlite3.Connection, keys: set[str], now: float) -> dict[str, FlowState]:
    states = {}
    for key in keys:
        row = db.execute(f"SELECT {_FLOW_CONFIG} FROM flow_controls WHERE key = ?", (key,)).fetchone()
        if row is None:
            continue
        parallelism, rate, period_s, paused, _, _, reset_at = row
        (in_flight,) = db.execute(
            "SELECT COUNT(*) FROM messages WHERE flow_control_key = ? AND state = ?",
            (key, State.DELIVERING.value),
        ).fetchone()
        (started,) = db.execute(
            "SELECT COUNT(*) FROM messages WHERE flow_control_key = ? AND started_at > ?",
            (key, max(now - period_s, reset_at or 0.0)),
        ).fetchone()
        states[key] = FlowState(
            parallelism=parallelism, rate=rate, in_flight=in_flight, started_in_period=started, paused=bool(paused)
        )
    return states


def _message(row: Sequence[Any], state: State | None = None) -> Message:
    return Message(
        id=row[0],
        kind=Kind(row[1]),
        url=row[2],
        method=row[3],
        body=bytes(row[4]),
        headers=json.loads(row[5]),
        max_retries=row[6],
        retry_delay=row[7],
        timeout_s=row[8],
        callback=row[9],
        failure_callback=row[10],
        callback_headers=json.loads(row[11]),
        failure_callback_headers=json.loads(row[12]),
        label=row[13],
        caller_ip=row[14],
        created_at=row[15],
        not_before=row[16],
        state=state or State(row[17]),
        next_attempt_at=row[18],
        retried=row[19],
        queue=row[20],
        queue_seq=row[21],
        flow_control_key=row[22],
        parallelism=row[23],
        rate=row[24],
        period_s=row[25],
        schedule_id=row[26],
        topic_name=row[27],
        endpoint_name=row[28],
        redact=row[29],
    )


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    return DeadLetter(
        dlq_id=row[0],
        response_status=row[1],
        response_headers=json.loads(row[2]),
        response_body=bytes(row[3]),
        created_at=row[4],
        message=_message(row[5:]),
    )
