"""Scenario *long outage*: Postgres down for a minute; every answer comes within 6 s, a 503 with ``Retry-After``.

Before the outage gate (:mod:`projections.outage_gate`) a request that
reached the event store during an outage waited the library's 10 retries ×
the pool's 5 s: ~52 s before its 503, so a proxy or a client with a 30 s
timeout saw a hang. The scenario brings its own Postgres
(:class:`~bench.chaos.private_postgres.PrivatePostgres`), runs the stack on it
with simulated 1 s steps, uploads a batch of queues (10; reduced 4), then stops
Postgres with ``-m immediate`` (a crash) and keeps it down
:data:`OUTAGE_SECONDS` (60; reduced :data:`REDUCED_OUTAGE_SECONDS`), then
starts it again.

Public clients (those of :mod:`bench.chaos.postgres_restart`: uploaders that
retry a 503 with their ``Idempotency-Key``, pollers of status, list and audit
trail — the last reads the event store —, SSE streams, a ``/readyz`` probe;
plus a canceller, whose ``DELETE`` writes to the event store) run throughout,
and each request's duration is recorded. Promises checked:

- every request sent while the database was down was answered within
  :data:`BOUND_SECONDS` (6 s; the reduced form reports the times and does
  not judge them: no timing assertions in ``make test``), ``503`` with
  ``Retry-After`` and an ``error``
  (``/readyz``: 503 naming the database) — never a hang, a dropped
  connection or another 5xx;
- after the start, the service recovers without a restart: the status
  endpoint answers 200, every queue ends, uploads retried with their key got
  202, and the shared invariants hold.

``recovery_seconds``: from the start command returning until every queue had
ended on the status endpoint. ``details.durations`` gives the answers' times
during the outage by kind (count, p50, max).
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.chaos.harness import STATUS_PATH, ChaosStack
from bench.chaos.postgres_restart import (
    CLIENT_TIMEOUT_SECONDS,
    STEP_SECONDS,
    PublicClients,
    wait_all_terminal,
    wait_all_terminal_in_log,
    wait_status_ok,
)
from bench.chaos.private_postgres import PrivatePostgres

NAME = "long outage: Postgres down 60 s while tutors upload, poll, follow, cancel"
OWN_DATABASE = True

OUTAGE_SECONDS = 60.0
REDUCED_OUTAGE_SECONDS = 12.0
BOUND_SECONDS = 6.0
"""The longest any answer may take while the database is down."""
UPLOAD_DEADLINE_SECONDS = 180.0
"""How long an uploader keeps retrying a 503 with its key (longer than the outage)."""
ROUND_TIMEOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Timed:
    kind: str
    status: int
    sent: float
    seconds: float
    retry_after: str | None


class TimedClients(PublicClients):
    """The Postgres-restart scenario's clients, each request timed; uploads retried past the outage; a canceller."""

    def __init__(self, stack: ChaosStack) -> None:
        super().__init__(stack, uploaders=2, pollers=3, streamers=2)
        self.timed: list[Timed] = []
        self._threads.append(threading.Thread(target=self._canceller, name="canceller"))

    def send(self, kind: str, client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        sent = time.monotonic()
        response = super().send(kind, client, method, url, **kwargs)
        timed = Timed(kind, response.status_code if response is not None else 0, sent, time.monotonic() - sent,
                      response.headers.get("retry-after") if response is not None else None)
        with self.lock:
            self.timed.append(timed)
        return response

    def _uploader(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                owner = f"tutor-{threading.current_thread().name}-{n}"
                self.upload(client, owner, deadline=time.monotonic() + UPLOAD_DEADLINE_SECONDS)
                self.stop.wait(2.0)

    def _canceller(self) -> None:
        """Cancel a recent queue now and then: a write to the event store (409 once it has completed)."""
        rng = random.Random("canceller")
        with httpx.Client(timeout=CLIENT_TIMEOUT_SECONDS) as client:
            while not self.stop.wait(1.5):
                known = self.known()
                if known:
                    queue_id, owner = rng.choice(known[-5:])
                    self.send("cancel", client, "DELETE", self.stack.api + STATUS_PATH.format(queue_id=queue_id),
                              headers=self.auth(owner))


def run(database_url: str | None, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    if database_url is not None:
        raise ValueError("the long-outage scenario brings its own server; call run(None, workdir, ...)")
    batch, outage = (4, REDUCED_OUTAGE_SECONDS) if reduced else (10, OUTAGE_SECONDS)
    started = time.time()
    problems: list[str] = []
    with PrivatePostgres() as pg:
        stack = ChaosStack(pg.url, workdir, env={"VIDPIPE_SIMULATED_STEP_SECONDS": STEP_SECONDS})
        with stack, TimedClients(stack) as clients:
            queue_ids = clients.upload_batch(batch, 1)
            time.sleep(1.5)  # the first steps are running
            stack.log(f"stopping Postgres for {outage:.0f} s with {len(queue_ids)} queues just uploaded")
            went_down = time.monotonic()
            pg.stop("immediate")
            time.sleep(outage)
            started_again = time.monotonic()
            pg.start()
            came_back = time.monotonic()
            stack.log(f"Postgres is back after {came_back - went_down:.1f} s")
            first_ok = wait_status_ok(stack, clients, queue_ids[0], clients.queues[queue_ids[0]],
                                      ROUND_TIMEOUT_SECONDS) if queue_ids else None
            all_terminal, stuck = wait_all_terminal(stack, clients, ROUND_TIMEOUT_SECONDS)
            clients.finish()
            final_ok, stuck_in_log = wait_all_terminal_in_log(stack, ROUND_TIMEOUT_SECONDS)
        row = stack.check(started)
    sent_down = [t for t in clients.timed if went_down <= t.sent <= started_again]
    down = [t for t in sent_down if went_down + 0.5 <= t.sent and t.sent + t.seconds <= started_again]
    problems += judge(clients, down, sent_down, timed=not reduced)
    if first_ok is None:
        problems.append("the status endpoint never answered 200 again")
    if all_terminal is None:
        problems.append(f"{len(stuck)} queues never ended on the status endpoint, e.g. {stuck[:3]}")
    if not final_ok:
        problems.append(f"{len(stuck_in_log)} queues in the event log never ended, e.g. {stuck_in_log[:3]}")
    slow = [t for t in sent_down if t.seconds > BOUND_SECONDS]
    server_errors = [a for a in clients.answers if a.server_error]
    row.update(
        scenario=NAME,
        server_errors=len(server_errors),
        recovery_seconds=None if all_terminal is None else round(all_terminal + (first_ok or 0), 2),
        details={
            "outage_seconds": round(started_again - went_down, 1),
            "answers_during_outage": dict(sorted(Counter(f"{t.kind} {t.status}" for t in down).items())),
            "durations_during_outage": durations(down),
            "slowest_sent_during_outage_seconds": round(max((t.seconds for t in sent_down), default=0.0), 2),
            "over_bound_sent_during_outage": len(slow),
            "first_status_200_after_start_seconds": None if first_ok is None else round(first_ok, 2),
            "all_terminal_after_start_seconds": None if all_terminal is None else round(all_terminal, 2),
            "answers": dict(sorted(Counter(f"{t.kind} {t.status}" for t in clients.timed).items())),
            "uploads_given_up": clients.uploads_given_up[:5],
            "streams": dict(clients.streams),
            "examples_of_server_errors": [f"{a.kind} {a.status} {a.note}" for a in server_errors[:5]],
        },
        problems=problems,
    )
    return row


def durations(answers: list[Timed]) -> dict[str, dict[str, float]]:
    """Per kind: how many, median and longest seconds."""
    by_kind: dict[str, list[float]] = defaultdict(list)
    for answer in answers:
        by_kind[answer.kind].append(answer.seconds)
    return {kind: {"count": len(s), "p50": round(statistics.median(s), 2), "max": round(max(s), 2)}
            for kind, s in sorted(by_kind.items())}


def judge(clients: TimedClients, down: list[Timed], sent_down: list[Timed], *, timed: bool) -> list[str]:
    """The outage's promises: every request sent while the database was down answered within the bound
    (``timed``: the full run; the reduced one in ``make test`` reports times, never fails on them);
    those answered before it came back 503 + Retry-After; no silence, no 4xx but a late cancel's 409."""
    problems = []
    if not down:
        problems.append("no request was answered while the database was down (the clients did not run?)")
    slow = [t for t in sent_down if t.seconds > BOUND_SECONDS]
    if slow and timed:
        worst = max(slow, key=lambda t: t.seconds)
        problems.append(f"{len(slow)} answers during the outage took over {BOUND_SECONDS:.0f} s, "
                        f"the slowest {worst.kind} {worst.seconds:.1f} s")
    wrong = [t for t in down if t.status != 503 or (t.kind != "readyz" and not t.retry_after)]
    if wrong:
        problems.append(f"{len(wrong)} answers during the outage were not 503 with Retry-After: "
                        f"{dict(Counter(f'{t.kind} {t.status}' for t in wrong))}")
    silent = [a for a in clients.answers if a.status == 0]
    if silent:
        problems.append(f"{len(silent)} public requests got no answer, e.g. {silent[0].kind}: {silent[0].note}")
    refused = [a for a in clients.answers if 400 <= a.status < 500 and not (a.kind == "cancel" and a.status == 409)]
    if refused:
        problems.append(f"{len(refused)} valid requests were refused with a 4xx, e.g. "
                        f"{refused[0].kind} {refused[0].status} {refused[0].note}")
    if clients.uploads_given_up:
        problems.append(f"{len(clients.uploads_given_up)} uploads never got 202 when retried with their "
                        f"Idempotency-Key, e.g. {clients.uploads_given_up[0]}")
    return problems
