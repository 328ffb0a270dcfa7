"""Scenario *QStash restart*: the local QStash server dies and comes back while
step messages are pending, in flight and delayed.

Every queue's steps take ``STEP_SECONDS`` of simulated work (the QStash
machinery is what is under test) and each step's first attempt fails
transiently (``VIDPIPE_SIMULATED_TRANSIENT_FAILURES=1``), so at any moment
many queues have a retry message waiting in QStash for its ``Upstash-Delay``.
Over the run the QStash server is stopped several times (``ROUNDS``), with
SIGKILL (a crash: nothing flushed, deliveries cut mid-request) and SIGTERM (a
clean stop), each time once its store holds delayed messages and, where the
timing allows within ``CHOOSE_SECONDS``, deliveries in flight. It stays down
for a few seconds while new queues are created, so the dispatcher's publishes
fail and must be retried, or, in the quick rounds, comes back at once, so the
deliveries it lost track of are redelivered while the API still runs them.
Each time it is started again on the same port and the same SQLite file.
Tutors poll their queues' status throughout.

The promises, and how each is measured:

- *nothing lost*: every queue completes; every message the dispatcher recorded
  in ``video_processing_messages`` is ``delivered`` in the QStash store (none
  missing, pending, dead-lettered); every attempt the event log started had a
  recorded message, and every recorded message's attempt started.
- *nothing delivered twice to a completed step*: QStash is at-least-once, and
  a delivery it lost track of in a crash (cut mid-request) is delivered again
  after the restart. Such a redelivery reaching a step that has completed is
  answered 200 without doing anything; those are counted and reported
  (``deliveries_to_completed_steps``) but are not a broken promise. The promise
  is the strong one: *a step's work never ran twice and no step has a second
  StepCompleted*. The API counts every step delivery by how it was received
  (``vidpipe_step_deliveries_total{step,received}`` on ``/metrics``): the work
  ran for ``started`` and ``redelivered`` only, so the work ran twice iff some
  delivery was ``redelivered`` (no API process dies here) or the ``started``
  count exceeds the ``StepStarted`` events of the log; duplicates of
  ``StepCompleted`` come from the shared checks.
- *publishes during an outage are not lost*: the queues created while QStash
  is down start once it is back (the dispatcher's follower backs off and
  retries the batch; deduplication ids make the retry safe);
  ``first_step_of_queues_created_while_down_s`` per stop is the time from
  QStash answering again until the last of them started its first step.
- *a clean stop delivers nothing again*: after a SIGTERM no delivery reaches
  work already done or under way (``delivered_again`` per stop: the deliveries
  received as ``completed``/``done``/``joined``/``redelivered`` until the next
  stop); after a SIGKILL such redeliveries are expected and harmless.
- public requests during the outages never get a 5xx (``server_errors``).

``recovery_seconds``: from the moment QStash answers again after the last
restart until every queue is terminal (read from the event log).
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.chaos.harness import ChaosStack
from domain import VideoProcessing
from projections.database import DatabaseUrl
from projections.views import open_view

NAME = "QStash restart"
STEP_SECONDS = 1.0
RETRY_DELAY_SECONDS = 3  # first step retry: the delayed messages QStash holds across the restarts
CHOOSE_SECONDS = 15.0
START_SPACING_SECONDS = 0.6
ROUNDS = (  # (how QStash is stopped, seconds it stays down beyond its own restart)
    (signal.SIGKILL, 0.0),
    (signal.SIGTERM, 3.0),
    (signal.SIGKILL, 3.0),
    (signal.SIGTERM, 0.0),
    (signal.SIGKILL, 0.0),
)
REDUCED_ROUNDS = ROUNDS[:2]
QUEUES_PER_OUTAGE = 2
WORK_RAN = ("started", "redelivered")
AGAIN = ("completed", "done", "joined", "redelivered")
"""How a delivery of work already done or under way is received (see ``handlers.step_runner.Received``)."""


def store_snapshot(path: Path, now: float) -> dict[str, int]:
    """What the QStash store holds right now, read from its SQLite file (the server's own truth).

    ``pending``: not yet delivered (waiting, delayed or being delivered); ``in_flight``: being
    delivered; ``delayed``: waiting for its ``Upstash-Delay``; ``awaiting_redelivery``: a failed
    delivery waiting for QStash's retry.
    """
    with closing(sqlite3.connect(path, timeout=5)) as db:
        row = db.execute(
            "SELECT"
            " COALESCE(SUM(state IN ('pending', 'delivering')), 0),"
            " COALESCE(SUM(state = 'delivering'), 0),"
            " COALESCE(SUM(state = 'pending' AND retried = 0 AND not_before > ?), 0),"
            " COALESCE(SUM(state = 'pending' AND retried > 0 AND next_attempt_at > ?), 0)"
            " FROM messages",
            (now, now),
        ).fetchone()
    return dict(zip(("pending", "in_flight", "delayed", "awaiting_redelivery"), map(int, row), strict=True))


def wait_for_delayed(path: Path, timeout: float) -> dict[str, int]:
    """Wait until the store holds delayed messages and deliveries in flight; failing that within
    ``timeout``, until it holds delayed ones. Returns the snapshot of the chosen moment."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = store_snapshot(path, time.time())
        if snapshot["delayed"] and (snapshot["in_flight"] or time.monotonic() > deadline):
            return snapshot
        if time.monotonic() > deadline + timeout:
            return snapshot  # none delayed at all: the row's problems will say so
        time.sleep(0.02)


def step_deliveries(api: str) -> Counter[str]:
    """``vidpipe_step_deliveries_total`` from the API's ``/metrics``, summed over steps, by how received."""
    text = httpx.get(f"{api}/metrics", timeout=10).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "vidpipe_step_deliveries_total":
                counts[sample.labels["received"]] += int(sample.value)
    return counts


def message_accounting(database_url: str, qstash_db: Path, app: VideoProcessing, queue_ids: list[str]) -> dict[str, Any]:
    """Compare the messages the dispatcher recorded with the QStash store and the event log of ``queue_ids``."""
    view = open_view(DatabaseUrl.parse(database_url).event_store_env())
    try:
        recorded = view.fetchall("SELECT queue_id, step, attempt, message_id, status FROM video_processing_messages")
    finally:
        view.close()
    with closing(sqlite3.connect(qstash_db, timeout=5)) as db:
        states = dict(db.execute("SELECT id, state FROM messages").fetchall())
        dead = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
    started: set[tuple[str, str, int]] = set()
    step_started_events = 0
    for queue_id in queue_ids:
        for event in app.queue_events(queue_id):
            if type(event).__name__ == "StepStarted":
                started.add((queue_id, event.step, event.attempt))
                step_started_events += 1
    published = {(r["queue_id"], r["step"], r["attempt"]) for r in recorded}
    fates = Counter(states.get(r["message_id"], "missing") for r in recorded)
    return {
        "messages_published": len(recorded),
        "message_states": dict(sorted(fates.items())),
        "messages_lost": sum(n for state, n in fates.items() if state != "delivered"),
        "dead_letters": int(dead),
        "attempts_started_without_a_message": len(started - published),
        "messages_never_started": len(published - started),
        "step_started_events": step_started_events,
    }


def first_step_after(app: VideoProcessing, queue_ids: list[str], moment: float) -> float | None:
    """Seconds from ``moment`` until the last of ``queue_ids`` started its first step (None: one never did)."""
    firsts = []
    for queue_id in queue_ids:
        starts = [e.timestamp.timestamp() for e in app.queue_events(queue_id) if type(e).__name__ == "StepStarted"]
        if not starts:
            return None
        firsts.append(min(starts))
    return round(max(firsts) - moment, 2) if firsts else None


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    queues, rounds = (8, REDUCED_ROUNDS) if reduced else (30, ROUNDS)
    at_start = queues - QUEUES_PER_OUTAGE * len(rounds)  # the rest are created while QStash is down
    started = time.time()
    server_errors: Counter[int] = Counter()
    status_requests = 0
    problems: list[str] = []
    kill_log: list[dict[str, Any]] = []
    stack = ChaosStack(url, workdir, env={
        "VIDPIPE_SIMULATED_STEP_SECONDS": str(STEP_SECONDS),
        "VIDPIPE_SIMULATED_TRANSIENT_FAILURES": "1",
        "VIDEO_STEP_RETRY_BASE_SECONDS": str(RETRY_DELAY_SECONDS),
        "LOG_LEVEL": "INFO",
    })
    qstash_db = workdir / "qstash.sqlite3"
    queue_ids: list[tuple[str, str]] = []  # (queue id, owner)
    with stack:
        app = stack.open_app()
        stop_polling = threading.Event()

        def create(count: int, spacing: float = 0.0) -> None:
            for _ in range(count):
                owner = f"tutor-{len(queue_ids)}"
                queue_ids.append((str(app.start_processing(owner, f"lecture-{len(queue_ids)}")), owner))
                time.sleep(spacing)

        def poll_status() -> None:
            nonlocal status_requests
            with httpx.Client(timeout=30) as client:
                while not stop_polling.wait(0.2):
                    for queue_id, owner in list(queue_ids):
                        try:
                            status = stack.status(client, owner, queue_id).status_code
                        except httpx.HTTPError:
                            status = 0  # no answer at all counts against the API too
                        status_requests += 1
                        if status >= 500 or status == 0:
                            server_errors[status] += 1

        poller = threading.Thread(target=poll_status, name="status-poller", daemon=True)
        try:
            create(at_start, spacing=START_SPACING_SECONDS)  # out of step: some in flight while others wait
            poller.start()
            recovery_started = time.monotonic()
            for round_number, (sig, down_seconds) in enumerate(rounds, 1):
                time.sleep(2.0)  # let messages be delivered, fail and be delayed again
                snapshot = wait_for_delayed(qstash_db, timeout=CHOOSE_SECONDS)
                before = step_deliveries(stack.api)
                if kill_log:  # what the previous stop caused until now
                    kill_log[-1]["delivered_again"] = _again(before - kill_log[-1].pop("_before"))
                down_at = time.monotonic()
                stack.kill("qstash", sig)
                created_while_down = len(queue_ids)
                create(QUEUES_PER_OUTAGE)  # tutors keep uploading; the dispatcher's publishes fail until QStash is back
                time.sleep(max(0.0, down_seconds - (time.monotonic() - down_at)))
                startup = stack.restart("qstash")
                recovery_started, back_at = time.monotonic(), time.time()
                kill_log.append({"round": round_number, "signal": signal.Signals(sig).name, **snapshot,
                                 "down_seconds": round(recovery_started - down_at, 2),
                                 "restart_seconds": round(startup, 2), "_before": before,
                                 "_back_at": back_at, "_created": [q for q, _ in queue_ids[created_while_down:]]})
            finished = stack.wait_terminal([q for q, _ in queue_ids], timeout=240)
            recovery = time.monotonic() - recovery_started
            if not finished:
                problems.append("not every queue finished within 240 s of the last QStash restart")
            time.sleep(0.5)  # the last answers reach QStash's store
            deliveries = step_deliveries(stack.api)
            kill_log[-1]["delivered_again"] = _again(deliveries - kill_log[-1].pop("_before"))
            accounting = message_accounting(url, qstash_db, app, [q for q, _ in queue_ids])
            for stop in kill_log:  # the dispatcher published what it could not while QStash was down
                stop["first_step_of_queues_created_while_down_s"] = first_step_after(
                    app, stop.pop("_created"), stop.pop("_back_at"))
        finally:
            stop_polling.set()
            if poller.is_alive():
                poller.join(30)
            app.close()
    row = stack.check(started)
    delayed_at_kills = [k["delayed"] for k in kill_log]
    work_runs = sum(deliveries[how] for how in WORK_RAN)
    if not all(delayed_at_kills):
        problems.append(f"not every stop found delayed messages pending in QStash ({delayed_at_kills}): "
                        "the scenario did not test them")
    if accounting["messages_lost"]:
        problems.append(f"{accounting['messages_lost']} published messages were not delivered: "
                        f"{accounting['message_states']}")
    if accounting["attempts_started_without_a_message"] or accounting["messages_never_started"]:
        problems.append("the event log's attempts and the published messages disagree: "
                        f"{accounting['attempts_started_without_a_message']} started without a message, "
                        f"{accounting['messages_never_started']} messages never started")
    for stop in kill_log:
        if stop["signal"] == "SIGTERM" and sum(stop["delivered_again"].values()):
            problems.append(f"the clean stop of round {stop['round']} made QStash deliver again: "
                            f"{stop['delivered_again']}")
    if deliveries["redelivered"] or deliveries["started"] != accounting["step_started_events"]:
        problems.append(f"a step's work ran twice: {deliveries['redelivered']} deliveries re-ran running work, "
                        f"{deliveries['started']} started for {accounting['step_started_events']} StepStarted")
    row.update(
        scenario=NAME,
        server_errors=sum(server_errors.values()),
        recovery_seconds=round(recovery, 2),
        details={
            "kills": kill_log,
            "delayed_messages_at_kills": delayed_at_kills,
            "step_deliveries": dict(sorted(deliveries.items())),
            "deliveries_to_completed_steps": deliveries["completed"],
            "deliveries_to_ended_attempts": deliveries["done"],
            "deliveries_joined_to_running_work": deliveries["joined"],
            "step_work_runs": work_runs,
            "step_work_ran_twice": deliveries["redelivered"],
            "status_requests": status_requests,
            **accounting,
        },
        problems=problems,
    )
    return row


def _again(deliveries: Counter[str]) -> dict[str, int]:
    """The deliveries of work already done or under way, by how they were received."""
    return {how: deliveries[how] for how in AGAIN}
