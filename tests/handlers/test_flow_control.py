"""QStash flow control of step deliveries (:mod:`handlers.flow_control`).

Settings → keys and limits per step kind; the published messages carry them
(read back through the official SDK from the local QStash server, which parsed
the ``Upstash-Flow-Control-*`` headers); and, end to end on SQLite and
Postgres, two API replicas behind one local QStash server never run more
transcriptions at once than the key's parallelism, while the waiting ones cost
neither a QStash retry nor a step retry.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from qstash import QStash

from api.app import create_app
from api.settings import Settings
from bench.chaos.balancer import RoundRobinBalancer
from domain import STEPS
from handlers.bus import QStashBus
from handlers.flow_control import FlowLimit, StepFlowControl, default_key_prefix
from handlers.providers.simulated import SimulatedProvider
from handlers.steps import StepContext, StepJob, StepResult
from local.qstash.settings import DEV_TOKEN
from tests.conftest import open_store
from tests.handlers.conftest import Pipeline
from tests.local.qstash_support import Destination, local_qstash
from tests.support import ServedApp, reserve_port, wait_until


# ------------------------------------------------------------------ keys and limits


def test_each_step_kind_has_its_own_key_and_parallelism() -> None:
    flow = StepFlowControl("vidpipe-prod", {"compress": 4, "transcribe": 2, "embed": 0})
    assert flow.for_step("transcribe") == FlowLimit("vidpipe-prod-transcribe", 2)
    assert flow.for_step("compress") == FlowLimit("vidpipe-prod-compress", 4)
    assert flow.for_step("embed") is None  # 0: unbounded, published without flow control
    assert flow.for_step("audio-convert") is None  # not configured: unbounded


def test_the_default_prefix_differs_per_deployment_and_is_shared_by_its_replicas() -> None:
    production = default_key_prefix("https://learn.example.com")
    assert production == "vidpipe-learn.example.com"
    assert default_key_prefix("https://learn.example.com/") == production  # every replica: the same URL
    assert default_key_prefix("https://staging.learn.example.com") != production
    assert default_key_prefix("http://127.0.0.1:8000") == "vidpipe-127.0.0.1-8000"


def test_settings_give_the_dispatcher_its_flow_control() -> None:
    settings = Settings(NEXTAUTH_URL="https://learn.example.com", VIDPIPE_PARALLELISM_TRANSCRIBE=1,
                        VIDPIPE_PARALLELISM_EMBED=0)
    flow = settings.step_flow_control()
    assert flow is not None
    assert [flow.for_step(s) for s in STEPS] == [
        FlowLimit("vidpipe-learn.example.com-compress", 4),
        FlowLimit("vidpipe-learn.example.com-audio-convert", 4),
        FlowLimit("vidpipe-learn.example.com-transcribe", 1),
        None,
    ]
    assert Settings(VIDPIPE_FLOW_CONTROL_KEY_PREFIX="staging").step_flow_control().key("embed") == "staging-embed"  # type: ignore[union-attr]
    assert Settings(VIDPIPE_FLOW_CONTROL=False).step_flow_control() is None


@pytest.mark.parametrize("name, value", [
    ("VIDPIPE_FLOW_CONTROL_KEY_PREFIX", "two words"),
    ("VIDPIPE_FLOW_CONTROL_KEY_PREFIX", "x" * 201),
    ("VIDPIPE_PARALLELISM_TRANSCRIBE", -1),
])
def test_bad_flow_control_settings_are_refused_by_name(name: str, value: object) -> None:
    with pytest.raises(ValidationError, match=name):
        Settings(**{name: value})


# ------------------------------------------------------------------ what is published


def test_a_published_step_message_carries_its_flow_control_headers(tmp_path: Path) -> None:
    qstash = local_qstash(tmp_path / "qstash.sqlite3")
    destination = Destination()
    bus = QStashBus(DEV_TOKEN, qstash.url)
    client = QStash(DEV_TOKEN, base_url=qstash.url)
    try:
        url = destination.url("/api/video-processing/steps/transcribe")
        limited = bus.publish(url, {"step": "transcribe"}, deduplication_id="q-transcribe-1", delay_seconds=60,
                              flow_control=FlowLimit("vidpipe-test-transcribe", 2))
        plain = bus.publish(url, {"step": "transcribe"}, deduplication_id="q-transcribe-2", delay_seconds=60)
        held = client.message.get(limited)
        assert held.flow_control is not None
        assert (held.flow_control.key, held.flow_control.parallelism, held.flow_control.rate) == (
            "vidpipe-test-transcribe", 2, None)
        assert client.message.get(plain).flow_control is None
        assert client.flow_control.get("vidpipe-test-transcribe").parallelism_max == 2  # the key took its limit
    finally:
        client.http._client.close()  # noqa: SLF001
        bus.close()
        destination.close()
        qstash.stop()


def test_a_step_retry_keeps_its_flow_control_key(pipeline_factory: Callable[..., Pipeline]) -> None:
    flaky = SimulatedProvider(failing_attempts=1)
    pipeline = pipeline_factory({"transcribe": flaky}, VIDEO_STEP_RETRY_BASE_SECONDS=30,
                                VIDPIPE_FLOW_CONTROL_KEY_PREFIX="retry-test", VIDPIPE_PARALLELISM_TRANSCRIBE=1)
    qid = pipeline.start()
    retry_id = wait_until(lambda: pipeline.store.view.fetchone(
        "SELECT message_id FROM video_processing_messages WHERE queue_id = :id AND step = 'transcribe' "
        "AND attempt = 2", {"id": qid}), 20, "the delayed retry")["message_id"]
    retry = pipeline.sdk().message.get(retry_id)  # pending for 30 s
    assert retry.flow_control is not None
    assert (retry.flow_control.key, retry.flow_control.parallelism) == ("retry-test-transcribe", 1)
    first_ids = {row["step"]: row["message_id"] for row in pipeline.store.view.fetchall(
        "SELECT step, message_id FROM video_processing_messages WHERE queue_id = :id AND attempt = 1", {"id": qid})}
    assert set(first_ids) == {"compress", "audio-convert", "transcribe"}
    pipeline.store.app.cancel(qid, by="tutor-1")


# ------------------------------------------------------------------ two replicas, one budget


@dataclass
class Concurrency:
    """In-flight step work per step kind, across every replica of the test (one process)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: Counter[str] = field(default_factory=Counter)
    peak: Counter[str] = field(default_factory=Counter)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (replica, step)


@dataclass
class CountingProvider:
    """Works ``seconds`` (cancellably) and records how many runs of its step overlap."""

    replica: str
    seconds: float
    tracker: Concurrency
    name: str = "counting"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        t = self.tracker
        with t.lock:
            t.running[job.step] += 1
            t.peak[job.step] = max(t.peak[job.step], t.running[job.step])
            t.runs[(self.replica, job.step)] += 1
        try:
            context.wait(self.seconds)
        finally:
            with t.lock:
                t.running[job.step] -= 1
        return StepResult(outputs={"artifact": f"{job.owner_id}/{job.queue_id}/{job.step}"}, provider="counting")


SECONDS = {"compress": 0.5, "audio-convert": 0.05, "transcribe": 0.4, "embed": 0.05}


@pytest.fixture
def two_replicas(database_url: str, tmp_path: Path) -> Iterator[tuple[list[ServedApp], Any, Concurrency, str]]:
    qstash = local_qstash(tmp_path / "qstash.sqlite3", backoff_scale=0.01)
    tracker = Concurrency()
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    apps = []
    socks = [reserve_port(), reserve_port()]
    # as in production, behind one URL: one replica's dispatcher leads and publishes to it, both receive
    balancer = RoundRobinBalancer([int(sock.getsockname()[1]) for sock in socks]).start()
    try:
        for replica, sock in zip(("a", "b"), socks, strict=True):
            settings = Settings(
                DATABASE_URL=database_url, PORT=sock.getsockname()[1], QSTASH_URL=qstash.url,
                NEXTAUTH_URL=balancer.url,
                VIDPIPE_PROJECTION_POLL_SECONDS=0.02, VIDPIPE_QSTASH_RETRY_DELAY="200",
                VIDPIPE_FLOW_CONTROL_KEY_PREFIX=prefix,  # known to the waitlist watcher
                VIDPIPE_PARALLELISM_TRANSCRIBE=2, VIDPIPE_PARALLELISM_COMPRESS=0,
                VIDPIPE_MAX_CONCURRENT_STEPS=8,
            )
            providers = {step: CountingProvider(replica, SECONDS[step], tracker) for step in STEPS}
            apps.append(ServedApp(create_app(settings, providers=providers), sock))
        yield apps, qstash, tracker, prefix
    finally:
        for app in apps:
            app.stop()
        balancer.stop()
        qstash.stop()


def test_two_replicas_never_run_more_transcriptions_than_the_parallelism(
    two_replicas: tuple[list[ServedApp], Any, Concurrency, str], database_url: str,
) -> None:
    _, qstash, tracker, prefix = two_replicas
    store = open_store(database_url)
    client = QStash(DEV_TOKEN, base_url=qstash.url)
    waitlist_peak = 0
    watching = threading.Event()

    def watch_waitlist() -> None:
        nonlocal waitlist_peak
        while not watching.wait(0.05):
            try:
                waitlist_peak = max(waitlist_peak, client.flow_control.get(f"{prefix}-transcribe").wait_list_size)
            except Exception:  # noqa: BLE001 - the key exists once the first transcribe message is published
                continue

    watcher = threading.Thread(target=watch_waitlist, daemon=True)
    watcher.start()
    try:
        queues = [str(store.app.start_processing(f"tutor-{i}", f"lecture-{i}")) for i in range(8)]
        wait_until(lambda: all(store.app.get_queue(q).is_terminal for q in queues), 60, "every queue to end")
    finally:
        watching.set()
        watcher.join(5)
    try:
        assert [store.app.get_queue(q).status for q in queues] == ["completed"] * 8
        assert tracker.peak["transcribe"] == 2  # the budget was used and never exceeded
        assert tracker.peak["compress"] > 2  # without a key (parallelism 0) deliveries do overlap
        assert waitlist_peak > 0  # transcriptions waited at QStash, not in the replicas
        assert sum(n for (r, _), n in tracker.runs.items()) == 8 * len(STEPS)  # each step's work ran once
        assert {r for (r, _), n in tracker.runs.items() if n} == {"a", "b"}  # both replicas delivered steps
        names = Counter(type(e).__name__ for q in queues for e in store.app.queue_events(q))
        assert names["StepRetried"] == 0 and names["StepStarted"] == 8 * len(STEPS)  # waiting spent no step retry
        with sqlite3.connect(qstash.settings.db_path) as db:
            retried = db.execute(
                "SELECT COALESCE(MAX(retried), 0), COUNT(*) FROM messages WHERE flow_control_key = ?",
                (f"{prefix}-transcribe",),
            ).fetchone()
        assert retried == (0, 8)  # nor a QStash retry: every transcription was delivered once
    finally:
        client.http._client.close()  # noqa: SLF001
        store.close()
