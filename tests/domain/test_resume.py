"""Retrying a failed or cancelled queue (``Resumed``): from each step, after a cancel, twice.

Run on the in-memory store and, through ``store``, on SQLite and Postgres.
"""

from __future__ import annotations

import pytest

from domain import STEPS, NotResumable, QueueIsTerminal, StaleAttempt, VideoProcessing
from tests.conftest import Store


def run(app: VideoProcessing, qid: object, step: str, attempt: int = 1) -> None:
    assert app.start_step(qid, step, attempt) == "started"
    assert app.complete_step(qid, step, attempt, {"artifact": f"{step}-{attempt}"})


@pytest.mark.parametrize("failing", STEPS)
def test_a_queue_failed_at_any_step_resumes_from_the_steps_not_completed(store: Store, failing: str) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    order = ["audio-convert", "transcribe", "embed", "compress"]
    for step in order[: order.index(failing)]:
        run(app, qid, step)
    app.start_step(qid, failing, 1)
    app.fail_step(qid, failing, 1, "permanent")
    done = {s.name: s.outputs for s in app.get_queue(qid).steps if s.status == "completed"}

    assert app.resume(qid, by="tutor-1") is True
    queue = app.get_queue(qid)
    assert (queue.status, queue.error) == ("processing", None)
    assert {s.name: s.outputs for s in queue.steps if s.status == "completed"} == done  # artifacts reused
    resumed = list(app.queue_events(qid))[-1]
    assert type(resumed).__name__ == "Resumed" and resumed.previous_status == "failed"
    assert resumed.steps == [s for s in STEPS if s not in done]
    assert resumed.attempts[failing] == 2  # the failed attempt's number is never used again
    for step in resumed.ready:  # a ready step's attempt 1 was published (and refused): skipped
        if step != failing:
            assert resumed.attempts[step] == 2
    with pytest.raises(StaleAttempt):
        app.start_step(qid, failing, 1)
    for step in [s for s in order if s not in done]:
        run(app, qid, step, resumed.attempts[step])
    assert app.get_queue(qid).status == "completed"
    assert vars(app.replay(qid)) == vars(app.get_queue(qid))


def test_a_cancelled_queue_resumes_and_its_steps_get_a_fresh_retry_budget(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a", max_retries=1)
    app.start_step(qid, "compress", 1)
    app.start_step(qid, "audio-convert", 1)
    app.retry_step(qid, "audio-convert", 1, "503", 1)
    app.cancel(qid, by="tutor-1")
    assert app.resume(qid, by="tutor-1") is True
    resumed = list(app.queue_events(qid))[-1]
    assert (resumed.previous_status, resumed.ready) == ("cancelled", ["compress", "audio-convert"])
    # audio-convert's attempt 2 was published (a delayed retry): 3; a cancelled step skips one number
    # (it may have been retrying); transcribe and embed were never offered
    assert resumed.attempts == {"compress": 3, "audio-convert": 3, "transcribe": 1, "embed": 1}
    queue = app.get_queue(qid)
    assert [(s.status, s.retries) for s in queue.steps] == [("pending", 0)] * 4
    with pytest.raises(StaleAttempt):
        app.start_step(qid, "audio-convert", 2)  # the delayed retry, delivered late
    app.start_step(qid, "audio-convert", 3)
    assert app.retry_step(qid, "audio-convert", 3, "503 again", 1) == "retried"  # the budget is fresh
    app.start_step(qid, "audio-convert", 4)
    assert app.retry_step(qid, "audio-convert", 4, "503 still", 1) == "failed"
    assert app.resume(qid, by="tutor-1") is True  # and again after the second failure
    assert app.get_queue(qid).step("audio-convert").status == "pending"


def test_a_double_click_resumes_once(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "compress", 1)
    app.cancel(qid, by="tutor-1")
    assert app.resume(qid, by="tutor-1") is True
    version = app.get_queue(qid).version
    assert app.resume(qid, by="tutor-1") is False
    assert app.get_queue(qid).version == version
    assert [type(e).__name__ for e in app.queue_events(qid)].count("Resumed") == 1


def test_only_failed_or_cancelled_queues_can_be_retried(memory_app: VideoProcessing) -> None:
    app = memory_app
    running = app.start_processing("tutor-1", "a")
    with pytest.raises(NotResumable, match="it is pending; only failed or cancelled queues can be retried"):
        app.resume(running, by="tutor-1")
    done = app.start_processing("tutor-1", "b")
    for step in ("compress", "audio-convert", "transcribe", "embed"):
        run(app, done, step)
    with pytest.raises(NotResumable, match="it is completed"):
        app.resume(done, by="tutor-1")
    deleted = app.start_processing("tutor-1", "c")
    app.cancel(deleted, by="tutor-1")
    app.get_queue(deleted)
    app._execute(deleted, lambda q: q.delete("tutor-1"))  # noqa: SLF001 - the command the deletion runs
    with pytest.raises(QueueIsTerminal, match="deleted"):
        app.resume(deleted, by="tutor-1")
