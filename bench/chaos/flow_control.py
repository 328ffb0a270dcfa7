"""Scenario *flow control*: 50 lectures uploaded at once to two API replicas;
QStash flow control holds concurrent transcriptions at their parallelism.

Two ``python -m api`` processes on different ports share the local QStash
server, the Postgres database and the storage directory, behind a
round-robin load balancer (:class:`~bench.chaos.balancer.RoundRobinBalancer`),
as in production: ``NEXTAUTH_URL`` is the balancer, so QStash delivers every
step message there and either replica may receive it. Both run the followers
(projections and dispatcher) as ``make run`` does: one of them leads each
follower and the other stands by (:mod:`projections.leadership`).

``lectures`` tutors (50; reduced 10) upload a lecture each at the same moment
through the balancer. The steps are simulated (``STEP_SECONDS`` each, no
media work): what is under test is how many deliveries of a step kind QStash
lets run at once, which does not depend on the work, and real Whisper on this
2-core machine would take minutes per dozen lectures while measuring the same
thing. The local QStash server may deliver up to 200 messages at once (as
Upstash would) and each replica runs up to 8 steps, so only flow control can
hold transcriptions at ``PARALLELISM`` (``VIDPIPE_PARALLELISM_TRANSCRIBE``);
the other steps keep the defaults (4).

Measured, from the event log (never from the processes under test): every
attempt's interval from ``StepStarted`` to its ``StepCompleted``,
``StepRetried`` or ``StepFailed``; the most intervals of one step kind open
at one moment (``max_concurrent``) against its parallelism. From QStash:
the largest waitlist of the transcribe key seen while the burst ran (polled
every 0.1 s from ``GET /v2/flowControl/{key}``) and the QStash retries spent
(``retried`` of the step messages in its store). From each replica's
``/metrics``: the step deliveries it received, so both are shown to work.

Problems: more transcriptions at once than the parallelism (the promise
broken); fewer, or an empty waitlist, or a replica that received no step
(the scenario did not test what it claims); an upload not accepted; a QStash
or step retry spent while messages waited.

``recovery_seconds``: from the first upload to the last queue ending in the
event log (the time the burst took).
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from api.settings import DEV_QSTASH_TOKEN
from bench.chaos.balancer import RoundRobinBalancer
from bench.chaos.harness import UPLOAD_PATH, ChaosStack, free_port, lecture_clips
from bench.chaos.qstash_restart import step_deliveries
from domain import STEPS, VideoProcessing
from handlers.flow_control import default_key_prefix
from local.stack import Service

NAME = "flow control: lectures uploaded at once to two API replicas"
STEP_SECONDS = 1.0
PARALLELISM = 2
OTHER_PARALLELISM = 4
QSTASH_CONCURRENCY = 200
ENDS = ("StepCompleted", "StepRetried", "StepFailed")


def attempt_intervals(app: VideoProcessing, queue_ids: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Per step kind, each attempt's (started, ended) seconds, from the event log."""
    intervals: dict[str, list[tuple[float, float]]] = {step: [] for step in STEPS}
    for queue_id in queue_ids:
        open_at: dict[tuple[str, int], float] = {}
        for event in app.queue_events(queue_id):
            kind = type(event).__name__
            if kind == "StepStarted":
                open_at[(event.step, event.attempt)] = _seconds(event.timestamp)
            elif kind in ENDS and (event.step, event.attempt) in open_at:
                intervals[event.step].append((open_at.pop((event.step, event.attempt)), _seconds(event.timestamp)))
    return intervals


def max_concurrent(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (one ending as another starts: not overlapping)."""
    moments = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in moments:  # at a tie, -1 sorts first: an end frees its slot before the next start
        running += change
        peak = max(peak, running)
    return peak


def qstash_retries(qstash_db: Path, key: str) -> tuple[int, int]:
    """(messages of the flow-control key, QStash retries they spent), from the QStash store."""
    with closing(sqlite3.connect(qstash_db, timeout=5)) as db:
        count, retried = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(retried), 0) FROM messages WHERE flow_control_key = ?", (key,)
        ).fetchone()
    return int(count), int(retried)


class WaitlistWatcher(threading.Thread):
    """Polls QStash's ``GET /v2/flowControl/{key}``: the largest waitlist and in-flight count seen."""

    def __init__(self, qstash: str, key: str) -> None:
        super().__init__(daemon=True, name="waitlist")
        self.url = f"{qstash}/v2/flowControl/{key}"
        self.halt = threading.Event()
        self.peak_waitlist = 0
        self.peak_in_flight = 0
        self.samples = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {DEV_QSTASH_TOKEN}"}
        with httpx.Client(timeout=5) as client:
            while not self.halt.wait(0.1):
                try:
                    info = client.get(self.url, headers=headers)
                except httpx.HTTPError:
                    continue
                if info.status_code == 200:  # 404 until the first transcribe message is published
                    body = info.json()
                    self.peak_waitlist = max(self.peak_waitlist, int(body.get("waitListSize", 0)))
                    self.peak_in_flight = max(self.peak_in_flight, int(body.get("parallelismCount", 0)))
                    self.samples += 1


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    lectures = 10 if reduced else 50
    clip = lecture_clips(workdir / "clips", 1)[0]  # one lecture file; each tutor uploads it (one queue per tutor)
    started = time.time()
    problems: list[str] = []
    second_port = free_port()
    stack_ports = {"PORT": str(free_port())}
    balancer = RoundRobinBalancer([int(stack_ports["PORT"]), second_port])
    public = balancer.url
    key = f"{default_key_prefix(public)}-transcribe"
    stack = ChaosStack(url, workdir, env={
        **stack_ports,
        "NEXTAUTH_URL": public,  # QStash delivers to the balancer; signatures name its URL
        "VIDPIPE_SIMULATED_STEP_SECONDS": str(STEP_SECONDS),
        "VIDPIPE_FLOW_CONTROL": "true",
        "VIDPIPE_PARALLELISM_TRANSCRIBE": str(PARALLELISM),
        "VIDPIPE_PARALLELISM_COMPRESS": str(OTHER_PARALLELISM),
        "VIDPIPE_PARALLELISM_AUDIO_CONVERT": str(OTHER_PARALLELISM),
        "VIDPIPE_PARALLELISM_EMBED": str(OTHER_PARALLELISM),
    }, service_env={"qstash": {"LOCAL_QSTASH_CONCURRENCY": str(QSTASH_CONCURRENCY)}})
    replica = stack.stack.service("api")
    stack.stack.services.append(Service(
        "api-2", [sys.executable, "-m", "api"], f"http://127.0.0.1:{second_port}", "/healthz",
        env={**replica.env, "PORT": str(second_port)},
    ))
    upload_codes: Counter[int] = Counter()
    queue_ids: list[str] = []
    lock = threading.Lock()
    with balancer, stack:
        watcher = WaitlistWatcher(stack.qstash, key)
        watcher.start()
        barrier = threading.Barrier(lectures)

        def upload(index: int) -> None:
            user = f"flow-tutor-{index:02d}"
            with httpx.Client(timeout=60) as client, clip.open("rb") as handle:
                barrier.wait()
                try:
                    response = client.post(
                        public + UPLOAD_PATH, headers={"Authorization": f"Bearer {stack.token(user)}"},
                        files={"file": (f"lecture-{index:02d}.mp4", handle, "video/mp4")},
                    )
                except httpx.HTTPError:
                    with lock:
                        upload_codes[0] += 1
                    return
            with lock:
                upload_codes[response.status_code] += 1
                if response.status_code == 202:
                    queue_ids.append(response.json()["queue_id"])

        first_upload = time.monotonic()
        with ThreadPoolExecutor(lectures, thread_name_prefix="upload") as pool:
            list(pool.map(upload, range(lectures)))
        finished_all = stack.wait_terminal(queue_ids, timeout=120 + lectures * 3 * STEP_SECONDS)
        recovery = time.monotonic() - first_upload
        watcher.halt.set()
        watcher.join(5)
        deliveries = {name: dict(sorted(step_deliveries(stack.stack.service(name).url).items()))
                      for name in ("api", "api-2")}
        app = stack.open_app()
        try:
            intervals = attempt_intervals(app, queue_ids)
            events = Counter(type(e).__name__ for q in queue_ids for e in app.queue_events(q))
        finally:
            app.close()
        messages, retried = qstash_retries(workdir / "qstash.sqlite3", key)
        connections = {str(port): n for port, n in sorted(balancer.connections.items())}

    concurrency = {step: max_concurrent(spans) for step, spans in intervals.items()}
    limits = {step: PARALLELISM if step == "transcribe" else OTHER_PARALLELISM for step in STEPS}
    if len(queue_ids) != lectures:
        problems.append(f"{lectures - len(queue_ids)} of {lectures} uploads were not accepted: {dict(upload_codes)}")
    if not finished_all:
        problems.append("not every queue ended within the deadline")
    if concurrency["transcribe"] > PARALLELISM:
        problems.append(f"{concurrency['transcribe']} transcriptions ran at once; flow control allows {PARALLELISM}")
    if concurrency["transcribe"] < PARALLELISM or watcher.peak_waitlist == 0:
        problems.append("the burst never filled the transcribe key (max concurrent "
                        f"{concurrency['transcribe']}, largest waitlist {watcher.peak_waitlist}): not tested")
    idle = [name for name, counts in deliveries.items() if not sum(counts.values())]
    if idle:
        problems.append(f"replica(s) {idle} received no step delivery: two replicas were not tested")
    if retried or events["StepRetried"]:
        problems.append(f"waiting cost retries: {retried} QStash retries, {events['StepRetried']} step retries")
    row = stack.check(started)
    row.update(
        scenario=NAME,
        server_errors=sum(n for code, n in upload_codes.items() if code >= 500 or code == 0),
        recovery_seconds=round(recovery, 2),
        details={
            "lectures": lectures,
            "replicas": 2,
            "steps": f"simulated, {STEP_SECONDS:g} s each",
            "parallelism": limits,
            "max_concurrent": concurrency,
            "attempts_measured": {step: len(spans) for step, spans in intervals.items()},
            "transcribe_key": key,
            "transcribe_waitlist_peak": watcher.peak_waitlist,
            "transcribe_in_flight_peak_at_qstash": watcher.peak_in_flight,
            "waitlist_samples": watcher.samples,
            "transcribe_messages": messages,
            "qstash_retries_of_transcribe_messages": retried,
            "step_retries": events["StepRetried"],
            "step_deliveries_by_replica": deliveries,
            "balancer_connections_by_port": connections,
            "upload_codes": {str(k): v for k, v in sorted(upload_codes.items())},
        },
        problems=problems,
    )
    return row


def _seconds(moment: datetime) -> float:
    return moment.timestamp()
