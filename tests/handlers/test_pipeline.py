"""The QStash step pipeline end to end, over loopback HTTP, on SQLite and Postgres.

Protocol covered, through the official ``qstash`` SDK and the local
QStash-compatible server: publish with deduplication id, delay and retry
settings; signed delivery (``Upstash-Signature`` verified by ``qstash.Receiver``
in the handlers: current key, exact URL, raw body hash, expiry); redelivery
when a destination is unreachable; 489 + ``Upstash-NonRetryable-Error`` to the
DLQ; message cancellation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from qstash import QStash

from domain import STEPS
from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepContext, StepJob, StepResult
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

Factory = Callable[..., Pipeline]


def completions(pipeline: Pipeline, qid: str) -> Counter[str]:
    return Counter(e.step for e in pipeline.events(qid) if type(e).__name__ == "StepCompleted")


def test_a_queue_runs_all_four_steps_through_qstash(pipeline_factory: Factory) -> None:
    pipeline = pipeline_factory()
    qid = pipeline.start()
    row = pipeline.wait_for_status(qid)
    assert row["status"] == "completed" and row["progress_percentage"] == 100
    assert completions(pipeline, qid) == Counter(STEPS)
    started = [e for e in pipeline.events(qid) if type(e).__name__ == "StepStarted"]
    assert sorted(e.step for e in started) == sorted(STEPS)  # compress and audio-convert in either order
    order = [e.step for e in started]
    assert order.index("audio-convert") < order.index("transcribe") < order.index("embed")
    assert all(e.message_id and e.message_id.startswith("msg") for e in started)
    expected = sorted((s, 1) for s in STEPS)
    wait_until(lambda: sorted(
        (m["step"], m["attempt"]) for m in pipeline.store.view.fetchall(
            "SELECT step, attempt FROM video_processing_messages WHERE queue_id = :id", {"id": qid})
    ) == expected, 5, "the dispatcher to record its four messages")


def test_transient_failures_retry_with_qstash_delays_then_complete(pipeline_factory: Factory) -> None:
    flaky = SimulatedProvider(transient_failures=2, retry_after=1.0)
    pipeline = pipeline_factory({"transcribe": flaky})
    qid = pipeline.start()
    row = pipeline.wait_for_status(qid, timeout=40)
    assert row["status"] == "completed"
    retried = [e for e in pipeline.events(qid) if type(e).__name__ == "StepRetried"]
    assert [(e.step, e.attempt, e.delay_seconds) for e in retried] == [
        ("transcribe", 1, 1.0),  # max(hint 1 s, base 1 s * 2^0)
        ("transcribe", 2, 2.0),  # max(hint 1 s, base 1 s * 2^1)
    ]
    assert "503" in retried[0].reason
    transcribe = next(s for s in row["steps"] if s["step"] == "transcribe")
    assert (transcribe["attempts"], transcribe["retries"]) == (3, 2)
    assert completions(pipeline, qid) == Counter(STEPS)
    # the delay was carried by QStash (not-before), not by a sleeping handler
    started = {e.attempt: e.timestamp for e in pipeline.events(qid)
               if type(e).__name__ == "StepStarted" and e.step == "transcribe"}
    assert (started[3] - started[2]).total_seconds() >= 1.5


def test_a_server_that_never_wakes_fails_the_queue_with_the_last_reason(pipeline_factory: Factory) -> None:
    asleep = SimulatedProvider(transient_failures=-1)
    pipeline = pipeline_factory({"audio-convert": asleep}, VIDEO_STEP_MAX_RETRIES=2)
    qid = pipeline.start()
    row = pipeline.wait_for_status(qid, timeout=40)
    assert row["status"] == "failed"
    assert row["error"] == "audio-convert server answered 503 (simulated failure 3) (gave up after 2 retries)"
    names = pipeline.event_names(qid)
    assert names.count("StepRetried") == 2 and names[-2:] == ["StepFailed", "Failed"]
    assert "transcribe" not in completions(pipeline, qid)


def test_a_permanent_failure_is_recorded_then_answered_489(pipeline_factory: Factory) -> None:
    broken = SimulatedProvider(permanent_failure="the upload is a PNG image, not a video")
    pipeline = pipeline_factory({"compress": broken})
    qid = pipeline.start()
    row = pipeline.wait_for_status(qid)
    assert (row["status"], row["error"]) == ("failed", "the upload is a PNG image, not a video")
    client = pipeline.sdk()
    dead = wait_until(lambda: client.dlq.list().messages, 10, "the message in the DLQ")
    assert dead[0].response_status == 489
    assert "PNG image" in (dead[0].response_body or "")
    assert pipeline.event_names(qid)[-2:] == ["StepFailed", "Failed"]


def test_cancel_reaches_a_running_step_within_five_seconds(pipeline_factory: Factory) -> None:
    long_step = SimulatedProvider(seconds=60, ticks=60)
    pipeline = pipeline_factory({"compress": long_step})
    qid = pipeline.start()
    pipeline.wait_for_status(qid, ("processing",))
    cancelled_at = time.monotonic()
    pipeline.store.app.cancel(qid, by="tutor-1", reason="wrong video")
    row = pipeline.wait_for_status(qid, timeout=5)
    assert row["status"] == "cancelled"
    # the handler stops its work: QStash sees the delivery answered, long before 60 s
    client = pipeline.sdk()
    wait_until(lambda: not _pending_deliveries(pipeline), 5, "the handler to return")
    assert time.monotonic() - cancelled_at < 5
    time.sleep(1.0)
    names = pipeline.event_names(qid)
    assert names[-1] == "Cancelled"
    assert "compress" not in completions(pipeline, qid) and client.dlq.list().messages == []


def _pending_deliveries(pipeline: Pipeline) -> int:
    import sqlite3

    with sqlite3.connect(pipeline.qstash.settings.db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM messages WHERE state IN ('pending', 'delivering')").fetchone()[0]


def test_cancel_removes_a_delayed_retry_from_qstash(pipeline_factory: Factory) -> None:
    flaky = SimulatedProvider(transient_failures=1)
    pipeline = pipeline_factory({"compress": flaky}, VIDEO_STEP_RETRY_BASE_SECONDS=30)
    qid = pipeline.start()
    wait_until(lambda: "StepRetried" in pipeline.event_names(qid), 10, "the retry")
    retry_id = wait_until(lambda: pipeline.store.view.fetchone(
        "SELECT message_id FROM video_processing_messages WHERE queue_id = :id AND attempt = 2", {"id": qid}),
        10, "the delayed message")["message_id"]
    client = pipeline.sdk()
    assert client.message.get(retry_id).message_id == retry_id  # pending, 30 s ahead
    pipeline.store.app.cancel(qid, by="tutor-1")
    wait_until(lambda: _gone(client, retry_id), 10, "the delayed message to be cancelled")


def _gone(client: QStash, message_id: str) -> bool:
    try:
        client.message.get(message_id)
    except Exception:
        return True
    return False


def test_the_same_message_delivered_twice_has_one_effect(pipeline_factory: Factory) -> None:
    slow = SimulatedProvider(seconds=1.0)
    pipeline = pipeline_factory({"compress": slow}, VIDPIPE_RUN_FOLLOWERS=False)
    qid = pipeline.start()
    client = pipeline.sdk()
    url = f"{pipeline.api.url}/api/video-processing/steps/compress"
    body = {"queue_id": qid, "step": "compress", "attempt": 1}
    for _ in range(2):  # two distinct messages with the same body, no deduplication
        client.message.publish_json(url=url, body=body)
    wait_until(lambda: "StepCompleted" in pipeline.event_names(qid), 15, "the step to complete")
    time.sleep(1.5)  # let the second delivery finish too
    names = pipeline.event_names(qid)
    assert names.count("StepStarted") == 1 and names.count("StepCompleted") == 1
    client.message.publish_json(url=url, body=body)  # and once more, after completion
    time.sleep(1.0)
    assert pipeline.event_names(qid) == names
    assert slow.calls == 1


# --------------------------------------------------------------- signatures

def _signature(body: bytes, url: str, *, key: str = DEV_CURRENT_SIGNING_KEY, exp_offset: int = 300) -> str:
    now = int(time.time())
    claims = {
        "iss": "Upstash", "sub": url, "iat": now, "nbf": now, "exp": now + exp_offset,
        "jti": f"jwt_{uuid.uuid4().hex}",
        "body": base64.urlsafe_b64encode(hashlib.sha256(body).digest()).decode().rstrip("="),
    }
    return _hs256(claims, key)


def _hs256(claims: dict[str, object], key: str) -> str:
    """A compact JWS, HS256 (written out: PyJWT warns about QStash's 31-byte dev keys)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.mark.parametrize(
    ("case", "check"),
    [
        ("missing", "missing header"),
        ("forged", "bad signature or key"),
        ("expired", "expired"),
        ("wrong-url", "URL mismatch"),
        ("wrong-body", "body hash mismatch"),
        ("not-a-jwt", "not a JWT"),
    ],
)
def test_bad_signatures_are_401_and_record_nothing(pipeline_factory: Factory, case: str, check: str) -> None:
    """Each refusal names the check that failed, and never quotes a signing key."""
    pipeline = pipeline_factory(VIDPIPE_RUN_FOLLOWERS=False)
    qid = pipeline.start()
    url = f"{pipeline.api.url}/api/video-processing/steps/compress"
    body = json.dumps({"queue_id": qid, "step": "compress", "attempt": 1}).encode()
    signature = {
        "missing": None,
        "forged": _signature(body, url, key="sig_NotTheRealKeyButJustAsLong0"),
        "expired": _signature(body, url, exp_offset=-120),
        "wrong-url": _signature(body, url.replace("compress", "embed")),
        "wrong-body": _signature(body.replace(b"1}", b"2}"), url),
        "not-a-jwt": "hello",
    }[case]
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Upstash-Signature"] = signature
    before = pipeline.event_names(qid)
    response = httpx.post(url, content=body, headers=headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert f"Upstash-Signature rejected ({check})" in error
    assert DEV_CURRENT_SIGNING_KEY not in error and DEV_NEXT_SIGNING_KEY not in error
    assert pipeline.event_names(qid) == before == ["Created"]


def test_a_correctly_signed_delivery_is_accepted(pipeline_factory: Factory) -> None:
    """The control for the test above: the same request, validly signed, runs the step."""
    pipeline = pipeline_factory(VIDPIPE_RUN_FOLLOWERS=False)
    qid = pipeline.start()
    url = f"{pipeline.api.url}/api/video-processing/steps/compress"
    body = json.dumps({"queue_id": qid, "step": "compress", "attempt": 1}).encode()
    response = httpx.post(url, content=body, headers={"Upstash-Signature": _signature(body, url)})
    assert response.status_code == 200, response.text
    assert [n for n in pipeline.event_names(qid) if n != "StepProgressed"] == [
        "Created", "StepStarted", "StepCompleted"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"queue_id": "x", "step": "compress", "attempt": 0}', "positive integer"),
        (b'{"queue_id": "x", "step": "upload", "attempt": 1}', "unknown step"),
        (b'{"queue_id": "%s", "step": "compress", "attempt": 1}' % b"0b0e5c4e-0000-4000-8000-000000000000", "does not exist"),
    ],
)
def test_signed_but_unusable_messages_are_non_retryable(pipeline_factory: Factory, body: bytes, message: str) -> None:
    pipeline = pipeline_factory(VIDPIPE_RUN_FOLLOWERS=False)
    url = f"{pipeline.api.url}/api/video-processing/steps/compress"
    response = httpx.post(url, content=body, headers={"Upstash-Signature": _signature(body, url)})
    assert response.status_code == 489
    assert response.headers["Upstash-NonRetryable-Error"] == "true"
    assert message in response.json()["error"]


class ChildProcessProvider:
    """Runs a long child process (as ffmpeg would) and waits for it."""

    name = "child-process"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        self.process = subprocess.Popen(["sleep", "60"])
        context.watch_process(self.process)
        self.process.wait()
        context.check()
        return StepResult()


def test_cancel_kills_the_running_child_process(pipeline_factory: Factory) -> None:
    provider = ChildProcessProvider()
    pipeline = pipeline_factory({"compress": provider})
    qid = pipeline.start()
    wait_until(lambda: provider.process is not None, 10, "the child process to start")
    assert provider.process is not None and provider.process.poll() is None
    pipeline.store.app.cancel(qid, by="tutor-1")
    wait_until(lambda: provider.process.poll() is not None, 5, "the child process to be killed")
    assert provider.process.returncode == -9
    assert pipeline.wait_for_status(qid, timeout=5)["status"] == "cancelled"
