"""``POST /api/video-processing/status/{id}/retry`` on SQLite and Postgres, through the real dispatcher and QStash.

A failed queue (from each step) and a cancelled one run again from their steps
not completed; the completed steps' work is not done again (their artifacts
are reused); a double click resumes once; others' queues are 404; completed
and running queues are 409.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from domain import STEPS
from handlers.errors import PermanentError
from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepContext, StepJob, StepResult
from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"


class FirstAttemptFails:
    """A step whose first attempt fails for good (a bad file fixed meanwhile, a provider bug since patched)."""

    name = "flaky-once"

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self._lock = threading.Lock()

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        with self._lock:
            self.calls[job.attempt] += 1
        if job.attempt == 1:
            raise PermanentError(f"{job.step} refused attempt 1")
        return StepResult(outputs={"artifact": f"{job.queue_id}/{job.step}/{job.attempt}"}, provider=self.name)




def names(pipeline: Pipeline, qid: str) -> list[str]:
    return pipeline.event_names(qid)


def completed(tutor: Client, qid: str) -> dict[str, Any]:
    """The status once the retried queue completed (the view shows the earlier end until it catches up)."""
    return wait_until(lambda: (row := tutor.status(qid))["status"] == "completed" and row, 30, "the queue to complete")


@pytest.mark.parametrize("failing", STEPS)
def test_a_queue_failed_at_any_step_runs_again_from_the_steps_not_completed(
    served: Served, clients: Clients, failing: str
) -> None:
    broken = FirstAttemptFails()
    others = {step: SimulatedProvider() for step in STEPS if step != failing}
    pipeline = served({failing: broken, **others})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    failed = tutor.wait_for(qid)
    assert (failed["status"], failed["error"]) == ("failed", f"{failing} refused attempt 1")
    completed_before = {s["step"]: s["outputs"] for s in failed["steps"] if s["status"] == "completed"}
    calls_before = {step: p.calls for step, p in others.items()}

    answer = tutor.request("POST", f"{PREFIX}/status/{qid}/retry")
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["changed"] is True and body["queue_id"] == qid
    assert body["steps"] == [s for s in STEPS if s not in completed_before]

    row = completed(tutor, qid)
    assert row["error"] is None and row["progress_percentage"] == 100
    for step, outputs in completed_before.items():  # reused, not redone
        assert next(s for s in row["steps"] if s["step"] == step)["outputs"] == outputs
        if step in others:
            assert others[step].calls == calls_before[step] == 1
    assert broken.calls == Counter({1: 1, 2: 1})  # the failed step's next attempt is 2
    log = names(pipeline, qid)
    assert log.count("Resumed") == 1 and log[-1] == "Completed"
    trail = tutor.get(f"{PREFIX}/status/{qid}/events").json()["events"]
    resumed = next(e for e in trail if e["event"] == "Resumed")
    assert "by=tutor-a" in resumed["detail"]


def test_a_cancelled_queue_runs_again_and_a_double_click_resumes_once(served: Served, clients: Clients) -> None:
    slow = SimulatedProvider(seconds=30, ticks=30)
    pipeline = served({"compress": slow})
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]
    wait_until(lambda: tutor.status(qid)["status"] == "processing", 15, "the queue to start")
    assert tutor.delete(f"{PREFIX}/status/{qid}").status_code == 200
    assert tutor.wait_for(qid)["status"] == "cancelled"
    slow.seconds = 0.2  # the tutor fixed whatever made it slow

    with ThreadPoolExecutor(2) as pool:  # a double click
        answers = list(pool.map(lambda _: tutor.request("POST", f"{PREFIX}/status/{qid}/retry"), range(2)))
    assert [a.status_code for a in answers] == [202, 202]
    assert sorted(a.json()["changed"] for a in answers) == [False, True]
    completed(tutor, qid)
    assert names(pipeline, qid).count("Resumed") == 1
    again = tutor.request("POST", f"{PREFIX}/status/{qid}/retry")  # once completed: nothing to retry
    assert again.status_code == 409 and "only failed or cancelled queues can be retried" in again.json()["error"]


def test_only_the_owner_may_retry_and_only_an_ended_queue(served: Served, clients: Clients) -> None:
    slow = SimulatedProvider(seconds=30, ticks=30)
    pipeline = served({"compress": slow})
    owner, other = clients(pipeline, "tutor-a"), clients(pipeline, "tutor-b")
    qid = owner.upload(fake_video(3001)).json()["queue_id"]
    wait_until(lambda: owner.status(qid)["status"] == "processing", 15, "the queue to start")
    running = owner.request("POST", f"{PREFIX}/status/{qid}/retry")
    assert running.status_code == 409 and "is processing" in running.json()["error"]
    owner.delete(f"{PREFIX}/status/{qid}")
    owner.wait_for(qid)
    for path in (f"{PREFIX}/status/{qid}/retry", f"{PREFIX}/status/not-a-queue/retry"):
        refused = other.request("POST", path)
        assert refused.status_code == 404 and "does not exist" in refused.json()["error"]
    assert "Resumed" not in names(pipeline, qid)
    assert owner.request("POST", f"{PREFIX}/status/{qid}/retry").status_code == 202
