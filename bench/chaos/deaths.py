"""Scenario *process deaths*: the API/handler process SIGKILLed at random moments.

``queues`` tutors (30; reduced 5) each upload one distinct short lecture
(:func:`~bench.chaos.harness.lecture_clips`) over HTTP through the real
pipeline (ffmpeg, the reference Whisper and embedding servers, artifacts on
disk) while the API process — the step webhooks, the dispatcher and the
projection runners all live in it — keeps dying by ``SIGKILL``, which runs no
cleanup, two ways:

- **failpoints** (:mod:`handlers.failpoints`, ``VIDPIPE_FAILPOINTS``) kill it
  at the moments that matter: mid-upload (first chunk stored), after the
  upload is stored but before its queue exists, right after ``StepCompleted``
  is recorded but before QStash hears 200, in the dispatcher just before and
  just after publishing the next step (before the message is recorded), and
  inside a projection transaction before it commits. The reduced form arms
  each once (``name=@1``) and a restart leaves out those that have fired, so
  every kind happens exactly once, deterministically (also after the killing
  phase); the full form arms them with probabilities on every other (re)start
  until the killing phase is over (the lives in between are the killer's:
  with 30 tutors retrying at once, a life armed with the upload failpoints
  ends within a second of its start, and on a loaded machine, where a start
  takes 7–10 s, back-to-back armed lives kept the API down so long that
  QStash's 20 redeliveries, up to 30 s apart, ran out and steps were
  dead-lettered); the killer leaves an armed life
  :data:`ARMED_LIFE_EXTRA_SECONDS` longer, so the failpoints get their chance;
- **a killer thread** SIGKILLs the API 2–6 s (uniform, seeded :data:`SEED`)
  after it became *ready* — ``/healthz`` answers, which the server does only
  once its lifespan has started the followers — never while it is still
  starting (on a loaded machine importing the API alone takes seconds, and a
  clock counted from the process start killed it over and over before it
  could take a request). When the time is up and nothing is happening (no
  upload in flight, no step running, no ffmpeg), it waits up to
  :data:`WORK_WAIT_SECONDS` more for some work to interrupt, then kills
  anyway: mid-step, mid-upload, wherever it happens to be. A process that
  dies otherwise meanwhile (a failpoint) is not killed; the clock starts again
  when its successor is ready. It stops after :data:`KILLER_KILLS` kills, once
  every upload has its queue id.

A supervisor thread restarts the API whenever it is dead, as a container
platform would, and tells the cause of each death: the killer's own pid
record, or the line a failpoint writes to stderr just before the kill (an
unexplained death is a problem). Each tutor retries its upload with the *same*
``Idempotency-Key`` on connection errors, 503 and 409 ("a request with this
key is still running": the earlier request may have died with the process;
its claim on the key expires :data:`~api.uploads.CLAIM_TTL` after it stopped
renewing it), waiting any ``Retry-After``, until it gets a queue id, as the
progress page does; the retries are counted. For each killer kill the
details say what it interrupted: an upload in flight, a step running (by the
read model), ffmpeg running under the API.
QStash redelivers every step whose handler died (the stack sets 20 quick
redeliveries).

Besides the shared invariants (no step completed twice, every queue terminal,
projections equal to a rebuild, no artifact missing, no orphan ffmpeg — ffmpeg
dies with its parent), the scenario checks: exactly one queue per upload,
every tutor got the queue id their upload created, every queue completed (no
failure is expected: a death is not the video's fault).

``recovery_seconds``: from the last death (kill or failpoint) to the moment
every queue is terminal in the event log — how long the service takes to
finish everything once it is left alone (near 0 when every queue had ended
before the killing stopped).

Not an invariant but reported: ``storage_left_by_dead_requests``, the upload
files that requests dying mid-way left in storage (partial ``.incoming-*``
files, complete uploads whose queue was never started). They are garbage,
not lost data: no queue refers to them.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import ChaosStack, lecture_clips
from handlers.failpoints import ENV_VAR, NAMES
from projections.database import DatabaseUrl
from projections.views import open_view

NAME = "process deaths: API SIGKILLed mid-upload, mid-step, around publish, in projections"
SEED = 7
KILL_INTERVAL_SECONDS = (2.0, 6.0)
KILLER_KILLS = {True: 2, False: 10}  # reduced: full
ARMED_LIFE_EXTRA_SECONDS = 10.0
"""Full form: how much longer the killer leaves a life armed with failpoints (they get their chance first)."""
WORK_WAIT_SECONDS = 5.0
"""How long the killer, its time up, waits for an upload, a step or ffmpeg to interrupt before killing anyway."""
PROBABILITIES = {
    "upload.mid_upload": 0.15,
    "upload.after_store": 0.15,
    "step.after_completed": 0.1,
    "dispatcher.before_publish": 0.03,
    "dispatcher.after_publish": 0.03,
    "projection.in_transaction": 0.005,  # passed on every batch of every follower
}
FIRED = re.compile(r"vidpipe failpoint (\S+) fired: SIGKILL pid (\d+)")
UPLOAD_RETRY_PAUSE_SECONDS = 0.5
IDLE = "nothing of these (a publish, a projection, or idle)"
ENGLISH_ONLY = {"WHISPER_MULTILINGUAL": "false"}
"""The Whisper server holds tiny.en alone: the lectures are English, and the deaths do not depend on which model
transcribes (no multilingual model to load, no language detection per piece)."""


@dataclass
class Deaths:
    """What the killer and the supervisor saw: every death of the API, by cause."""

    stack: ChaosStack
    reduced: bool
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_cause: Counter[str] = field(default_factory=Counter)
    killed_pids: set[int] = field(default_factory=set)
    fired_pids: dict[int, str] = field(default_factory=dict)
    restarts: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    last_death: float = 0.0
    unexplained: list[int] = field(default_factory=list)
    interrupted: Counter[str] = field(default_factory=Counter)
    uploads_in_flight: Callable[[], bool] = lambda: False
    steps_running: Callable[[], bool] = lambda: False
    killing_over: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    ready_pid: int | None = None
    life_armed: bool = False
    """Whether the API's current life was started with failpoints armed."""
    """The API process that answers ``/healthz`` (set by whoever started it, once it answered)."""
    ready_changed: threading.Condition = field(default_factory=threading.Condition)
    killer_kills_wanted: int | None = None
    """How many kills the killer makes (:data:`KILLER_KILLS` by default)."""
    armed: frozenset[str] = NAMES
    """The failpoints armed (the reduced form: each once)."""
    idle_kills: int = 0
    """Killer kills that found no work within :data:`WORK_WAIT_SECONDS` and killed anyway."""

    def mark_ready(self, pid: int | None) -> None:
        """``pid`` answers ``/healthz``: the killer's clock for it starts now."""
        with self.ready_changed:
            self.ready_pid = pid
            self.ready_changed.notify_all()

    def wait_ready(self) -> int | None:
        """The pid of the API once it is ready and still alive; None when the scenario stops."""
        with self.ready_changed:
            while not self.stop.is_set():
                pid = self.ready_pid
                if pid is not None and self.stack.pid("api") == pid:
                    return pid
                self.ready_changed.wait(0.1)
        return None

    def _what_runs(self, pid: int) -> list[str]:
        """What a kill of ``pid`` interrupts: an upload in flight, a step running (by the read
        model), ffmpeg running under the API (started by any of its threads)."""
        found = ["an upload"] if self.uploads_in_flight() else []
        if self.steps_running():
            found.append("a step")
        names = []
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                names += [Path(f"/proc/{c}/comm").read_text().strip() for c in children.read_text().split()]
            except OSError:
                continue
        if any(name.startswith("ffmpeg") for name in names):  # the packaged binary's name is longer
            found.append("ffmpeg")
        return found or [IDLE]

    @property
    def killer_kills(self) -> int:
        return self.by_cause["killer"]

    def failpoints_env(self) -> str:
        """``VIDPIPE_FAILPOINTS`` for the next start of the API."""
        if self.reduced:  # each kind once, also after the killing phase: those that fired are left out
            return ",".join(f"{name}=@1" for name in sorted(self.armed) if not self.by_cause[name])
        if self.killing_over.is_set() or self.restarts % 2:  # every other life is the killer's
            return ""
        return ",".join(f"{name}={p}" for name, p in PROBABILITIES.items() if name in self.armed)

    def relay(self, line: str, out: Callable[[str], None]) -> None:
        """The stack's log relay, watching for the failpoints' last words."""
        found = FIRED.search(line)
        if found:
            with self.lock:
                self.fired_pids[int(found.group(2))] = found.group(1)
        out(line)

    def cause_of(self, pid: int) -> str | None:
        """Why ``pid`` died: ``killer``, a failpoint's name, or None (the relay may lag a moment)."""
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            with self.lock:
                if pid in self.killed_pids:
                    return "killer"
                if pid in self.fired_pids:
                    return self.fired_pids[pid]
            time.sleep(0.05)
        return None

    # ------------------------------------------------------------ threads
    def supervise(self) -> None:
        """Restart the API whenever it is dead (also when it dies while starting)."""
        api = self.stack.stack.service("api")
        while not self.stop.is_set():
            process = api.process
            if process is None or process.poll() is None:
                self.stop.wait(0.1)
                continue
            self.mark_ready(None)
            with self.lock:
                self.last_death = time.monotonic()
            cause = self.cause_of(process.pid)
            with self.lock:
                if cause is None:
                    self.unexplained.append(process.pid)
                    self.stack.log(f"api pid {process.pid} died unexplained (exit {process.returncode})")
                self.by_cause[cause or "unexplained"] += 1
                api.env[ENV_VAR] = self.failpoints_env()
                self.life_armed = bool(api.env[ENV_VAR])
                self.restarts += 1
            try:
                self.restart_seconds.append(self.stack.restart("api"))
            except RuntimeError as error:  # it died again while starting (a failpoint): next round
                self.stack.log(f"api restart failed: {error}")
            else:
                self.mark_ready(self.stack.pid("api"))

    def kill_at_random(self, uploads_done: threading.Event) -> None:
        """SIGKILL the API 2–6 s after it became ready each time (waiting a little for work to
        interrupt), until enough kills and every upload is in."""
        rng = random.Random(SEED)
        wanted = KILLER_KILLS[self.reduced] if self.killer_kills_wanted is None else self.killer_kills_wanted
        while not self.stop.is_set():
            if self.killer_kills >= wanted and (uploads_done.is_set() or wanted == 0):
                break
            pause = rng.uniform(*KILL_INTERVAL_SECONDS)
            pid = self.wait_ready()
            if not self.reduced and self.life_armed:
                pause += ARMED_LIFE_EXTRA_SECONDS
            if pid is None or self.stop.wait(pause):
                return
            found = self._what_runs(pid)
            work_deadline = time.monotonic() + WORK_WAIT_SECONDS
            while found == [IDLE] and time.monotonic() < work_deadline and self.stack.pid("api") == pid:
                if self.stop.wait(0.2):
                    return
                found = self._what_runs(pid)
            with self.lock:
                if self.stack.pid("api") != pid:  # it died otherwise meanwhile: count again from its successor
                    continue
                self.killed_pids.add(pid)
                self.interrupted.update(found)
                self.idle_kills += found == [IDLE]
            self.stack.kill("api")
        self.killing_over.set()
        self.stack.log("killing phase over")


@dataclass
class Tutor:
    """One tutor's upload, retried with the same Idempotency-Key until it has a queue id."""

    user: str
    video: Path
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    queue_id: str | None = None
    retries: int = 0
    in_flight: bool = False
    answers: Counter[str] = field(default_factory=Counter)

    def upload(self, stack: ChaosStack, deadline: float) -> None:
        """Upload until a 202; after 409/503 wait the answer's ``Retry-After``, after a dropped connection a moment."""
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < deadline:
                pause = UPLOAD_RETRY_PAUSE_SECONDS
                self.in_flight = True
                try:
                    response = stack.upload(client, self.user, self.video, key=self.key)
                except httpx.TransportError as error:  # the process died under the request
                    self.answers[type(error).__name__] += 1
                else:
                    self.answers[str(response.status_code)] += 1
                    if response.status_code == 202:
                        self.queue_id = response.json()["queue_id"]
                        return
                    if response.status_code not in (409, 503):
                        return  # anything else is final for a client; reported as a problem
                    pause = float(response.headers.get("Retry-After", pause))
                finally:
                    self.in_flight = False
                self.retries += 1
                time.sleep(pause)


def files_left_by_dead_requests(storage_dir: Path, sources: set[str]) -> dict[str, list[str]]:
    """Uploaded files (storage keys) no queue uses: partial ones (``.incoming-*``, a request died
    while the bytes arrived) and complete ones whose path is none of ``sources`` (the queues'
    source uploads: the request died before its queue was started)."""
    files = sorted(p.relative_to(storage_dir).as_posix() for p in storage_dir.glob("*/uploads/*") if p.is_file())
    partial = [key for key in files if key.rsplit("/", 1)[-1].startswith(".incoming-")]
    unused = [key for key in files if key not in partial and key not in sources]
    return {"partial_files": partial, "unreferenced_uploads": unused}


def storage_left_by_dead_requests(stack: ChaosStack, queue_ids: list[str]) -> dict[str, int]:
    """How many files :func:`files_left_by_dead_requests` finds, by kind."""
    app = stack.open_app()
    try:
        sources = {app.get_queue(q).options.get("source") for q in queue_ids}
    finally:
        app.close()
    left = files_left_by_dead_requests(stack.storage_dir, {s for s in sources if s})
    return {kind: len(keys) for kind, keys in left.items()}


def run(
    url: str,
    workdir: Path,
    *,
    reduced: bool,
    count: int | None = None,
    failpoints: frozenset[str] = NAMES,
    killer_kills: int | None = None,
) -> dict[str, Any]:
    """The scenario: ``count`` lectures (5 reduced, 30 full), ``failpoints`` armed (all by default;
    each once when reduced), ``killer_kills`` kills by the killer (:data:`KILLER_KILLS`)."""
    count = count or (5 if reduced else 30)
    clips = lecture_clips(workdir / "clips", count)
    started = time.time()
    stack = ChaosStack(url, workdir, steps="pipeline", service_env={"whisper": ENGLISH_ONLY})
    deaths = Deaths(stack, reduced, killer_kills_wanted=killer_kills, armed=frozenset(failpoints))
    stack.stack.service("api").env[ENV_VAR] = deaths.failpoints_env()
    deaths.life_armed = bool(deaths.failpoints_env())
    out = stack.stack.out
    stack.stack.out = lambda line: deaths.relay(line, out)
    tutors = [Tutor(f"tutor-{i}", clip) for i, clip in enumerate(clips)]
    deaths.uploads_in_flight = lambda: any(t.in_flight for t in tutors)
    view = open_view(DatabaseUrl.parse(url).event_store_env())
    deaths.steps_running = lambda: view.fetchone(
        "SELECT 1 AS found FROM video_processing_steps WHERE status = 'running' LIMIT 1") is not None
    problems: list[str] = []
    with stack:
        stack.wait_models_ready()
        deaths.mark_ready(stack.pid("api"))  # the stack started it and waited for /healthz
        uploads_done = threading.Event()
        threads = [
            threading.Thread(target=deaths.supervise, name="supervisor", daemon=True),
            threading.Thread(target=deaths.kill_at_random, args=(uploads_done,), name="killer", daemon=True),
        ]
        for thread in threads:
            thread.start()
        first_upload = time.monotonic()
        with ThreadPoolExecutor(len(tutors)) as pool:
            list(pool.map(lambda t: t.upload(stack, first_upload + (240 if reduced else 900)), tutors))
        uploads_done.set()
        uploaded = [t.queue_id for t in tutors if t.queue_id]
        deaths.killing_over.wait(120)
        finished = stack.wait_terminal(uploaded, timeout=240 if reduced else 900)
        all_terminal = time.monotonic()
        deaths.stop.set()
        for thread in threads:
            thread.join(30)
        if not deaths.killing_over.is_set():
            problems.append("the killer did not finish its kills within 120 s of the last upload")
        if not finished:
            problems.append("not every queue ended within the time limit (a queue is stuck)")
        peak = stack.peak_rss_mib()
    view.close()
    row = stack.check(started)
    left_over = storage_left_by_dead_requests(stack, uploaded)
    for tutor in tutors:
        if tutor.queue_id is None:
            problems.append(f"{tutor.user} got no queue id for their upload: answers {dict(tutor.answers)}")
    if len(set(uploaded)) != len(uploaded):
        problems.append("two uploads were answered with the same queue id")
    if row["queues"] != len(tutors):
        problems.append(f"{row['queues']} queues for {len(tutors)} uploads")
    if row["completed"] != row["queues"]:
        problems.append(f"only {row['completed']} of {row['queues']} queues completed")
    if deaths.unexplained:
        problems.append(f"{len(deaths.unexplained)} deaths of the API with no known cause")
    server_errors = sum(n for t in tutors for code, n in t.answers.items() if code.isdigit() and int(code) >= 500
                        and code != "503")
    answers: Counter[str] = Counter()
    for tutor in tutors:
        answers.update(tutor.answers)
    row.update(
        scenario=NAME,
        server_errors=server_errors,
        recovery_seconds=round(all_terminal - deaths.last_death, 2) if deaths.last_death else None,
        details={
            "seed": SEED,
            "deaths_by_cause": dict(sorted(deaths.by_cause.items())),
            "deaths": sum(deaths.by_cause.values()),
            "killer_kills_interrupted": dict(sorted(deaths.interrupted.items())),
            "killer_idle_kills": deaths.idle_kills,
            "restarts": deaths.restarts,
            "restart_seconds_max": round(max(deaths.restart_seconds, default=0.0), 2),
            "upload_retries": sum(t.retries for t in tutors),
            "upload_answers": dict(sorted(answers.items())),
            "seconds_to_finish": round(all_terminal - first_upload, 2),
            "storage_left_by_dead_requests": left_over,
            "failpoints": (f"each once (@1), left out once fired: {', '.join(sorted(failpoints))}" if reduced
                           else {k: p for k, p in PROBABILITIES.items() if k in failpoints}),
            "peak_rss_mib": peak,
        },
        problems=problems,
    )
    return row
