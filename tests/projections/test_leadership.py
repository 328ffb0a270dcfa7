"""Leadership of followers: one runner applies, the others stand by and take over when it dies.

The lock backends run through the same contract (Postgres advisory locks, file
locks, the in-process stub); a leader process SIGKILLed is replaced within
5 s; and two runners of the queue-status projection, on SQLite and Postgres,
apply every event exactly once across a loss of leadership, ending with rows
equal to a rebuild.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from domain import STEPS, VideoProcessing
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.leadership import (
    Elector,
    FileLeadership,
    FollowersRunning,
    Leadership,
    LeadershipLost,
    LedFollower,
    LocalLeadership,
    PostgresLeadership,
    exclusive,
    leadership_for,
)
from projections.queue_status import QueueStatusProjection, QueueStatusReader
from projections.views import SqlSession, open_view
from tests.conftest import POSTGRES_URL, drop_postgres_schema, make_postgres_schema

ROOT = Path(__file__).resolve().parents[2]
KEY = "VideoProcessing:queue_status"


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture(params=["postgres", "file", "local"])
def contenders(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Leadership, Leadership]]:
    """Two processes' worth of leadership over the same locks."""
    if request.param == "postgres":
        request.getfixturevalue("postgres_available")
        url, schema = make_postgres_schema()
        pair: tuple[Leadership, Leadership] = (
            PostgresLeadership(DatabaseUrl.parse(url)), PostgresLeadership(DatabaseUrl.parse(url)))
    elif request.param == "file":
        schema = ""
        pair = (FileLeadership(tmp_path / "vidpipe.db"), FileLeadership(tmp_path / "vidpipe.db"))
    else:
        schema = ""
        pair = (LocalLeadership(), LocalLeadership())
    try:
        yield pair
    finally:
        for leadership in pair:
            leadership.close()
        if schema:
            drop_postgres_schema(schema)


def test_one_holder_per_key_until_it_lets_go(contenders: tuple[Leadership, Leadership]) -> None:
    a, b = contenders
    assert a.tick(["dispatcher", "queue_status"]) == {"dispatcher", "queue_status"}
    assert b.tick(["dispatcher", "notifications"]) == {"notifications"}
    assert a.tick(["dispatcher", "queue_status"]) == {"dispatcher", "queue_status"}  # kept, not taken twice
    assert a.confirm("dispatcher") and not b.confirm("dispatcher")
    holders = b.holders(["dispatcher", "notifications", "moments"])
    assert holders["dispatcher"] and holders["notifications"] and holders["moments"] is None
    assert f"pid {os.getpid()}" in str(holders["dispatcher"])

    a.release("dispatcher")
    assert not a.confirm("dispatcher")
    assert b.tick(["dispatcher", "notifications"]) == {"dispatcher", "notifications"}
    assert a.tick(["dispatcher", "queue_status"]) == {"queue_status"}
    a.close()
    # Postgres frees a closed session's advisory locks when its backend has exited, a moment after the close
    wait_until(lambda: b.tick(["queue_status"]) == {"dispatcher", "notifications", "queue_status"},
               5, "the closed holder's lock to be free")


def test_a_one_off_job_refuses_or_waits_while_a_follower_leads_and_notices_a_lost_key(
    contenders: tuple[Leadership, Leadership],
) -> None:
    """What ``make rebuild-projections`` takes: every key of the projections it writes."""
    follower, job = contenders
    keys = ["notifications", "queue_status"]
    assert follower.tick(["queue_status"]) == {"queue_status"}
    with pytest.raises(FollowersRunning) as refused, exclusive(job, keys, wait=False):
        raise AssertionError("ran while a follower leads")
    assert list(refused.value.holders) == ["queue_status"] and refused.value.holders["queue_status"]
    assert "queue_status (led by " in str(refused.value)
    wait_until(lambda: "notifications" in follower.tick(["notifications"]), 5, "the refused job to let go")
    follower.release("notifications")

    told: list[dict[str, str | None]] = []
    done = threading.Event()

    def job_runs() -> None:
        with exclusive(job, keys, wait=True, poll_interval=0.02, waiting=told.append) as fence:
            assert follower.tick(keys) == set()  # a standby cannot take what the job holds
            fence()
            done.set()  # (a failed assertion here leaves it unset)

    worker = threading.Thread(target=job_runs)
    worker.start()
    wait_until(lambda: bool(told), 10, "the job to say it waits")
    assert list(told[0]) == ["queue_status"] and not done.is_set()
    follower.release("queue_status")  # the follower stops: the job runs
    worker.join(30)
    assert done.is_set() and len(told) == 1

    with pytest.raises(LeadershipLost), exclusive(job, keys, wait=False) as fence:
        fence()
        job.release("queue_status")  # as a lost connection or a replaced lock file does
        fence()
    wait_until(lambda: follower.tick(keys) == set(keys), 5, "the job's keys to be free")


HOLDER = """
import sys, time
from projections.database import DatabaseUrl
from projections.leadership import leadership_for
leadership = leadership_for(DatabaseUrl.parse(sys.argv[1]))
assert leadership.tick(["dispatcher"]) == {"dispatcher"}
print("leading", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_standby_takes_over_within_5_s_of_the_leaders_sigkill(dialect: str, tmp_path: Path,
                                                                 request: pytest.FixtureRequest) -> None:
    schema = ""
    if dialect == "postgres":
        request.getfixturevalue("postgres_available")
        url, schema = make_postgres_schema()
    else:
        url = f"sqlite:///{tmp_path}/vidpipe.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, url], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    elector = Elector(leadership_for(DatabaseUrl.parse(url)), poll_interval=0.5)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "leading"
        elector.register("dispatcher")
        elector.start()
        time.sleep(1.2)  # two rounds or more: standing by
        assert not elector.leads("dispatcher")
        assert f"pid {holder.pid}" in str(elector.leadership.holders(["dispatcher"])["dispatcher"])

        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        took = wait_until(lambda: elector.leads("dispatcher"), 5.0, "the standby took over")
        assert took <= 5.0
        assert f"pid {os.getpid()}" in str(elector.leadership.holders(["dispatcher"])["dispatcher"])
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
        elector.unregister("dispatcher")
        elector.stop()
        if schema:
            drop_postgres_schema(schema)


# ------------------------------------------------------------------ two runners of a projection
class Counting:
    """The queue-status projection, noting every event this runner applied (committed or not)."""

    def __init__(self, seen: Counter[tuple[str, int]], mine: list[tuple[str, int]]) -> None:
        self.inner = QueueStatusProjection()
        self.name = self.inner.name
        self.seen = seen
        self.mine = mine

    def prepare(self, events: Sequence[Any]) -> None:
        self.inner.prepare(events)

    def apply(self, domain_event: Any, session: SqlSession) -> None:
        event = (str(domain_event.originator_id), domain_event.originator_version)
        self.seen[event] += 1
        self.mine.append(event)
        self.inner.apply(domain_event, session)

    def reset(self, session: SqlSession) -> None:
        self.inner.reset(session)


class Runner:
    """One runner process's worth: its own application, view, lock and elector."""

    def __init__(self, url: str, seen: Counter[tuple[str, int]]) -> None:
        env = DatabaseUrl.parse(url).event_store_env()
        self.app = VideoProcessing(env=env)
        self.view = open_view(env)
        self.applied: list[tuple[str, int]] = []
        self.leadership = leadership_for(DatabaseUrl.parse(url))
        self.elector = Elector(self.leadership, poll_interval=0.1)
        follower = EventFollower(self.app, self.view, Counting(seen, self.applied), poll_interval=0.01)
        self.led = LedFollower(follower, self.elector)

    def close(self) -> None:
        self.led.stop()
        self.view.close()
        self.app.close()


def lose_the_lock(runner: Runner) -> None:
    """What a lost connection does (Postgres), or a lock file replaced under its holder (SQLite)."""
    leadership = runner.leadership
    if isinstance(leadership, PostgresLeadership):
        with psycopg.connect(DatabaseUrl.parse(POSTGRES_URL).conninfo(), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (leadership.session_pid,))
    else:
        assert isinstance(leadership, FileLeadership)
        leadership.path(KEY).unlink()


def some_queues(app: VideoProcessing, count: int) -> int:
    for n in range(count):
        qid = app.start_processing(f"tutor-{n}", f"attachment-{n}")
        for step in STEPS[:2]:
            app.start_step(qid, step, 1)
            app.complete_step(qid, step, 1)
    return app.recorder.max_notification_id() or 0


def test_runners_hand_over_without_applying_anything_twice(database_url: str) -> None:
    seen: Counter[tuple[str, int]] = Counter()
    first, second = Runner(database_url, seen), Runner(database_url, seen)
    try:
        first.led.start()
        wait_until(lambda: first.led.leading, 5, "the first runner leads")
        second.led.start()
        last = some_queues(first.app, 4)
        first.led.wait_for(last)
        assert not second.led.leading and second.applied == []

        lose_the_lock(first)
        wait_until(lambda: second.led.leading, 5, "the standby took over")
        wait_until(lambda: not first.led.leading, 2, "the old leader noticed")  # at its next round, or batch
        before = len(first.applied)
        last = some_queues(first.app, 3)
        second.led.wait_for(last)
        time.sleep(0.5)  # the old leader has had rounds to try
        assert len(first.applied) == before and second.applied
        assert not first.led.leading  # it stands by: the lock is the other's

        events = {(str(e.originator_id), e.originator_version)
                  for n in first.app.recorder.select_notifications(start=1, limit=1000)
                  for e in [first.app.mapper.to_domain_event(n)]}
        assert set(seen) == events and max(seen.values()) == 1  # every event applied once, by one runner
        reader = QueueStatusReader(first.view)
        live = reader.table_rows()
        EventFollower(first.app, first.view, QueueStatusProjection()).rebuild()
        assert reader.table_rows() == live
    finally:
        second.close()
        first.close()


def test_a_runner_that_stops_hands_over_at_once(database_url: str) -> None:
    seen: Counter[tuple[str, int]] = Counter()
    first, second = Runner(database_url, seen), Runner(database_url, seen)
    try:
        first.led.start()
        wait_until(lambda: first.led.leading, 5, "the first runner leads")
        second.led.start()
        first.led.wait_for(some_queues(first.app, 1))
        first.close()  # a clean stop gives the lock up
        wait_until(lambda: second.led.leading, 2, "the standby took over")
        second.led.wait_for(some_queues(second.app, 1))
        assert max(seen.values()) == 1 and second.applied
    finally:
        second.close()
