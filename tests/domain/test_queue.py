"""Example-based tests of the ProcessingQueue aggregate through VideoProcessing.

Run on the in-memory store and, through ``store``, on SQLite and Postgres.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from eventsourcing.persistence import IntegrityError

from domain import (
    STEPS,
    DomainError,
    InvalidProgress,
    QueueIsTerminal,
    QueueNotFound,
    StaleAttempt,
    StepNotRunning,
    StepOutOfOrder,
    UnknownStep,
    VideoProcessing,
)
from tests.conftest import Store, open_store


def run_all_steps(app: VideoProcessing, qid: uuid.UUID) -> None:
    for step in STEPS:
        assert app.start_step(qid, step, 1) == "started"
        assert app.complete_step(qid, step, 1, {"artifact": f"{step}.bin"}, provider="test")


def event_names(app: VideoProcessing, qid: uuid.UUID) -> list[str]:
    return [type(e).__name__ for e in app.queue_events(qid)]


def test_happy_path_records_every_event_and_completes(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "attachment-1", {"resolution": 720})
    run_all_steps(app, qid)
    queue = app.get_queue(qid)
    assert queue.status == "completed"
    assert [s.status for s in queue.steps] == ["completed"] * 4
    assert event_names(app, qid) == ["Created"] + ["StepStarted", "StepCompleted"] * 4 + [
        "Completed"
    ]
    assert queue.step("compress").outputs == {"artifact": "compress.bin"}


def test_redelivered_start_and_completion_change_nothing(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "attachment-1")
    assert app.start_step(qid, "compress", 1, message_id="msg_1") == "started"
    version = app.get_queue(qid).version
    assert app.start_step(qid, "compress", 1, message_id="msg_1") == "redelivered"
    assert app.start_step(qid, "compress", 1, message_id="msg_2") == "duplicate"
    assert app.get_queue(qid).version == version
    assert app.complete_step(qid, "compress", 1) is True
    version = app.get_queue(qid).version
    assert app.complete_step(qid, "compress", 1) is False
    assert app.start_step(qid, "compress", 1, message_id="msg_1") == "done"
    assert app.get_queue(qid).version == version


def test_transient_failures_retry_then_fail_with_the_last_reason(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a", max_retries=2)
    assert memory_app.start_step(qid, "compress", 1) == "started"
    assert memory_app.retry_step(qid, "compress", 1, "503 loading", 60) == "retried"
    assert memory_app.retry_step(qid, "compress", 1, "503 loading", 60) == "unchanged"
    assert memory_app.start_step(qid, "compress", 2) == "started"
    assert memory_app.retry_step(qid, "compress", 2, "502 bad gateway", 120) == "retried"
    assert memory_app.start_step(qid, "compress", 3) == "started"
    assert memory_app.retry_step(qid, "compress", 3, "timed out after 30s", 240) == "failed"
    queue = memory_app.get_queue(qid)
    assert queue.status == "failed"
    assert queue.error == "timed out after 30s (gave up after 2 retries)"
    assert queue.step("compress").retries == 2
    names = event_names(memory_app, qid)
    assert names.count("StepRetried") == 2
    assert names[-2:] == ["StepFailed", "Failed"]


def test_permanent_failure_fails_the_queue(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a")
    memory_app.start_step(qid, "compress", 1)
    assert memory_app.fail_step(qid, "compress", 1, "the file is not a video")
    queue = memory_app.get_queue(qid)
    assert (queue.status, queue.error) == ("failed", "the file is not a video")


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (lambda app, q: app.start_step(q, "transcode", 1), UnknownStep),
        (lambda app, q: app.start_step(q, "transcribe", 1), StepOutOfOrder),
        (lambda app, q: app.start_step(q, "compress", 2), StaleAttempt),
        (lambda app, q: app.complete_step(q, "compress", 1), StepNotRunning),
        (lambda app, q: app.report_progress(q, "compress", 1, -1), InvalidProgress),
        (lambda app, q: app.report_progress(q, "compress", 1, 101), InvalidProgress),
        (lambda app, q: app.report_progress(q, "compress", 1, float("nan")), InvalidProgress),
        (lambda app, q: app.report_progress(q, "compress", 1, "50"), InvalidProgress),
        (lambda app, q: app.fail_step(q, "compress", 1, "x"), StepNotRunning),
        (lambda app, q: app.get_queue(uuid.uuid4()), QueueNotFound),
        (lambda app, q: app.cancel("not-a-uuid", "tutor"), QueueNotFound),
        (lambda app, q: app.timeline(uuid.uuid4()), QueueNotFound),
    ],
)
def test_bad_commands_are_refused_with_a_named_error_and_write_nothing(
    store: Store, command: object, error: type[DomainError]
) -> None:
    qid = store.app.start_processing("tutor-1", "a")
    before = store.app.recorder.max_notification_id()
    with pytest.raises(error) as raised:
        command(store.app, qid)  # type: ignore[operator]
    assert str(raised.value)  # a message naming the problem
    assert store.app.recorder.max_notification_id() == before


def test_error_messages_name_the_problem(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a")
    with pytest.raises(UnknownStep, match="unknown step 'transcode'.*compress, audio-convert"):
        memory_app.start_step(qid, "transcode", 1)
    with pytest.raises(InvalidProgress, match="from 0 to 100, got 150"):
        memory_app.report_progress(qid, "compress", 1, 150)
    with pytest.raises(StepOutOfOrder, match="step 'audio-convert' has not completed"):
        memory_app.start_step(qid, "transcribe", 1)


@pytest.mark.parametrize("ending", ["complete", "fail", "cancel"])
def test_terminal_queues_refuse_every_later_command(memory_app: VideoProcessing, ending: str) -> None:
    app = memory_app
    qid = app.start_processing("tutor-1", "a")
    if ending == "complete":
        run_all_steps(app, qid)
    elif ending == "fail":
        app.start_step(qid, "compress", 1)
        app.fail_step(qid, "compress", 1, "broken file")
    else:
        app.cancel(qid, by="tutor-1")
    version = app.get_queue(qid).version
    for command in (
        lambda: app.start_step(qid, "compress", 2),
        lambda: app.report_progress(qid, "compress", 1, 50),
        lambda: app.retry_step(qid, "compress", 1, "x", 1),
        lambda: app.complete_step(qid, "embed", 1),
        lambda: app.fail_step(qid, "compress", 1, "x"),
    ):
        with pytest.raises(QueueIsTerminal, match="already"):
            command()
    if ending == "cancel":
        assert app.cancel(qid, by="tutor-1") is False  # cancelling twice is harmless
    else:
        with pytest.raises(QueueIsTerminal):
            app.cancel(qid, by="tutor-1")
    assert app.get_queue(qid).version == version


def test_cancel_marks_the_running_step(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a")
    memory_app.start_step(qid, "compress", 1)
    assert memory_app.cancel(qid, by="tutor-1", reason="wrong video")
    queue = memory_app.get_queue(qid)
    assert queue.status == "cancelled"
    assert queue.step("compress").status == "cancelled"
    cancelled = list(memory_app.queue_events(qid))[-1]
    assert (cancelled.by, cancelled.reason, cancelled.step) == ("tutor-1", "wrong video", "compress")


def test_progress_never_goes_backwards(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a")
    memory_app.start_step(qid, "compress", 1)
    assert memory_app.report_progress(qid, "compress", 1, 40)
    assert memory_app.report_progress(qid, "compress", 1, 30) is False
    assert memory_app.report_progress(qid, "compress", 1, 40) is False
    assert memory_app.get_queue(qid).step("compress").progress == 40
    memory_app.retry_step(qid, "compress", 1, "503", 60)
    memory_app.start_step(qid, "compress", 2)
    assert memory_app.report_progress(qid, "compress", 2, 10) is False
    assert memory_app.get_queue(qid).step("compress").progress == 40


def test_snapshots_and_replay_give_the_same_state(database_url: str) -> None:
    store = open_store(database_url, SNAPSHOT_INTERVAL="4")
    try:
        app = store.app
        qid = app.start_processing("tutor-1", "a")
        app.start_step(qid, "compress", 1)
        for percent in range(5, 100, 5):
            app.report_progress(qid, "compress", 1, percent)
        app.complete_step(qid, "compress", 1)
        assert len(list(app.snapshots.get(qid))) > 0  # type: ignore[union-attr]
        assert vars(app.get_queue(qid)) == vars(app.replay(qid))
    finally:
        store.close()


def test_a_clashing_save_raises_integrity_error(store: Store) -> None:
    """Two writers that loaded the same version: the library refuses the second save."""
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "compress", 1)
    first, second = app.get_queue(qid), app.get_queue(qid)
    first.complete_step("compress", 1)
    second.complete_step("compress", 1)
    app.save(first)
    with pytest.raises(IntegrityError):
        app.save(second)


def test_concurrent_completions_of_the_same_step_have_exactly_one_winner(database_url: str) -> None:
    """Two processes (two applications on one database) race to complete one step."""
    a, b = open_store(database_url), open_store(database_url)
    try:
        qid = a.app.start_processing("tutor-1", "a")
        a.app.start_step(qid, "compress", 1)
        barrier = threading.Barrier(8)
        results: list[bool] = []

        def complete(app: VideoProcessing) -> None:
            barrier.wait()
            results.append(app.complete_step(qid, "compress", 1, {"by": "racer"}))

        threads = [threading.Thread(target=complete, args=(s.app,)) for s in (a, b) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [False] * 7 + [True]
        assert event_names(a.app, qid).count("StepCompleted") == 1
    finally:
        a.close()
        b.close()


def test_timeline_lists_time_event_step_attempt_and_reason(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "a")
    memory_app.start_step(qid, "compress", 1)
    memory_app.retry_step(qid, "compress", 1, "503 model loading", 30)
    entries = memory_app.timeline(qid)
    assert [(e.event, e.step, e.attempt) for e in entries] == [
        ("Created", None, None),
        ("StepStarted", "compress", 1),
        ("StepRetried", "compress", 1),
    ]
    assert "reason=503 model loading" in entries[-1].detail
    assert "delay_seconds=30.0" in entries[-1].detail
    assert entries[0].timestamp <= entries[-1].timestamp
