"""The queue-status projection on SQLite and Postgres: rows, view, exactly-once, resume."""

from __future__ import annotations

import pytest
from eventsourcing.persistence import IntegrityError, Tracking

from domain import STEPS
from projections.follower import EventFollower
from projections.queue_status import QueueStatusProjection, weighted_progress
from tests.conftest import Store, open_store


def test_status_view_follows_a_queue_through_its_life(store: Store) -> None:
    app, follower, reader = store.app, store.follower, store.reader
    qid = app.start_processing("tutor-1", "attachment-9", {"resolution": 720})
    follower.catch_up()
    row = reader.status(str(qid))
    assert row is not None
    assert (row["status"], row["progress_percentage"], row["current_step"]) == ("pending", 0, None)
    assert [s["step"] for s in row["steps"]] == list(STEPS)

    app.start_step(qid, "compress", 1)
    app.report_progress(qid, "compress", 1, 60)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["status"], row["current_step"], row["progress_percentage"]) == ("processing", "compress", 38)
    assert row["running_steps"] == ["compress"]  # 60 % of compress, which weighs 64 of 100
    assert row["steps"][0]["status"] == "running" and row["steps"][0]["progress"] == 60

    app.retry_step(qid, "compress", 1, "503 model loading", 60)
    follower.catch_up()
    row = reader.status(str(qid))
    assert row["retries"] == 1
    compress = row["steps"][0]
    assert (compress["status"], compress["last_error"], compress["retries"]) == (
        "retrying", "503 model loading", 1)

    app.start_step(qid, "compress", 2)
    app.complete_step(qid, "compress", 2, {"video": "tutor-1/q/compressed.mp4"}, "ffmpeg", "libx264", 1.5)
    app.start_step(qid, "audio-convert", 1)
    follower.catch_up()
    row = reader.status(str(qid))
    assert row["progress_percentage"] == 64 and row["current_step"] == "audio-convert"
    compress = row["steps"][0]
    assert compress["status"] == "completed" and compress["attempts"] == 2
    assert (compress["provider"], compress["model"], compress["duration_seconds"]) == ("ffmpeg", "libx264", 1.5)
    assert compress["outputs"] == {"video": "tutor-1/q/compressed.mp4"}

    for step in STEPS[1:]:
        if step != "audio-convert":
            app.start_step(qid, step, 1)
        app.complete_step(qid, step, 1)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["status"], row["progress_percentage"], row["current_step"]) == ("completed", 100, None)
    assert row["finished_at"] is not None and row["error"] is None
    assert row["version"] == app.get_queue(qid).version


def test_parallel_steps_show_as_running_steps_with_the_first_as_current(store: Store) -> None:
    app, follower, reader = store.app, store.follower, store.reader
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "audio-convert", 1)
    app.start_step(qid, "compress", 1)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["current_step"], row["running_steps"]) == ("compress", ["compress", "audio-convert"])
    app.complete_step(qid, "audio-convert", 1)
    app.start_step(qid, "transcribe", 1)
    app.report_progress(qid, "transcribe", 1, 50)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["current_step"], row["running_steps"]) == ("compress", ["compress", "transcribe"])
    assert row["progress_percentage"] == (4 * 100 + 31 * 50) // 100  # weighted by expected cost
    app.complete_step(qid, "compress", 1)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["current_step"], row["running_steps"]) == ("transcribe", ["transcribe"])
    app.complete_step(qid, "transcribe", 1)
    follower.catch_up()
    row = reader.status(str(qid))
    assert (row["current_step"], row["running_steps"]) == ("transcribe", [])  # the last one shown
    assert row["progress_percentage"] == 99


def test_a_queue_without_compress_shares_its_weight_out(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a", {"skip_compress": True})
    app.start_step(qid, "audio-convert", 1)
    app.complete_step(qid, "audio-convert", 1)
    store.follower.catch_up()
    row = store.reader.status(str(qid))
    assert [s["step"] for s in row["steps"]] == ["audio-convert", "transcribe", "embed"]
    assert row["progress_percentage"] == 100 * 4 // (4 + 31 + 1) == weighted_progress(
        {"audio-convert": 100, "transcribe": 0, "embed": 0})


def test_cancel_while_two_steps_run_and_a_failure_beside_a_running_step(store: Store) -> None:
    app = store.app
    cancelled = app.start_processing("tutor-1", "a")
    app.start_step(cancelled, "compress", 1)
    app.start_step(cancelled, "audio-convert", 1)
    app.cancel(cancelled, by="tutor-1")
    failed = app.start_processing("tutor-1", "b")
    app.start_step(failed, "compress", 1)
    app.start_step(failed, "audio-convert", 1)
    app.fail_step(failed, "audio-convert", 1, "no sound track")
    store.follower.catch_up()
    c = store.reader.status(str(cancelled))
    assert [s["status"] for s in c["steps"]] == ["cancelled", "cancelled", "pending", "pending"]
    assert (c["current_step"], c["running_steps"]) == ("compress", [])
    f = store.reader.status(str(failed))
    assert (f["status"], f["current_step"], f["error"]) == ("failed", "audio-convert", "no sound track")
    assert f["running_steps"] == ["compress"]  # its later messages are refused: the queue has failed


def test_failed_and_cancelled_queues_show_their_reason(store: Store) -> None:
    app = store.app
    failed = app.start_processing("tutor-1", "a")
    app.start_step(failed, "compress", 1)
    app.fail_step(failed, "compress", 1, "the upload is not a video (PNG image)")
    cancelled = app.start_processing("tutor-1", "b")
    app.start_step(cancelled, "compress", 1)
    app.cancel(cancelled, by="tutor-1", reason="uploaded the wrong lecture")
    store.follower.catch_up()
    f = store.reader.status(str(failed))
    assert (f["status"], f["error"], f["current_step"]) == (
        "failed", "the upload is not a video (PNG image)", "compress")
    assert f["steps"][0]["status"] == "failed"
    c = store.reader.status(str(cancelled))
    assert (c["status"], c["error"]) == ("cancelled", "uploaded the wrong lecture")
    assert c["steps"][0]["status"] == "cancelled"
    assert [s["status"] for s in c["steps"][1:]] == ["pending"] * 3


def test_owner_listing_is_newest_first_paginated_and_filtered(store: Store) -> None:
    app = store.app
    ids = [app.start_processing("tutor-1", f"a{i}") for i in range(5)]
    app.start_processing("tutor-2", "other")
    app.cancel(ids[1], by="tutor-1")
    store.follower.catch_up()
    listed = store.reader.list_for_owner("tutor-1", limit=3)
    assert [r["queue_id"] for r in listed] == [str(i) for i in ids[::-1][:3]]
    page2 = store.reader.list_for_owner("tutor-1", limit=3, offset=3)
    assert [r["queue_id"] for r in page2] == [str(ids[1]), str(ids[0])]
    assert [r["queue_id"] for r in store.reader.list_for_owner("tutor-1", status="cancelled")] == [str(ids[1])]
    assert store.reader.list_for_owner("nobody") == []


def test_each_event_is_applied_once_even_with_two_runners(store: Store) -> None:
    """Two followers race over the same log; the tracking row lets one win each batch."""
    other = open_store(store.url)
    try:
        qid = store.app.start_processing("tutor-1", "a")
        store.app.start_step(qid, "compress", 1)
        store.app.retry_step(qid, "compress", 1, "503", 1)  # retries counter would double
        store.follower.start()
        other.follower.start()
        store.follower.wait_for(store.app.recorder.max_notification_id())
        other.follower.wait_for(store.app.recorder.max_notification_id())
        assert store.reader.status(str(qid))["retries"] == 1
    finally:
        other.close()


def test_a_batch_behind_the_tracked_position_is_refused_and_writes_nothing(store: Store) -> None:
    qid = store.app.start_processing("tutor-1", "a")
    store.follower.catch_up()
    store.app.start_step(qid, "compress", 1)
    events = list(store.app.queue_events(qid))
    with pytest.raises(IntegrityError):
        store.view.record(
            QueueStatusProjection(), events[-1:], Tracking(store.follower.key, store.follower.position)
        )
    assert store.reader.status(str(qid))["status"] == "pending"


def test_a_restarted_runner_resumes_from_its_position(database_url: str) -> None:
    first = open_store(database_url)
    qid = first.app.start_processing("tutor-1", "a")
    first.app.start_step(qid, "compress", 1)
    first.follower.catch_up()
    position = first.follower.position
    first.app.report_progress(qid, "compress", 1, 80)
    first.close()  # the runner dies with one event unapplied

    second = open_store(database_url)
    try:
        assert second.follower.position == position
        assert second.follower.catch_up() == 1
        assert second.reader.status(str(qid))["steps"][0]["progress"] == 80
    finally:
        second.close()


def test_runner_in_the_background_keeps_up(store: Store) -> None:
    store.follower.start()
    qid = store.app.start_processing("tutor-1", "a")
    store.app.start_step(qid, "compress", 1)
    store.follower.wait_for(store.app.recorder.max_notification_id(), timeout=10)
    assert store.reader.status(str(qid))["status"] == "processing"


def test_rebuild_replaces_a_damaged_read_model(store: Store) -> None:
    qid = store.app.start_processing("tutor-1", "a")
    store.app.start_step(qid, "compress", 1)
    store.follower.catch_up()
    good = store.reader.table_rows()
    with store.view.session() as session:  # someone edits the read model by hand
        session.execute("UPDATE video_processing_queue SET status = 'failed', error = 'oops'")
        session.execute("DELETE FROM video_processing_steps WHERE step = 'embed'")
    assert store.reader.table_rows() != good
    assert store.follower.rebuild() == 2
    assert store.reader.table_rows() == good
    assert store.follower.position == store.app.recorder.max_notification_id()
    assert store.follower.catch_up() == 0


def test_follower_survives_a_failing_batch_and_retries(store: Store) -> None:
    class Flaky(QueueStatusProjection):
        failures = 2

        def apply(self, domain_event, session):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise RuntimeError("database went away")
            super().apply(domain_event, session)

    follower = EventFollower(store.app, store.view, Flaky(), poll_interval=0.01)
    qid = store.app.start_processing("tutor-1", "a")
    follower.start()
    try:
        follower.wait_for(store.app.recorder.max_notification_id(), timeout=10)
    finally:
        follower.stop()
    assert follower.errors == 2
    assert store.reader.status(str(qid))["status"] == "pending"


def test_a_batch_read_before_another_runner_moved_is_refused(store: Store) -> None:
    """The race two runners run: both read from the same position, one commits first."""
    qid = store.app.start_processing("tutor-1", "a")
    events = list(store.app.queue_events(qid))
    read_at = store.follower.position
    last = store.app.recorder.max_notification_id()
    store.follower.catch_up()  # the other runner wins
    with pytest.raises(IntegrityError, match="moved"):
        store.view.record(QueueStatusProjection(), events, Tracking(store.follower.key, last), after=read_at)
    assert len(store.reader.list_for_owner("tutor-1")) == 1


def test_the_api_s_status_from_the_aggregate_matches_the_view_while_the_projection_lags(store: Store) -> None:
    """The status endpoint answers from the aggregate when the view has no row yet (projection lag): the same
    progress weighting, current step and running steps as the view."""
    from api.queues import status_from_aggregate

    app, follower, reader = store.app, store.follower, store.reader
    qid = app.start_processing("tutor-1", "attachment-7", {})
    app.start_step(qid, "compress", 1)
    app.start_step(qid, "audio-convert", 1)
    app.report_progress(qid, "compress", 1, 50)
    app.complete_step(qid, "audio-convert", 1, {"audio": "a.wav"}, "ffmpeg", None, 1.0)
    follower.catch_up()
    row = reader.status(str(qid))
    assert row is not None
    computed = status_from_aggregate(app.repository.get(qid))
    for key in ("status", "progress_percentage", "current_step", "running_steps"):
        assert computed[key] == row[key], key
    assert computed["running_steps"] == ["compress"] and computed["progress_percentage"] == (50 * 64 + 100 * 4) // 100
