"""Scenario *Postgres restart*: the database restarts while queues run and tutors poll.

The scenario brings its own Postgres server (:class:`~bench.chaos.private_postgres.PrivatePostgres`:
restarting the machine's shared cluster would break everyone else's tests), runs
the stack on it with simulated 1 s steps, and in each round uploads a batch of
queues (30 in the full run, 6 reduced) and restarts Postgres while they run:
``pg_ctlcluster restart -m fast`` (clean shutdown), ``restart -m immediate``
(a crash: the start runs WAL recovery) and, for an outage longer than the
connection pool's 5 s wait, ``stop -m immediate`` held for
:data:`LONG_OUTAGE_SECONDS` then ``start``. The reduced form (``make test``)
runs only a held crash (:data:`HELD_OUTAGE_SECONDS`), so the outage is certain
to be seen.

All the while public clients keep going: uploaders (multipart, each with an
``Idempotency-Key`` they reuse when they retry a 503), pollers of the status,
list and audit-trail endpoints (the last reads the event store, not the read model), server-sent-event streams, and a ``/readyz`` probe. Every
answer is recorded. The promises checked:

- during the outage the public API answers 503 with ``Retry-After`` and a JSON
  ``{"error"}``: ``server_errors`` counts every other 5xx (and a 503 without
  ``Retry-After``); a request that hangs past the client timeout or drops the
  connection is a problem; so is a 4xx (every request the clients send is valid);
- ``/readyz`` says 503 while the database is down (held outage) and 200 after;
- nothing is restarted but Postgres: the step webhooks (QStash redelivers the
  deliveries answered 503), the dispatcher and the projection followers
  reconnect on their own, so every queue ends (the status endpoint, which reads
  the API's own projection, must show every queue terminal: a follower that
  stayed broken would leave them ``processing`` there) and the shared
  invariants hold (:meth:`~bench.chaos.harness.ChaosStack.check`);
- an upload retried with its ``Idempotency-Key`` after a 503 ends with 202.

``recovery_seconds`` is the worst round's time from the restart command (for a
held outage: the start command) returning until both the status endpoint
answered 200 again and every queue uploaded so far was terminal on the status
endpoint; ``details.rounds`` lists both times for each round.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import STATUS_PATH, TERMINAL, UPLOAD_PATH, ChaosStack
from bench.chaos.private_postgres import PrivatePostgres, ShutdownMode
from projections.database import DatabaseUrl
from projections.views import open_view

NAME = "Postgres restart"
OWN_DATABASE = True  # bench.chaos runs it as run(None, workdir, reduced=...): it brings its own server

CLIENT_TIMEOUT_SECONDS = 20.0
"""A public request not answered within this is a hung request (a problem)."""
HELD_OUTAGE_SECONDS = 8.0
"""How long the reduced run's held outage keeps Postgres down (longer than the pool's 5 s connection wait)."""
LONG_OUTAGE_SECONDS = 20.0
"""The full run's longest outage: steps finishing meanwhile cannot record it, and are answered 503."""
ROUND_TIMEOUT_SECONDS = 120.0
STEP_SECONDS = "1"
LIST_PATH = "/api/video-processing/queue"
STREAM_PATH = STATUS_PATH + "/stream"
EVENTS_PATH = STATUS_PATH + "/events"


@dataclass(frozen=True)
class Fault:
    """One restart of the database: the shutdown mode, and how long it stays down (0: a plain restart)."""

    mode: ShutdownMode
    hold_seconds: float = 0.0

    @property
    def label(self) -> str:
        if self.hold_seconds:
            return f"stop -m {self.mode}, {self.hold_seconds:.0f}s down, start"
        return f"restart -m {self.mode}"


FULL_FAULTS = (Fault("fast"), Fault("immediate"), Fault("immediate", LONG_OUTAGE_SECONDS))
REDUCED_FAULTS = (Fault("immediate", HELD_OUTAGE_SECONDS),)


@dataclass(frozen=True)
class Answer:
    """One public request and what came back (status 0: no answer at all)."""

    at: float
    kind: str
    status: int
    retry_after: str | None
    error: str | None
    note: str = ""

    @property
    def server_error(self) -> bool:
        """A 5xx the promise forbids: anything but 503 with Retry-After and a message.

        ``/readyz`` answers 503 with its own body (which check failed) by design.
        """
        if self.status == 503 and self.kind == "readyz":
            return False
        if self.status == 503:
            return not (self.retry_after and self.error)
        return self.status >= 500


def fake_video(seed: int) -> bytes:
    """Distinct bytes an upload accepts as MP4 (the steps are simulated, so no decoder reads them)."""
    return b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + os.urandom(2048) + seed.to_bytes(8, "big")


class PublicClients:
    """Tutors using the public API throughout: uploads, polling, streams, readiness probes."""

    def __init__(self, stack: ChaosStack, *, uploaders: int = 2, pollers: int = 2, streamers: int = 2) -> None:
        self.stack = stack
        self.answers: list[Answer] = []
        self.queues: dict[str, str] = {}  # queue id -> owner
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.uploads_given_up: list[str] = []
        self.streams: Counter[str] = Counter()
        self._counter = 0
        self._tokens: dict[str, str] = {}
        self._threads = [
            *(threading.Thread(target=self._uploader, name=f"uploader-{i}") for i in range(uploaders)),
            *(threading.Thread(target=self._poller, name=f"poller-{i}") for i in range(pollers)),
            *(threading.Thread(target=self._streamer, name=f"streamer-{i}") for i in range(streamers)),
            threading.Thread(target=self._prober, name="readyz"),
        ]

    # ------------------------------------------------------------ bookkeeping
    def token(self, owner: str) -> str:
        with self.lock:
            if owner not in self._tokens:
                self._tokens[owner] = self.stack.token(owner)
            return self._tokens[owner]

    def auth(self, owner: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(owner)}"}

    def record(self, kind: str, response: httpx.Response | None, note: str = "") -> Answer:
        if response is None:
            answer = Answer(time.monotonic(), kind, 0, None, None, note)
        else:
            error = None
            if response.status_code >= 400:
                try:
                    body = json.loads(response.content)
                    error = body.get("error") if isinstance(body, dict) else None
                except ValueError:
                    error = None
            answer = Answer(time.monotonic(), kind, response.status_code,
                            response.headers.get("retry-after"), error,
                            note or (response.text[:160] if response.status_code >= 400 else ""))
        with self.lock:
            self.answers.append(answer)
        return answer

    def send(self, kind: str, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TimeoutException as error:
            self.record(kind, None, f"hung: no answer within {CLIENT_TIMEOUT_SECONDS:.0f}s ({error!r})")
            return None
        except httpx.HTTPError as error:
            self.record(kind, None, f"no answer: {error!r}")
            return None
        self.record(kind, response)
        return response

    def known(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.queues.items())

    # ------------------------------------------------------------ uploads
    def upload(self, client: httpx.Client, owner: str, *, deadline: float) -> str | None:
        """One tutor's upload, retried with the same Idempotency-Key after each 503 until ``deadline``."""
        with self.lock:
            self._counter += 1
            seed = self._counter
        body, key = fake_video(seed), f"upload-{seed}"
        while True:
            response = self.send("upload", client, "POST", self.stack.api + UPLOAD_PATH,
                                 headers={**self.auth(owner), "Idempotency-Key": key},
                                 files={"file": (f"lecture-{seed}.mp4", body, "video/mp4")})
            if response is not None and response.status_code == 202:
                queue_id = str(response.json()["queue_id"])
                with self.lock:
                    self.queues[queue_id] = owner
                return queue_id
            if time.monotonic() > deadline or (response is not None and response.status_code not in (409, 503)):
                self.uploads_given_up.append(f"{owner} {key}: {response.status_code if response else 'no answer'}")
                return None
            time.sleep(min(5.0, float((response.headers.get("retry-after") if response else None) or 1)))

    def upload_batch(self, count: int, round_no: int) -> list[str]:
        """``count`` tutors upload at once (the round's queues in flight)."""
        results: list[str | None] = [None] * count

        def one(i: int) -> None:
            with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
                results[i] = self.upload(client, f"tutor-r{round_no}-{i}", deadline=time.monotonic() + 60)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return [q for q in results if q]

    def _uploader(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                self.upload(client, f"tutor-{threading.current_thread().name}-{n}", deadline=time.monotonic() + 60)
                self.stop.wait(2.0)

    # ------------------------------------------------------------ reads
    def _poller(self) -> None:
        rng = random.Random(threading.current_thread().name)
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            while not self.stop.is_set():
                known = self.known()
                if known:
                    queue_id, owner = rng.choice(known)
                    self.send("status", client, "GET", self.stack.api + STATUS_PATH.format(queue_id=queue_id),
                              headers=self.auth(owner))
                    self.send("list", client, "GET", self.stack.api + LIST_PATH, headers=self.auth(owner))
                    self.send("events", client, "GET", self.stack.api + EVENTS_PATH.format(queue_id=queue_id),
                              headers=self.auth(owner))
                self.stop.wait(0.1)

    def _streamer(self) -> None:
        """Follow one queue's server-sent events to its end, then another's."""
        rng = random.Random(threading.current_thread().name)
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            while not self.stop.is_set():
                known = self.known()
                if not known:
                    self.stop.wait(0.2)
                    continue
                queue_id, owner = rng.choice(known[-10:])
                self.follow(client, queue_id, owner)
                self.stop.wait(0.2)

    def follow(self, client: httpx.Client, queue_id: str, owner: str) -> None:
        url = self.stack.api + STREAM_PATH.format(queue_id=queue_id)
        last_status = None
        try:
            with client.stream("GET", url, headers=self.auth(owner)) as response:
                if response.status_code != 200:
                    response.read()
                    self.record("stream", response)
                    return
                self.record("stream", response)
                for line in response.iter_lines():
                    if line.startswith("data:") and '"status"' in line:
                        last_status = json.loads(line[5:]).get("status", last_status)
                    if self.stop.is_set():
                        self.streams["left open at the end"] += 1
                        return
        except httpx.TimeoutException as error:
            self.record("stream", None, f"hung: stream silent for {CLIENT_TIMEOUT_SECONDS:.0f}s ({error!r})")
            return
        except httpx.HTTPError as error:
            self.record("stream", None, f"stream broke: {error!r}")
            return
        self.streams["ended with the queue" if last_status in TERMINAL else f"ended at {last_status}"] += 1

    def _prober(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            while not self.stop.is_set():
                self.send("readyz", client, "GET", self.stack.api + "/readyz")
                self.stop.wait(0.5)

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> PublicClients:
        for thread in self._threads:
            thread.start()
        return self

    def finish(self) -> None:
        """Stop every client and wait for its request in flight (an upload may still start a queue)."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_SECONDS + 5)

    def __exit__(self, *exc: object) -> None:
        self.finish()


def wait_status_ok(stack: ChaosStack, clients: PublicClients, queue_id: str, owner: str, timeout: float) -> float | None:
    """Seconds until the status endpoint answers 200 for ``queue_id`` (None: never within ``timeout``)."""
    started = time.monotonic()
    with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        while time.monotonic() - started < timeout:
            response = clients.send("status", client, "GET", stack.api + STATUS_PATH.format(queue_id=queue_id),
                                    headers=clients.auth(owner))
            if response is not None and response.status_code == 200:
                return time.monotonic() - started
            time.sleep(0.1)
    return None


def wait_all_terminal(stack: ChaosStack, clients: PublicClients, timeout: float) -> tuple[float | None, list[str]]:
    """Seconds until every known queue is terminal on the status endpoint (the API's own projection).

    Returns ``(None, not_terminal)`` on timeout.
    """
    started = time.monotonic()
    pending = dict(clients.known())
    with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
        while pending:
            for queue_id, owner in list(pending.items()):
                response = clients.send("status", client, "GET", stack.api + STATUS_PATH.format(queue_id=queue_id),
                                        headers=clients.auth(owner))
                if response is not None and response.status_code == 200 and response.json()["status"] in TERMINAL:
                    del pending[queue_id]
            if not pending:
                break
            if time.monotonic() - started > timeout:
                return None, sorted(pending)
            time.sleep(1.0)  # a sweep a second: hammering the API would slow the recovery it measures
    return time.monotonic() - started, []


def inject(pg: PrivatePostgres, fault: Fault) -> tuple[float, float, float]:
    """Restart (or stop, hold, start) the database: ``(went_down, came_back, command_seconds)`` (monotonic)."""
    went_down = time.monotonic()
    if fault.hold_seconds:
        pg.stop(fault.mode)
        time.sleep(fault.hold_seconds)
        pg.start()
    else:
        pg.restart(fault.mode)
    came_back = time.monotonic()
    return went_down, came_back, came_back - went_down


def run(database_url: str | None, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    if database_url is not None:
        raise ValueError("the Postgres restart scenario brings its own server; call run(None, workdir, ...)")
    batch, faults = (6, REDUCED_FAULTS) if reduced else (30, FULL_FAULTS)
    started = time.time()
    rounds: list[dict[str, Any]] = []
    problems: list[str] = []
    outages: list[tuple[float, float]] = []
    with PrivatePostgres() as pg:
        stack = ChaosStack(pg.url, workdir, env={"VIDPIPE_SIMULATED_STEP_SECONDS": STEP_SECONDS})
        with stack, PublicClients(stack) as clients:
            for number, fault in enumerate(faults, 1):
                queue_ids = clients.upload_batch(batch, number)
                time.sleep(1.5)  # the first steps are running
                stack.log(f"round {number}: {fault.label} with {len(queue_ids)} queues just uploaded")
                went_down, came_back, command = inject(pg, fault)
                outages.append((went_down, came_back))
                stack.log(f"round {number}: Postgres is back after {command:.1f}s")
                first_ok = wait_status_ok(stack, clients, queue_ids[0], clients.queues[queue_ids[0]],
                                          ROUND_TIMEOUT_SECONDS) if queue_ids else None
                all_terminal, stuck = wait_all_terminal(stack, clients, ROUND_TIMEOUT_SECONDS)
                if first_ok is None:
                    problems.append(f"round {number} ({fault.label}): the status endpoint never answered 200 again")
                if all_terminal is None:
                    problems.append(f"round {number} ({fault.label}): {len(stuck)} queues never ended on the "
                                    f"status endpoint, e.g. {stuck[:3]}")
                rounds.append({
                    "fault": fault.label, "queues_uploaded": len(queue_ids), "command_seconds": round(command, 2),
                    "first_status_200_seconds": None if first_ok is None else round(first_ok, 2),
                    "all_terminal_seconds": None if all_terminal is None else round(all_terminal, 2),
                })
            clients.finish()
            final_ok, stuck = wait_all_terminal_in_log(stack, ROUND_TIMEOUT_SECONDS)
            if not final_ok:
                problems.append(f"{len(stuck)} queues in the event log never ended, e.g. {stuck[:3]}")
        row = stack.check(started)
    problems += judge(clients, outages, faults)
    answers = clients.answers
    server_errors = [a for a in answers if a.server_error]
    in_outage = [a for a in answers if during(a, outages)]
    recoveries = [max(r["first_status_200_seconds"] or 0, r["all_terminal_seconds"] or 0) for r in rounds]
    row.update(
        scenario=NAME,
        server_errors=len(server_errors),
        recovery_seconds=round(max(recoveries), 2) if recoveries else None,
        details={
            "rounds": rounds,
            "answers": {kind: dict(sorted(Counter(str(a.status) for a in answers if a.kind == kind).items()))
                        for kind in sorted({a.kind for a in answers})},
            "answers_from_outage_until_10s_after": dict(sorted(Counter(f"{a.kind} {a.status}" for a in in_outage).items())),
            "unavailable_with_retry_after": sum(1 for a in answers if a.status == 503 and a.retry_after and a.error),
            "readyz_503_during_outages": sum(1 for a in in_outage if a.kind == "readyz" and a.status == 503),
            "streams": dict(clients.streams),
            "step_deliveries_answered_503": step_deliveries_answered_503(workdir / "stack.log"),
            "uploads_given_up": clients.uploads_given_up[:5],
            "examples_of_server_errors": [f"{a.kind} {a.status} {a.note}" for a in server_errors[:5]],
        },
        problems=problems,
    )
    return row


def during(answer: Answer, outages: list[tuple[float, float]], grace: float = 10.0) -> bool:
    """Whether an answer came while the database was down or within ``grace`` s of coming back."""
    return any(down <= answer.at <= back + grace for down, back in outages)


def judge(clients: PublicClients, outages: list[tuple[float, float]], faults: tuple[Fault, ...]) -> list[str]:
    """The promises about public answers that ``server_errors`` does not count."""
    problems = []
    answers = clients.answers
    silent = [a for a in answers if a.status == 0]
    if silent:
        problems.append(f"{len(silent)} public requests got no answer, e.g. {silent[0].kind}: {silent[0].note}")
    refused = [a for a in answers if 400 <= a.status < 500]
    if refused:
        problems.append(f"{len(refused)} valid requests were refused with a 4xx, e.g. "
                        f"{refused[0].kind} {refused[0].status} {refused[0].note}")
    if clients.uploads_given_up:
        problems.append(f"{len(clients.uploads_given_up)} uploads never got 202 when retried with their "
                        f"Idempotency-Key, e.g. {clients.uploads_given_up[0]}")
    broken = {k: v for k, v in clients.streams.items() if k not in ("ended with the queue", "left open at the end")}
    if broken:
        problems.append(f"server-sent-event streams ended before their queue did: {broken}")
    for (down, back), fault in zip(outages, faults, strict=True):
        probes = [a for a in answers if a.kind == "readyz" and down <= a.at <= back]
        if fault.hold_seconds and not any(a.status == 503 for a in probes):
            problems.append(f"/readyz never said 503 during the outage ({fault.label}): "
                            f"{Counter(a.status for a in probes)}")
    last_ready = [a for a in answers if a.kind == "readyz"][-1:]
    if last_ready and last_ready[0].status != 200:
        problems.append(f"/readyz still said {last_ready[0].status} after the database came back")
    return problems


def wait_all_terminal_in_log(stack: ChaosStack, timeout: float) -> tuple[bool, list[str]]:
    """Every queue in the database (also any whose upload was answered 503) ended, read from the event log."""
    view = open_view(DatabaseUrl.parse(stack.database_url).event_store_env())
    try:
        queue_ids = [str(r["id"]) for r in view.fetchall("SELECT id FROM video_processing_queue")]
    finally:
        view.close()
    done = stack.wait_terminal(queue_ids, timeout)
    return done, [] if done else queue_ids


def step_deliveries_answered_503(log: Path) -> int:
    """Step deliveries the API answered 503 (database unreachable) before its shutdown, per QStash's log.

    QStash delivers each of them again after the ``Retry-After``; that every
    queue still completed proves the redeliveries did the work.
    """
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if "[stack] stopping api" in line:
            break
        if "failed message" in line and "/steps/" in line and "HTTP 503" in line:
            count += 1
    return count
