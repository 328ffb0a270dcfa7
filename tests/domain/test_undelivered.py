"""A step whose QStash message was dead-lettered (``fail_undelivered``): fails for good, once, if current.

Run on the in-memory store and, through ``store``, on SQLite and Postgres.
"""

from __future__ import annotations

import dataclasses

import pytest

from domain import QueueIsTerminal, UnknownStep, VideoProcessing
from tests.conftest import Store

REASON = "the compress step could not be delivered: the service answered 503 to 4 attempts"


def names(app: VideoProcessing, qid: object) -> list[str]:
    return [type(e).__name__ for e in app.queue_events(qid)]


def test_a_message_that_never_got_through_fails_the_step_and_the_queue(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    assert app.fail_undelivered(qid, "compress", 1, REASON, "dlq_1") is True
    queue = app.get_queue(qid)
    assert (queue.status, queue.error) == ("failed", REASON)
    compress = queue.step("compress")
    assert (compress.status, compress.attempt, compress.last_error) == ("failed", 1, REASON)
    failed = list(app.queue_events(qid))[-2]
    assert (type(failed).__name__, failed.attempt, failed.dlq_id) == ("StepFailed", 1, "dlq_1")
    assert "dlq_id=dlq_1" in app.timeline(qid)[-2].detail
    assert vars(app.replay(qid)) == vars(queue)


def test_a_running_attempt_whose_handler_kept_failing_fails(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "audio-convert", 1)
    assert app.fail_undelivered(qid, "audio-convert", 1, "gone", "dlq_2") is True
    assert app.get_queue(qid).status == "failed"


def test_the_awaited_retry_of_a_retrying_step_fails(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "compress", 1)
    app.retry_step(qid, "compress", 1, "503", 1)
    assert app.fail_undelivered(qid, "compress", 1, "late", "dlq_x") is False  # the retried attempt itself
    assert app.fail_undelivered(qid, "compress", 2, REASON, "dlq_3") is True
    assert app.get_queue(qid).step("compress").attempt == 2


@pytest.mark.parametrize("attempt", [0, 2, 3])
def test_an_attempt_that_is_not_current_changes_nothing(store: Store, attempt: int) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    version = app.get_queue(qid).version
    assert app.fail_undelivered(qid, "compress", attempt, REASON, "dlq_4") is False
    assert app.fail_undelivered(qid, "transcribe", 1, REASON, "dlq_5") is False  # not ready: never published
    assert app.get_queue(qid).version == version


def test_a_completed_step_and_an_ended_queue_change_nothing(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "compress", 1)
    app.complete_step(qid, "compress", 1)
    assert app.fail_undelivered(qid, "compress", 1, REASON, "dlq_6") is False
    assert app.fail_undelivered(qid, "audio-convert", 1, REASON, "dlq_7") is True
    before = names(app, qid)
    with pytest.raises(QueueIsTerminal):  # a duplicate callback
        app.fail_undelivered(qid, "audio-convert", 1, REASON, "dlq_7")
    with pytest.raises(UnknownStep):
        app.fail_undelivered(qid, "transcode", 1, REASON, "dlq_8")
    assert names(app, qid) == before


def test_retry_after_an_undelivered_attempt_starts_after_it_and_completes(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a", steps=["compress"])
    app.fail_undelivered(qid, "compress", 1, REASON, "dlq_9")
    assert app.resume(qid, by="tutor-1") is True
    resumed = list(app.queue_events(qid))[-1]
    assert resumed.attempts == {"compress": 2} and resumed.ready == ["compress"]  # attempt 1's id is spent
    assert app.fail_undelivered(qid, "compress", 1, REASON, "dlq_9") is False  # the old attempt's late report
    assert app.start_step(qid, "compress", 2) == "started"
    assert app.complete_step(qid, "compress", 2)
    assert app.get_queue(qid).status == "completed"


def test_a_step_failure_recorded_before_dead_letters_replays_without_a_dlq_id() -> None:
    new = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    old = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        qid = new.start_processing("tutor-1", "a")
        new.start_step(qid, "compress", 1)
        new.fail_step(qid, "compress", 1, "not a video")
        transcoder = new.mapper.transcoder
        events = []
        for stored in new.recorder.select_events(qid):
            state = transcoder.decode(stored.state)
            if stored.topic.endswith("StepFailed"):
                state.pop("class_version")
                state.pop("dlq_id")
            events.append(dataclasses.replace(stored, state=transcoder.encode(state)))
        old.recorder.insert_events(events)
        failed = list(old.queue_events(qid))[-2]
        assert (type(failed).__name__, failed.dlq_id, failed.reason) == ("StepFailed", None, "not a video")
        assert vars(old.replay(qid)) == vars(new.get_queue(qid))
    finally:
        new.close()
        old.close()
