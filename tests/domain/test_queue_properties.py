"""Hypothesis state machine: random command sequences against one ProcessingQueue.

Commands are drawn at random (valid, duplicated, out of order, with wrong
attempts, unknown steps and bad progress), and after every step the machine
checks the invariants of DESIGN.md:

- steps start only after their predecessors completed; at most one runs at a time;
- terminal queues never change again;
- a step is retried at most ``max_retries`` times, then fails with the last reason;
- progress never goes backwards and stays within 0..100;
- a refused command writes nothing; a redelivered command writes nothing;
- replaying the events rebuilds exactly the state (snapshots included);
- a step has at most one ``StepCompleted``.

It runs on the in-memory store (many examples) and on SQLite and Postgres (fewer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain import STEPS, DomainError, VideoProcessing
from tests.conftest import open_store

MAX_RETRIES = 2
steps = st.sampled_from(STEPS)
any_step = st.one_of(steps, st.sampled_from(["transcode", "", "EMBED"]))
attempts = st.integers(min_value=0, max_value=MAX_RETRIES + 2)
percents = st.one_of(
    st.integers(min_value=-5, max_value=105),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(True),
)


class QueueMachine(RuleBasedStateMachine):
    app: VideoProcessing

    def __init__(self) -> None:
        super().__init__()
        self.qid: Any = None
        self.progress_seen: dict[str, int] = {}
        self.ended: tuple[str, int] | None = None
        self.last_command: Callable[[], Any] | None = None

    # -------------------------------------------------------------- helpers
    def queue(self) -> Any:
        return self.app.get_queue(self.qid)

    def attempt(self, command: Callable[[], Any]) -> Any:
        """Run a command; a refusal must write nothing, a success is remembered."""
        before = self.app.get_queue(self.qid).version
        try:
            result = command()
        except DomainError as error:
            assert str(error)
            assert self.queue().version == before, f"refused command wrote events: {error}"
            return None
        if result in (False, "unchanged", "redelivered", "duplicate", "done"):
            assert self.queue().version == before, "a no-op command wrote events"
        else:
            assert self.queue().version > before
            self.last_command = command
        return result

    def running(self) -> tuple[str, int] | None:
        queue = self.queue()
        for view in queue.steps:
            if view.status == "running":
                return view.name, view.attempt
        return None

    def next_start(self) -> tuple[str, int] | None:
        for view in self.queue().steps:
            if view.status == "pending":
                return view.name, 1
            if view.status == "retrying":
                return view.name, view.attempt + 1
            if view.status != "completed":
                return None
        return None

    # ---------------------------------------------------------------- rules
    @initialize()
    def create(self) -> None:
        self.qid = self.app.start_processing("tutor", "attachment", max_retries=MAX_RETRIES)

    @rule()
    def start_next(self) -> None:
        target = self.next_start()
        if target is not None:
            self.attempt(lambda: self.app.start_step(self.qid, *target))

    @rule(step=any_step, attempt=attempts)
    def start_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.start_step(self.qid, step, attempt))

    @rule(percent=percents)
    def progress_running(self, percent: Any) -> None:
        target = self.running()
        if target is not None:
            self.attempt(lambda: self.app.report_progress(self.qid, *target, percent))

    @rule(step=any_step, attempt=attempts, percent=percents)
    def progress_any(self, step: str, attempt: int, percent: Any) -> None:
        self.attempt(lambda: self.app.report_progress(self.qid, step, attempt, percent))

    @rule(reason=st.sampled_from(["503 loading", "502", "timed out"]))
    def retry_running(self, reason: str) -> None:
        target = self.running()
        if target is not None:
            self.attempt(lambda: self.app.retry_step(self.qid, *target, reason, 60))

    @rule()
    def complete_running(self) -> None:
        target = self.running()
        if target is not None:
            self.attempt(lambda: self.app.complete_step(self.qid, *target, {"k": target[0]}))

    @rule(step=any_step, attempt=attempts)
    def complete_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.complete_step(self.qid, step, attempt))

    @rule(step=any_step, attempt=attempts)
    def fail_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.fail_step(self.qid, step, attempt, "permanent"))

    @rule(step=any_step, attempt=attempts)
    def retry_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.retry_step(self.qid, step, attempt, "flaky", 1))

    @precondition(lambda self: self.qid is not None)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9)) == 0:  # rarely, so long runs happen too
            self.attempt(lambda: self.app.cancel(self.qid, by="tutor"))

    @rule()
    def redeliver_last(self) -> None:
        """QStash redelivers: the last command that changed something, once more."""
        if self.last_command is not None:
            before = self.queue().version
            try:
                self.last_command()
            except DomainError:
                pass  # e.g. the queue ended since; a refusal is fine, a change is not
            if self.queue().status not in ("cancelled",):
                assert self.queue().version == before, "a redelivered command wrote events"

    # ----------------------------------------------------------- invariants
    @invariant()
    def replay_rebuilds_exactly_the_state(self) -> None:
        if self.qid is not None:
            assert vars(self.app.replay(self.qid)) == vars(self.queue())

    @invariant()
    def steps_run_in_order_one_at_a_time(self) -> None:
        if self.qid is None:
            return
        statuses = [v.status for v in self.queue().steps]
        started = [s != "pending" for s in statuses]
        assert started == sorted(started, reverse=True), statuses  # a prefix has started
        active = [s for s in statuses if s in ("running", "retrying", "failed", "cancelled")]
        assert len(active) <= 1, statuses
        for i, status in enumerate(statuses):
            if status != "pending":
                assert all(s == "completed" for s in statuses[:i]), statuses

    @invariant()
    def retries_are_bounded_and_failures_keep_the_last_reason(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        for view in queue.steps:
            assert 0 <= view.retries <= MAX_RETRIES
            assert view.attempt <= view.retries + 1
        if queue.status == "failed":
            failed = [v for v in queue.steps if v.status == "failed"]
            assert len(failed) == 1 and queue.error == failed[0].last_error

    @invariant()
    def progress_is_bounded_and_monotonic(self) -> None:
        if self.qid is None:
            return
        for view in self.queue().steps:
            assert 0 <= view.progress <= 100 and not math.isnan(view.progress)
            assert view.progress >= self.progress_seen.get(view.name, 0)
            self.progress_seen[view.name] = view.progress

    @invariant()
    def terminal_is_forever(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        if self.ended is not None:
            assert (queue.status, queue.version) == self.ended
        elif queue.is_terminal:
            self.ended = (queue.status, queue.version)
        if queue.status == "completed":
            assert all(v.status == "completed" for v in queue.steps)

    @invariant()
    def each_step_completes_at_most_once(self) -> None:
        if self.qid is None:
            return
        completed = [e.step for e in self.app.queue_events(self.qid) if type(e).__name__ == "StepCompleted"]
        assert len(completed) == len(set(completed))


def run_machine(app: VideoProcessing, max_examples: int, step_count: int) -> None:
    machine = type("Machine", (QueueMachine,), {"app": app})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=max_examples,
            stateful_step_count=step_count,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


def test_invariants_hold_in_memory() -> None:
    app = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo", "SNAPSHOT_INTERVAL": "7"})
    try:
        run_machine(app, max_examples=200, step_count=50)
    finally:
        app.close()


@pytest.mark.slow
def test_invariants_hold_on_a_real_store(database_url: str) -> None:
    store = open_store(database_url, SNAPSHOT_INTERVAL="7")
    try:
        run_machine(store.app, max_examples=25, step_count=40)
    finally:
        store.close()
