"""The notifications projection's table on SQLite and Postgres: ``notification_queues.first_step``
(no longer read) is dropped from a read model an older version made (``sql/*/008``), its rows kept,
and the projection, live or rebuilt from event 0, works without it."""

from __future__ import annotations

from typing import Any

from projections.follower import EventFollower
from projections.notifications import NotificationsProjection
from projections.views import ReadModelView
from tests.conftest import Store, open_store


def notifications(view: ReadModelView) -> list[dict[str, Any]]:
    return view.fetchall("SELECT id, owner_id, queue_id, kind, message FROM notifications ORDER BY id")


def queues(view: ReadModelView) -> list[dict[str, Any]]:
    with view.session(commit=False) as session:
        assert not session.has_column("notification_queues", "first_step")
        return session.fetchall("SELECT * FROM notification_queues ORDER BY queue_id")


def follower_of(store: Store) -> EventFollower:
    return EventFollower(store.app, store.view, NotificationsProjection(), poll_interval=0.01)


def start(store: Store, owner: str, filename: str) -> str:
    qid = store.app.start_processing(owner, filename, {"filename": filename})
    store.app.start_step(qid, "audio-convert", 1)  # its first step start, whichever step: "started"
    return str(qid)


def test_an_older_read_model_loses_first_step_keeps_its_rows_and_still_projects_and_rebuilds(
    database_url: str,
) -> None:
    store = open_store(database_url)
    try:
        first = start(store, "tutor-1", "week 1.mp4")
        follower_of(store).catch_up()
        assert queues(store.view) == [{"queue_id": first, "owner_id": "tutor-1", "filename": "week 1.mp4"}]
        live = notifications(store.view)
        assert [(n["queue_id"], n["kind"]) for n in live] == [(first, "started")]
        with store.view.session() as session:  # the table as an older version left it
            session.execute("ALTER TABLE notification_queues ADD COLUMN first_step TEXT")
            session.execute("UPDATE notification_queues SET first_step = 'compress'")
            assert session.has_column("notification_queues", "first_step")
    finally:
        store.close()
    for _ in range(2):  # the migration drops it once; opening again changes nothing
        store = open_store(database_url)
        try:
            assert queues(store.view) == [{"queue_id": first, "owner_id": "tutor-1", "filename": "week 1.mp4"}]
            assert notifications(store.view) == live
        finally:
            store.close()

    store = open_store(database_url)
    try:
        second = start(store, "tutor-2", "week 2.mp4")
        store.app.cancel(second, by="tutor-2")
        follower = follower_of(store)
        follower.catch_up()
        live = notifications(store.view)
        assert [(n["queue_id"], n["kind"]) for n in live if n["queue_id"] == second] == [
            (second, "started"), (second, "cancelled")]
        assert follower.rebuild() == len(list(store.app.queue_events(first))) + len(list(store.app.queue_events(second)))
        assert notifications(store.view) == live
        assert [q["queue_id"] for q in queues(store.view)] == sorted([first, second])
    finally:
        store.close()
