"""Scenario *follower failover*: two projection runners and two dispatchers; the active one of each SIGKILLed.

The API runs with ``VIDPIPE_RUN_FOLLOWERS=false`` (its step webhooks only);
beside it run two ``python -m api.cli project`` and two ``python -m api.cli
dispatch`` processes, as on two hosts, all on the scenario's Postgres. One of
each leads (:mod:`projections.leadership`: an advisory lock per follower on a
dedicated connection), the other stands by.

While ``queues`` queues (30; reduced 5) are started one after another
(through the application, as an upload would: the steps are simulated,
``STEP_SECONDS`` each, so the event log keeps growing throughout), a killer
alternates: it finds which process leads the dispatcher (or the projections),
from ``pg_locks`` and ``pg_stat_activity`` — never from the processes —
SIGKILLs it, measures the **takeover**: from the victim's death until every
lock it held is held by the other process, and starts the dead one again (a
container platform would), which then stands by. Some rounds cut the
leader's lock connection instead (``pg_terminate_backend`` of its session, as
a network cut would): the process lives, must stop applying or publishing at
once and stand by. ``ROUNDS`` of each role (full: 6 kills and 2 cuts; reduced:
one of each), every 2–4 s (seeded).

Besides the shared invariants (every queue terminal, no step completed twice,
the queue-status projection equal to a rebuild), the scenario checks:

- every projection (queue status, notifications, search) reaches the last
  event of the log (nothing lost) and equals a rebuild from event 0;
- **nothing published twice**: each (queue, step, attempt) was published
  under one QStash message id, whoever published it (a batch re-published by
  the new leader after a kill between publish and record gets the same id from
  QStash's deduplication; counted as ``republished_deduplicated``); the QStash
  store holds exactly one message per recorded publication, all delivered;
- **no batch applied by two runners**: no projection runner logged that
  another runner had applied its batch first (what happens without
  leadership, the tracking row deciding);
- takeover within 5 s each time.

``recovery_seconds``: from the last kill to every queue terminal.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench.chaos.harness import ChaosStack
from bench.chaos.qstash_restart import message_accounting
from domain import VideoProcessing
from local.stack import ROOT, _die_with_parent
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.leadership import PostgresLeadership
from projections.moments import MomentsProjection, enable_pgvector
from projections.notifications import NotificationsProjection
from projections.views import ReadModelView, open_view

NAME = "follower failover: the active projection runner and dispatcher SIGKILLed, two of each"
SEED = 16
STEP_SECONDS = 1.0
# per role, in order: SIGKILL the leader, or cut its lock's connection (pg_terminate_backend; the process lives)
ROUNDS = {
    True: ("sigkill", "cut"),
    False: ("sigkill", "sigkill", "cut", "sigkill", "sigkill", "cut", "sigkill", "sigkill"),
}
PAUSE_SECONDS = (2.0, 4.0)
TAKEOVER_LIMIT_SECONDS = 5.0
APP = VideoProcessing.name
KEYS = {
    "dispatch": [f"{APP}:dispatcher"],
    "project": [f"{APP}:queue_status", f"{APP}:notifications", f"{APP}:moments"],
}
PUBLISHED = re.compile(r"queue (\S+): published (\S+) attempt (\d+) as (\S+)")
LOST_RACE = re.compile(r"another runner applied events after")
HOLDER_PID = re.compile(r"vidpipe leader \S+ pid (\d+)")
BACKEND_PID = re.compile(r"\(backend (\d+)")
# tables of each projection compared with a rebuild (search_moments.id is a sequence: left out)
TABLES = {
    "notifications": ("notification_queues", "notifications"),
    "moments": ("search_lectures", "search_moments"),
}


@dataclass
class Runner:
    """One ``python -m api.cli project|dispatch`` process, restartable; its log relayed and read."""

    name: str
    role: str
    stack: ChaosStack
    env: dict[str, str]
    process: subprocess.Popen[str] | None = None
    publications: list[tuple[str, str, int, str]] = field(default_factory=list)
    lost_races: int = 0
    starts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    polling: threading.Event = field(default_factory=threading.Event)
    """Set once the process has made its first leadership round (it leads or stands by)."""

    def start(self) -> None:
        self.polling.clear()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "api.cli", self.role], cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1, start_new_session=True, preexec_fn=_die_with_parent,
        )
        self.starts += 1
        self.stack.log(f"started {self.name} (pid {self.process.pid})")
        threading.Thread(target=self._relay, args=(self.process,), daemon=True).start()

    def _relay(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for line in process.stdout:
                published = PUBLISHED.search(line)
                if "standing by" in line or "leads now" in line:
                    self.polling.set()
                with self.lock:
                    if published:
                        q, step, attempt, message_id = published.groups()
                        self.publications.append((q, step, int(attempt), message_id))
                    if LOST_RACE.search(line):
                        self.lost_races += 1
                if not published:  # one line per publish would drown the log
                    self.stack.stack.out(f"[{self.name}] {line.rstrip()}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def leader_pids(locks: PostgresLeadership, keys: list[str]) -> dict[str, int | None]:
    """Which process holds each key, by its lock session's application name (``pg_stat_activity``)."""
    found: dict[str, int | None] = {}
    for key, holder in locks.holders(keys).items():
        match = HOLDER_PID.search(holder or "")
        found[key] = int(match.group(1)) if match else None
    return found


def cut_lock_session(locks: PostgresLeadership, key: str) -> None:
    """Terminate the Postgres session holding ``key``'s lock, as a network cut or a failover of the server would."""
    match = BACKEND_PID.search(locks.holders([key])[key] or "")
    if match:
        with psycopg.connect(locks.conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (int(match.group(1)),))


def wait_for_leader(locks: PostgresLeadership, keys: list[str], pids: set[int], timeout: float) -> float | None:
    """Seconds until every key is held by one of ``pids`` (None: not within ``timeout``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        held = leader_pids(locks, keys)
        if all(held[k] in pids for k in keys):
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def table_rows(view: ReadModelView, table: str) -> list[str]:
    rows = view.fetchall(f"SELECT * FROM {table}")  # noqa: S608 - a constant of this module
    return sorted(repr(sorted((k, v) for k, v in row.items() if not (table == "search_moments" and k == "id")))
                  for row in rows)


def other_projections_mismatches(url: str) -> dict[str, int]:
    """Rows of the notifications and search projections that differ from a rebuild from event 0."""
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    try:
        found = {}
        for projection in (NotificationsProjection(), MomentsProjection(pgvector=enable_pgvector(view))):
            tables = TABLES[projection.name]
            live = {t: table_rows(view, t) for t in tables}
            EventFollower(app, view, projection).rebuild()
            rebuilt = {t: table_rows(view, t) for t in tables}
            found[projection.name] = sum(len(set(live[t]) ^ set(rebuilt[t])) for t in tables)
        return found
    finally:
        view.close()
        app.close()


def positions(url: str) -> tuple[int, dict[str, int]]:
    """The log's last notification id and each projection's tracked position."""
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    try:
        last = app.recorder.max_notification_id() or 0
        return last, {key: view.max_tracking_id(key) or 0 for key in KEYS["project"]}
    finally:
        view.close()
        app.close()


def run(url: str, workdir: Path, *, reduced: bool) -> dict[str, Any]:
    queues = 5 if reduced else 30
    rounds = ROUNDS[reduced]
    rng = random.Random(SEED)
    started = time.time()
    problems: list[str] = []
    stack = ChaosStack(url, workdir, env={
        "VIDPIPE_RUN_FOLLOWERS": "false",
        "VIDPIPE_SIMULATED_STEP_SECONDS": str(STEP_SECONDS),
        "VIDPIPE_LEADERSHIP_POLL_SECONDS": "0.5",
    })
    env = {**stack.base_env, **stack.api_env, "PYTHONUNBUFFERED": "1", "LOG_LEVEL": "INFO"}
    runners = [Runner(f"{role}-{n}", role, stack, env) for role in ("project", "dispatch") for n in "ab"]
    by_role = {role: [r for r in runners if r.role == role] for role in KEYS}
    locks = PostgresLeadership(DatabaseUrl.parse(url))
    takeovers: dict[str, list[float]] = defaultdict(list)
    kill_log: list[dict[str, Any]] = []
    queue_ids: list[str] = []
    with stack:
        try:
            for role, (first, second) in by_role.items():  # the first leads, the second stands by
                first.start()
                if wait_for_leader(locks, KEYS[role], {first.pid or -1}, 60) is None:
                    problems.append(f"{first.name} did not take the lead of {role} within 60 s")
                second.start()
            time.sleep(2.0)  # the second ones are up and standing by
            app = stack.open_app()
            killing_over = threading.Event()
            spacing = (len(rounds) * 2 * sum(PAUSE_SECONDS) / 2) / queues

            def create() -> None:  # spread over the killing phase; the rest at once when it is over
                for n in range(queues):
                    queue_ids.append(str(app.start_processing(f"failover-tutor-{n}", f"lecture-{n}")))
                    killing_over.wait(spacing)
            creator = threading.Thread(target=create, name="queues", daemon=True)
            creator.start()
            last_kill = time.monotonic()
            for how in rounds:
                for role in ("dispatch", "project"):
                    time.sleep(rng.uniform(*PAUSE_SECONDS))
                    keys = KEYS[role]
                    held = leader_pids(locks, keys)
                    victim = next((r for r in by_role[role] if r.pid is not None and r.pid == held[keys[0]]), None)
                    if victim is None:
                        problems.append(f"no live {role} process leads {keys[0]} (held by pid {held[keys[0]]})")
                        continue
                    victim_keys = [k for k in keys if held[k] == victim.pid]
                    survivor = next(r for r in by_role[role] if r is not victim)
                    # a survivor restarted last round may still be importing (~9 s on a loaded machine): kill only
                    # once it takes part in leadership, so the takeover time measures takeover, not start-up
                    survivor.polling.wait(60)
                    if how == "sigkill":
                        stack.log(f"killing {victim.name} (pid {victim.pid}), leader of {', '.join(victim_keys)}")
                        victim.kill()
                    else:
                        stack.log(f"cutting the lock connection of {victim.name} (pid {victim.pid})")
                        cut_lock_session(locks, keys[0])
                    last_kill = time.monotonic()
                    took = wait_for_leader(locks, victim_keys, {survivor.pid or -1}, 15)
                    if took is None or took > TAKEOVER_LIMIT_SECONDS:
                        problems.append(f"{survivor.name} took over {role} in {took if took is not None else '>15'} s")
                    if took is not None:
                        takeovers[role].append(took)
                    kill_log.append({"role": role, "how": how, "victim": victim.name, "keys": len(victim_keys),
                                     "takeover_seconds": None if took is None else round(took, 3)})
                    if how == "sigkill":
                        victim.start()  # back, as a standby
                    elif victim.pid is None:
                        problems.append(f"{victim.name} died when its lock connection was cut")
                        victim.start()
            killing_over.set()
            creator.join(60)
            finished = stack.wait_terminal(queue_ids, timeout=120 + queues * 4 * STEP_SECONDS)
            all_terminal = time.monotonic()
            deadline = time.monotonic() + 30
            while True:
                last, at = positions(url)
                if all(p >= last for p in at.values()) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            accounting = message_accounting(url, workdir / "qstash.sqlite3", app, queue_ids)
            with closing(sqlite3.connect(workdir / "qstash.sqlite3", timeout=5)) as db:
                qstash_messages = int(db.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
            app.close()
        finally:  # never leave a runner behind, whatever happened
            for runner in runners:
                runner.stop()
            locks.close()
        peak = stack.peak_rss_mib()

    row = stack.check(started)
    others = other_projections_mismatches(url)
    row["projection_mismatches"] += sum(others.values())
    ids_by_publication: dict[tuple[str, str, int], set[str]] = defaultdict(set)
    publishes: Counter[tuple[str, str, int]] = Counter()
    for runner in runners:
        for q, step, attempt, message_id in runner.publications:
            ids_by_publication[(q, step, attempt)].add(message_id)
            publishes[(q, step, attempt)] += 1
    published_twice = sum(1 for ids in ids_by_publication.values() if len(ids) > 1)
    row["duplicates"] += published_twice
    lost_races = sum(r.lost_races for r in runners if r.role == "project")
    events_not_applied = {key: last - p for key, p in at.items() if p < last}
    if len(queue_ids) != queues:
        problems.append(f"{len(queue_ids)} of {queues} queues were started")
    if not finished:
        problems.append("not every queue ended within the time limit (a queue is stuck)")
    if row["completed"] != row["queues"]:
        problems.append(f"only {row['completed']} of {row['queues']} queues completed")
    if events_not_applied:
        problems.append(f"projections behind the log at the end (events not applied): {events_not_applied}")
    if published_twice:
        problems.append(f"{published_twice} step messages published under two QStash message ids")
    if accounting["messages_lost"] or accounting["attempts_started_without_a_message"]:
        problems.append(f"messages lost: {accounting}")
    if qstash_messages != accounting["messages_published"]:
        problems.append(f"QStash holds {qstash_messages} messages for {accounting['messages_published']} publications")
    if lost_races:
        problems.append(f"a standby applied {lost_races} batch(es) the leader had applied (two runners active)")
    if len(kill_log) != 2 * len(rounds):
        problems.append(f"{len(kill_log)} kills of {2 * len(rounds)} planned")
    row.update(
        scenario=NAME,
        server_errors=0,
        recovery_seconds=round(all_terminal - last_kill, 2),
        details={
            "seed": SEED,
            "runners": {role: len(group) for role, group in by_role.items()},
            "kills": {role: dict(Counter(e["how"] for e in kill_log if e["role"] == role)) for role in KEYS},
            "takeover_seconds_max": {role: round(max(t), 3) for role, t in takeovers.items() if t},
            "takeover_seconds_p50": {role: round(statistics.median(t), 3) for role, t in takeovers.items() if t},
            "kill_log": kill_log,
            "republished_deduplicated": sum(n - 1 for n in publishes.values() if n > 1),
            "published_under_two_ids": published_twice,
            "batches_lost_to_another_runner": lost_races,
            "other_projections_mismatches": others,
            "events_not_applied": events_not_applied,
            "qstash_messages": qstash_messages,
            **{k: accounting[k] for k in ("messages_published", "message_states", "messages_lost", "dead_letters",
                                          "attempts_started_without_a_message", "step_started_events")},
            "steps": f"simulated, {STEP_SECONDS:g} s each",
            "peak_rss_mib": peak,
        },
        problems=problems,
    )
    return row
