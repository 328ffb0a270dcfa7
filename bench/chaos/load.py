"""Scenario *load*: many tutors upload at once while clients poll and stream.

``tutors`` tutors (50; reduced 5) each upload 2 distinct short lecture videos
(~3 s, :func:`~bench.chaos.harness.lecture_clips`) at the same moment, as real
multipart requests with their own tokens, through the real pipeline: ffmpeg,
the reference Whisper server (``tiny.en``) and embedding server (MiniLM).
Meanwhile ``pollers`` clients (200; reduced 20) each follow one queue as its
owner with ``GET /status/{id}`` once a second, as the progress page does,
until they see it end, and ``sse_streams`` clients (50; reduced 5) each hold
the queue's ``/status/{id}/stream`` open until it ends.

Measured: the latency (p50/p95/p99/max) and code of every status request
(a 5xx is a ``server_error``; an exception or timeout (60 s) is a
failed request and a problem), whether every stream saw its queue's terminal
status with the steps in order, the time to finish all queues and queues per
minute, and memory: a thread reads ``/proc`` every 0.5 s for the resident
memory of each service, of the API's child processes (ffmpeg) and of all of
them together; the per-service peaks are the kernel's high-water marks
(``VmHWM``, :meth:`~bench.chaos.harness.ChaosStack.peak_rss_mib`).

*Memory bounded* means two checks, both problems when broken:

- the API's peak RSS stays under :data:`API_PEAK_RSS_LIMIT_MIB` (300 MiB).
  The API holds no video in memory (uploads are streamed to storage, ffmpeg
  runs as a child process, transcripts and vectors are passed by reference)
  and runs at most ``VIDPIPE_MAX_CONCURRENT_STEPS`` (8) steps at once however
  many deliveries arrive (the local QStash server is told to deliver up to
  :data:`QSTASH_CONCURRENCY` at once, as real QStash without flow control
  would), so its memory is the interpreter with its libraries (~85 MiB idle)
  plus a bounded amount per running step and open request (the reduced run
  peaks near 95 MiB); the limit leaves three times the idle size;
- the API's memory does not grow with the number of queues handled: its
  resident size in the second half of the run stays within
  :data:`LATE_GROWTH_FACTOR` of its peak in the first half (a leak per queue
  shows up as a late peak above the early one, which holds the upload burst).
  The full run (100 queues) and the reduced run (10) face the same absolute
  limit, so the full run passing shows the peak does not scale with queues.

``recovery_seconds``: from the first upload request to the moment the last
queue is terminal in the event log (the time the whole burst took).
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import STATUS_PATH, TERMINAL, ChaosStack, lecture_clips
from domain import STEPS
from local.demo import server_sent_events

NAME = "load: tutors uploading while clients poll and stream"
VIDEOS_PER_TUTOR = 2
CLIENT_TIMEOUT_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 1.0
RSS_SAMPLE_SECONDS = 0.5
API_PEAK_RSS_LIMIT_MIB = 300.0
LATE_GROWTH_FACTOR = 1.25
LATE_GROWTH_SLACK_MIB = 25.0
QSTASH_CONCURRENCY = 200


@dataclass
class StatusLog:
    """Every status request the pollers made: latency and outcome."""

    latencies_ms: list[float] = field(default_factory=list)
    codes: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, started: float, response: httpx.Response | None, error: str | None = None) -> None:
        with self.lock:
            if response is None:
                self.codes[0] += 1
                self.failures.append(error or "no answer")
                return
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
            self.codes[response.status_code] += 1
            if response.status_code != 200:
                self.failures.append(f"{response.status_code} {response.text[:120]}")


@dataclass
class StreamResult:
    """What one SSE client saw of its queue."""

    queue_id: str
    terminal: str | None = None
    timeline: list[tuple[str, str | None]] = field(default_factory=list)
    statuses: int = 0
    error: str | None = None

    def order_problem(self) -> str | None:
        """Why the steps this stream saw were out of order (None: in order)."""
        # steps form a graph (compress and audio-convert side by side): each start must follow the
        # completion of the step's own predecessors
        from domain.queue import DEFAULT_GRAPH

        done: set[str] = set()
        for event, step in self.timeline:
            if event == "StepCompleted" and step:
                done.add(step)
            elif event == "StepStarted" and step in DEFAULT_GRAPH:
                missing = [p for p in DEFAULT_GRAPH[step] if p not in done]
                if missing:
                    return f"steps out of order: {step} started before {missing} completed ({self.timeline})"
        completed = [step for event, step in self.timeline if event == "StepCompleted"]
        if self.terminal == "completed" and sorted(completed) != sorted(STEPS):
            return f"completed but the steps completed were {completed}"
        return None


class MemorySampler(threading.Thread):
    """Reads ``/proc`` every 0.5 s: each service's RSS, the API's children's, their total."""

    def __init__(self, stack: ChaosStack) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.stack = stack
        self.halt = threading.Event()
        self.api_series: list[tuple[float, float]] = []  # (monotonic time, API RSS MiB)
        self.children_peak_mib = 0.0  # all the API's descendants at one instant (ffmpeg)
        self.child_peak_mib = 0.0  # the largest single descendant
        self.total_peak_mib = 0.0  # every service plus the API's descendants at one instant
        self.samples = 0

    def run(self) -> None:
        while not self.halt.wait(RSS_SAMPLE_SECONDS):
            self.sample()

    def sample(self) -> None:
        self.stack.peak_rss_mib()  # the harness keeps each service's VmHWM across restarts
        total = 0.0
        for service in self.stack.stack.services:
            pid = self.stack.pid(service.name)
            if pid is None:
                continue
            rss = rss_mib(pid)
            total += rss
            if service.name == "api":
                self.api_series.append((time.monotonic(), rss))
                children = [rss_mib(child) for child in descendants(pid)]
                self.children_peak_mib = max(self.children_peak_mib, sum(children))
                self.child_peak_mib = max([self.child_peak_mib, *children])
                total += sum(children)
        self.total_peak_mib = max(self.total_peak_mib, total)
        self.samples += 1


def rss_mib(pid: int) -> float:
    """The process's resident memory now (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            frontier += children
    return found


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def poll_until_terminal(
    stack: ChaosStack, user: str, queue: Future[str], log: StatusLog, deadline: float
) -> None:
    """One client following one queue as its owner, once a second, until it ends."""
    queue_id = queue.result()
    url = stack.api + STATUS_PATH.format(queue_id=queue_id)
    headers = {"Authorization": f"Bearer {stack.token(user)}"}
    with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                response = client.get(url, headers=headers)
            except httpx.HTTPError as error:
                log.record(started, None, f"{type(error).__name__}: {error}")
            else:
                log.record(started, response)
                if response.status_code == 200 and response.json()["status"] in TERMINAL:
                    return
            time.sleep(max(0.0, POLL_INTERVAL_SECONDS - (time.perf_counter() - started)))


def follow_stream(stack: ChaosStack, user: str, queue: Future[str], deadline: float) -> StreamResult:
    """One client holding the queue's SSE stream until the server ends it."""
    result = StreamResult(queue.result())
    url = stack.api + STATUS_PATH.format(queue_id=result.queue_id) + "/stream"
    headers = {"Authorization": f"Bearer {stack.token(user)}", "Accept": "text/event-stream"}
    try:
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client, client.stream("GET", url, headers=headers) as response:
            if response.status_code != 200:
                result.error = f"stream answered {response.status_code}"
                return result
            for event, data, _ in server_sent_events(response.iter_lines()):
                if time.monotonic() > deadline:
                    result.error = "the stream had not ended by the deadline"
                    return result
                payload = json.loads(data)
                if event == "timeline":
                    result.timeline.append((payload["event"], payload.get("step")))
                elif event == "status":
                    result.statuses += 1
                    if payload["status"] in TERMINAL:
                        result.terminal = payload["status"]
    except httpx.HTTPError as error:
        result.error = f"{type(error).__name__}: {error}"
    return result


def late_growth(series: list[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    """The API's peak RSS in the first and in the second half of ``start..end``."""
    middle = (start + end) / 2
    early = [rss for moment, rss in series if start <= moment < middle]
    late = [rss for moment, rss in series if middle <= moment <= end]
    return (max(early, default=0.0), max(late, default=0.0))


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    tutors, pollers, streams = (5, 20, 5) if reduced else (50, 200, 50)
    videos = tutors * VIDEOS_PER_TUTOR
    clips = lecture_clips(workdir / "clips", videos)
    owners = [f"load-tutor-{i:02d}" for i in range(tutors) for _ in range(VIDEOS_PER_TUTOR)]
    started = time.time()
    log = StatusLog()
    problems: list[str] = []
    upload_codes: Counter[int] = Counter()
    upload_ms: list[float] = []
    upload_lock = threading.Lock()
    # like real QStash without flow control: every due message is delivered at once (the local server
    # otherwise caps itself at 16, and vidpipe's flow-control keys would hold them at QStash), so the
    # API's own step limit is what bounds the work (flow control has its own scenario: flow_control.py)
    stack = ChaosStack(url, workdir, steps="pipeline", env={"VIDPIPE_FLOW_CONTROL": "false"},
                       service_env={"qstash": {"LOCAL_QSTASH_CONCURRENCY": str(QSTASH_CONCURRENCY)}})
    with stack:
        stack.wait_models_ready()
        sampler = MemorySampler(stack)
        sampler.sample()
        idle_api_mib = rss_mib(stack.pid("api") or 0)
        sampler.start()
        queues: list[Future[str]] = [Future() for _ in range(videos)]
        barrier = threading.Barrier(videos)

        def upload(index: int) -> None:
            with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
                barrier.wait()
                began = time.perf_counter()
                try:
                    response = stack.upload(client, owners[index], clips[index])
                except httpx.HTTPError as error:
                    with upload_lock:
                        upload_codes[0] += 1
                    queues[index].set_exception(RuntimeError(f"upload {index} got no answer: {error!r}"))
                    return
                with upload_lock:
                    upload_ms.append((time.perf_counter() - began) * 1000)
                    upload_codes[response.status_code] += 1
                if response.status_code != 202:
                    queues[index].set_exception(RuntimeError(f"upload {index}: {response.status_code} {response.text[:200]}"))
                    return
                queues[index].set_result(response.json()["queue_id"])

        deadline = time.monotonic() + (240 if reduced else 1500)
        workers = videos + pollers + streams
        with ThreadPoolExecutor(workers, thread_name_prefix="load") as pool:
            first_upload = time.monotonic()
            uploads = [pool.submit(upload, i) for i in range(videos)]
            polls = [pool.submit(poll_until_terminal, stack, owners[i % videos], queues[i % videos], log, deadline)
                     for i in range(pollers)]
            sse = [pool.submit(follow_stream, stack, owners[i % videos], queues[i % videos], deadline)
                   for i in range(streams)]
            for future in uploads:
                future.result()
            queue_ids = [q.result() for q in queues if q.exception() is None]
            all_ended = stack.wait_terminal(queue_ids, timeout=max(1.0, deadline - time.monotonic()))
            finished = time.monotonic()
            stream_results = [_outcome(f, problems) for f in sse]
            for future in polls:
                _outcome(future, problems)
        sampler.halt.set()
        sampler.join()
        early_mib, late_mib = late_growth(sampler.api_series, first_upload, finished)
        peaks = stack.peak_rss_mib()

    if not all_ended:
        problems.append(f"not every queue ended within the deadline ({len(queue_ids)} queues)")
    if len(queue_ids) != videos:
        problems.append(f"{videos - len(queue_ids)} of {videos} uploads were not accepted: {dict(upload_codes)}")
    if log.failures:
        problems.append(f"{len(log.failures)} status requests failed, e.g. {log.failures[:3]}")
    for result in stream_results:
        if result is None:
            continue
        if result.error or result.terminal is None:
            problems.append(f"stream of {result.queue_id} did not see the end: {result.error or 'no terminal status'}")
        elif (why := result.order_problem()) is not None:
            problems.append(f"stream of {result.queue_id}: {why}")
    api_peak = peaks.get("api", 0.0)
    if api_peak > API_PEAK_RSS_LIMIT_MIB:
        problems.append(f"the API's peak RSS {api_peak} MiB is over the {API_PEAK_RSS_LIMIT_MIB:.0f} MiB bound")
    if late_mib > early_mib * LATE_GROWTH_FACTOR + LATE_GROWTH_SLACK_MIB:
        problems.append(
            f"the API's memory grew during the run: peak {early_mib:.0f} MiB in the first half, "
            f"{late_mib:.0f} MiB in the second"
        )

    minutes = (finished - first_upload) / 60
    row = stack.check(started)
    seen_terminal = sum(1 for r in stream_results if r is not None and r.terminal)
    row.update(
        scenario=NAME,
        server_errors=sum(n for code, n in log.codes.items() if code >= 500)
        + sum(n for code, n in upload_codes.items() if code >= 500),
        recovery_seconds=round(finished - first_upload, 2),
        details={
            "tutors": tutors,
            "videos": videos,
            "pollers": pollers,
            "sse_streams": streams,
            "status_requests": sum(log.codes.values()),
            "status_codes": {str(k): v for k, v in sorted(log.codes.items())},
            "status_failed": len(log.failures),
            "status_p50_ms": round(percentile(log.latencies_ms, 0.50), 1),
            "status_p95_ms": round(percentile(log.latencies_ms, 0.95), 1),
            "status_p99_ms": round(percentile(log.latencies_ms, 0.99), 1),
            "status_max_ms": round(max(log.latencies_ms, default=0.0), 1),
            "status_mean_ms": round(statistics.fmean(log.latencies_ms), 1) if log.latencies_ms else 0.0,
            "upload_codes": {str(k): v for k, v in sorted(upload_codes.items())},
            "upload_p99_ms": round(percentile(upload_ms, 0.99), 1),
            "streams_saw_terminal": seen_terminal,
            "stream_status_events": sum(r.statuses for r in stream_results if r is not None),
            "minutes_to_finish": round(minutes, 2),
            "queues_per_minute": round(len(queue_ids) / minutes, 1) if minutes else 0.0,
            "peak_rss_mib": peaks,
            "api_idle_rss_mib": round(idle_api_mib, 1),
            "api_rss_first_half_peak_mib": round(early_mib, 1),
            "api_rss_second_half_peak_mib": round(late_mib, 1),
            "api_children_peak_rss_mib": round(sampler.children_peak_mib, 1),
            "largest_child_peak_rss_mib": round(sampler.child_peak_mib, 1),
            "total_peak_rss_mib": round(sampler.total_peak_mib, 1),
            "api_peak_rss_limit_mib": API_PEAK_RSS_LIMIT_MIB,
            "rss_samples": sampler.samples,
        },
        problems=problems,
    )
    return row


def _outcome(future: Future[Any], problems: list[str]) -> Any:
    """A client thread's result; its crash becomes a problem instead of ending the scenario."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - reported in the row
        problems.append(f"a client crashed: {error!r}")
        return None

