"""A step message QStash gives up on reaches the tutor: dead letter → failure callback → ``StepFailed`` → Retry.

Through the local QStash server and the real dispatcher, on SQLite and Postgres:
every step message carries ``Upstash-Failure-Callback``; when its retries are
spent (a gateway answering 503 for the step, so it never started; or a handler
that kept answering 503 while the step ran) QStash dead-letters it and calls
``POST /api/video-processing/step-failures``, which fails the queue with a reason
the tutor reads, records QStash's ``dlqId``, and notifies the tutor; Retry then
completes the queue. Reports are signed (forged: 401, nothing recorded), checked
(malformed: 400) and idempotent (a duplicate or late one: 200, nothing recorded).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
from handlers.dispatcher import step_failure_url, step_url
from handlers.providers.simulated import SimulatedProvider
from tests.api.conftest import Client
from tests.handlers.conftest import Pipeline
from tests.handlers.signing import sign
from tests.support import wait_until

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"
FAILURES = f"{PREFIX}/step-failures"


class Gateway:
    """A load balancer in front of the API that answers 503 (no healthy upstream) for the paths in ``down``."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.down: set[str] = set()
        self.failure_reports = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.down:
            await send({"type": "http.response.start", "status": 503, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"no healthy upstream"})
            return
        if scope["type"] == "http" and scope["path"] == FAILURES:
            self.failure_reports += 1
        await self.app(scope, receive, send)


def report(qid: str, step: str, attempt: int, *, status: int = 503, dlq_id: str = "dlq_test", **extra: Any) -> bytes:
    """A failure callback body shaped as QStash sends it."""
    source = json.dumps({"queue_id": qid, "step": step, "attempt": attempt}).encode()
    return json.dumps({
        "status": status, "header": {}, "body": base64.b64encode(b"no healthy upstream").decode(),
        "retried": 3, "maxRetries": 3, "dlqId": dlq_id, "sourceMessageId": "msg_test",
        "url": f"http://127.0.0.1/api/video-processing/steps/{step}", "method": "POST", "sourceHeader": {},
        "sourceBody": base64.b64encode(source).decode(), "notBefore": "0", "createdAt": "0", **extra,
    }).encode()


def post_report(pipeline: Pipeline, body: bytes, **sign_options: Any) -> httpx.Response:
    url = step_failure_url(pipeline.settings.public_base_url)
    headers = {"Upstash-Signature": sign(body, url, **sign_options), "Content-Type": "application/json"}
    return httpx.post(f"{pipeline.api.url}{FAILURES}", content=body, headers=headers, timeout=30)


def recorded(pipeline: Pipeline, qid: str) -> list[str]:
    """The queue's events but progress (the running step reports it meanwhile)."""
    return [name for name in pipeline.event_names(qid) if name != "StepProgressed"]


def failed_events(pipeline: Pipeline, qid: str) -> list[Any]:
    return [e for e in pipeline.events(qid) if type(e).__name__ == "StepFailed"]


def retry_until_completed(tutor: Client, qid: str) -> dict[str, Any]:
    answer = tutor.request("POST", f"{PREFIX}/status/{qid}/retry")
    assert answer.status_code == 202, answer.text
    return dict(wait_until(
        lambda: (row := tutor.status(qid))["status"] == "completed" and row, 30, "the retried queue to complete"
    ))


def test_a_step_qstash_cannot_deliver_fails_the_queue_notifies_the_tutor_and_retry_completes_it(
    served: Served, clients: Clients
) -> None:
    gateways: list[Gateway] = []

    def gateway(app: Any) -> Gateway:
        gateways.append(Gateway(app))
        return gateways[0]

    pipeline = served(wrap=gateway, VIDPIPE_QSTASH_RETRIES=2)
    gateways[0].down.add(f"{PREFIX}/steps/compress")
    tutor = clients(pipeline, "tutor-a")
    qid = tutor.upload().json()["queue_id"]

    row = tutor.wait_for(qid)
    reason = "the compress step could not be delivered: the service answered 503 to 3 attempts"
    assert (row["status"], row["error"]) == ("failed", reason)
    compress = next(s for s in row["steps"] if s["step"] == "compress")
    assert (compress["status"], compress["last_error"]) == ("failed", reason)
    dead = pipeline.sdk().dlq.list().messages
    assert [m.url for m in dead] == [step_url(pipeline.settings.public_base_url, "compress")]
    (failed,) = failed_events(pipeline, qid)
    assert (failed.step, failed.attempt, failed.dlq_id, failed.reason) == ("compress", 1, dead[0].dlq_id, reason)
    trail = tutor.get(f"{PREFIX}/status/{qid}/events").json()["events"]
    assert f"dlq_id={dead[0].dlq_id}" in next(e for e in trail if e["event"] == "StepFailed")["detail"]
    notices = wait_until(
        lambda: [n for n in tutor.get("/api/notifications").json()["items"] if n["kind"] == "failed"], 10,
        "the tutor's failure notice",
    )
    assert notices[0]["queue_id"] == qid and reason in notices[0]["message"]
    assert gateways[0].failure_reports == 1

    # QStash reports the same dead letter again (its delivery of our 200 was lost): nothing changes
    again = post_report(pipeline, report(qid, "compress", 1, dlq_id=dead[0].dlq_id))
    assert again.status_code == 200 and "ignored" in again.json(), again.text
    assert len(failed_events(pipeline, qid)) == 1

    gateways[0].down.clear()  # the deployment recovered
    done = retry_until_completed(tutor, qid)
    assert done["error"] is None
    starts = [e.attempt for e in pipeline.events(qid) if type(e).__name__ == "StepStarted" and e.step == "compress"]
    assert starts == [2]  # attempt 1 never started; its number is not reused
    late = post_report(pipeline, report(qid, "compress", 1, dlq_id=dead[0].dlq_id))  # superseded by the retry
    assert late.status_code == 200 and "ignored" in late.json()
    assert pipeline.event_names(qid)[-1] == "Completed"


def test_a_handler_that_keeps_answering_503_while_its_step_runs_fails_the_queue(
    served: Served, clients: Clients
) -> None:
    apps: list[Any] = []
    pipeline = served(wrap=lambda app: apps.append(app) or app, VIDPIPE_QSTASH_RETRIES=1)
    runner = apps[0].state.step_runner
    runner.shutting_down.set()  # a replica stuck shutting down: every delivery gets 503 + Retry-After
    tutor = clients(pipeline, "tutor-a")
    qid = str(pipeline.store.app.start_processing("tutor-a", "attachment", steps=["compress"]))

    row = tutor.wait_for(qid, timeout=40)
    reason = "the compress step could not be delivered: the service answered 503 to 2 attempts"
    assert (row["status"], row["error"]) == ("failed", reason)
    names = pipeline.event_names(qid)
    assert names[:2] == ["Created", "StepStarted"] and names[-2:] == ["StepFailed", "Failed"]
    assert failed_events(pipeline, qid)[0].dlq_id == pipeline.sdk().dlq.list().messages[0].dlq_id

    runner.shutting_down.clear()
    retry_until_completed(tutor, qid)
    starts = [e.attempt for e in pipeline.events(qid) if type(e).__name__ == "StepStarted"]
    assert starts == [1, 2]


MALFORMED = [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"status": 503}).encode(), "no sourceBody"),
    (json.dumps({"status": 503, "sourceBody": "%%%"}).encode(), "not base64"),
    (json.dumps({"status": 503, "sourceBody": base64.b64encode(b'{"step": "x"}').decode()}).encode(),
     "not a step message"),
]


def test_failure_reports_are_signed_checked_and_applied_once(served: Served) -> None:
    slow = SimulatedProvider(seconds=60, ticks=60)
    pipeline = served({"compress": slow})
    qid = str(pipeline.store.app.start_processing("tutor-a", "attachment", steps=["compress"]))
    wait_until(lambda: "StepStarted" in pipeline.event_names(qid), 15, "compress to start")
    before = recorded(pipeline, qid)
    body = report(qid, "compress", 1, dlq_id="dlq_1")

    forged = post_report(pipeline, body, key="not-the-signing-key")
    assert forged.status_code == 401 and "bad signature or key" in forged.json()["error"]
    unsigned = httpx.post(f"{pipeline.api.url}{FAILURES}", content=body, timeout=30)
    assert unsigned.status_code == 401 and "missing header" in unsigned.json()["error"]
    elsewhere = post_report(pipeline, body, sub=step_url(pipeline.settings.public_base_url, "compress"))
    assert elsewhere.status_code == 401 and "URL mismatch" in elsewhere.json()["error"]
    bad_count = post_report(pipeline, report(qid, "compress", 1, retried=-1))
    assert bad_count.status_code == 400 and "retried" in bad_count.json()["error"]
    for malformed, error in MALFORMED:
        answer = post_report(pipeline, malformed)
        assert answer.status_code == 400 and error in answer.json()["error"], (malformed, answer.text)
    stale = post_report(pipeline, report(qid, "compress", 2))
    assert stale.status_code == 200 and "no longer current" in stale.json()["ignored"]
    unknown = post_report(pipeline, report("00000000-0000-0000-0000-000000000000", "compress", 1))
    assert unknown.status_code == 200 and "ignored" in unknown.json()
    assert recorded(pipeline, qid) == before and pipeline.status(qid)["status"] == "processing"

    accepted = post_report(pipeline, body)
    assert accepted.status_code == 200, accepted.text
    reason = "the compress step could not be delivered: the service answered 503 to 4 attempts"
    assert accepted.json() == {"failed": "compress", "attempt": 1, "reason": reason}
    duplicate = post_report(pipeline, body)
    assert duplicate.status_code == 200 and "ignored" in duplicate.json()
    assert recorded(pipeline, qid) == [*before, "StepFailed", "Failed"]
    assert failed_events(pipeline, qid)[0].dlq_id == "dlq_1"
    assert pipeline.wait_for_status(qid)["error"] == reason
