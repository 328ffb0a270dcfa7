"""The local QStash store on disk: a database written by the server before queues, flow
control, schedules, URL groups, events and redaction existed is upgraded in place, and its
pending messages are still delivered."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from local.qstash.store import MessageStore
from tests.local.qstash_support import Destination, ThreadedServer

FIRST_SCHEMA = """
CREATE TABLE messages (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, url TEXT NOT NULL, method TEXT NOT NULL,
    body BLOB NOT NULL, headers TEXT NOT NULL, max_retries INTEGER NOT NULL, retry_delay TEXT,
    timeout_s REAL, callback TEXT, failure_callback TEXT, callback_headers TEXT NOT NULL,
    failure_callback_headers TEXT NOT NULL, label TEXT, caller_ip TEXT, created_at REAL NOT NULL,
    not_before REAL NOT NULL, state TEXT NOT NULL, next_attempt_at REAL NOT NULL, retried INTEGER NOT NULL
);
CREATE TABLE dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, dlq_id TEXT NOT NULL UNIQUE, message_id TEXT NOT NULL,
    response_status INTEGER NOT NULL, response_headers TEXT NOT NULL, response_body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE dedup_keys (key TEXT PRIMARY KEY, message_id TEXT NOT NULL, expires_at REAL NOT NULL);
"""
"""The schema of the first release of the server (messages, dead letters, dedup ids)."""


def _first_release_database(path: Path, url: str) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(FIRST_SCHEMA)
        now = time.time()
        db.execute(
            "INSERT INTO messages VALUES ('msg_old', 'message', ?, 'POST', ?, '{\"Content-Type\": \"application/json\"}',"
            " 3, NULL, NULL, NULL, NULL, '{}', '{}', NULL, '127.0.0.1', ?, ?, 'pending', ?, 0)",
            (url, b'{"old": true}', now, now, now),
        )


def test_a_first_release_database_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "qstash.sqlite3"
    _first_release_database(path, "http://127.0.0.1:9/old")
    store = MessageStore(path)
    try:
        message = store.get_active("msg_old")
        assert message is not None and message.queue is None and message.redact is None
        columns = {row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(messages)")}
        assert {"queue", "flow_control_key", "schedule_id", "topic_name", "redact", "started_at"} <= columns
    finally:
        store.close()


def test_pending_messages_of_a_first_release_database_are_delivered(
    tmp_path: Path, qstash_factory: Callable[..., ThreadedServer], destination: Destination
) -> None:
    _first_release_database(tmp_path / "qstash.sqlite3", destination.url("/old"))
    qstash_factory()
    [received] = destination.wait_for("/old", timeout=5)
    assert received.headers["upstash-message-id"] == "msg_old"
    assert received.body == b'{"old": true}' and received.signature_error is None
