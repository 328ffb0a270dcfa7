"""Hypothesis state machine: random command sequences against one ProcessingQueue.

Each run's queue has one of the graphs a queue can have (the default, where
compress and audio-convert run side by side; without compress; the linear
chain of queues created before graphs). Commands are drawn at random (valid,
duplicated, out of order, with wrong attempts, unknown steps and bad
progress), parallel steps complete in random orders, cancels come also while
two steps run, and after every step the machine
checks the invariants of DESIGN.md:

- a step starts only after its own predecessors (the queue's graph) completed,
  checked on the state and on the event log (every StepStarted follows the
  StepCompleted of each predecessor); several steps may run at once;
- the queue is completed iff every step completed; a cancel leaves no step
  running or retrying;
- terminal queues never change again, except through a retry of a failed or
  cancelled queue (``Resumed``), after which its steps not completed run again;
- a step is retried at most ``max_retries`` times, then fails with the last reason;
- a dead-lettered message fails its step only while its attempt is current
  (running, or the next one awaited); late and duplicate reports write nothing;
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
from domain.queue import default_graph, linear_graph
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
        self.expected_graph: dict[str, list[str]] = {}
        self.progress_seen: dict[str, int] = {}
        self.ended: tuple[str, int] | None = None
        self.last_command: Callable[[], Any] | None = None

    # -------------------------------------------------------------- helpers
    def queue(self) -> Any:
        return self.app.get_queue(self.qid)

    def graph(self) -> dict[str, list[str]]:
        return self.queue().graph

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

    def running_all(self) -> list[tuple[str, int]]:
        return [(v.name, v.attempt) for v in self.queue().steps if v.status == "running"]

    def running(self, data: st.DataObject) -> tuple[str, int] | None:
        """One of the running steps, drawn at random (parallel steps end in any order)."""
        running = self.running_all()
        return data.draw(st.sampled_from(running)) if running else None

    def startable(self) -> list[tuple[str, int]]:
        queue = self.queue()
        done = {v.name for v in queue.steps if v.status == "completed"}
        out = []
        for view in queue.steps:
            if not set(queue.graph[view.name]) <= done:
                continue
            if view.status == "pending":
                out.append((view.name, 1))
            elif view.status == "retrying":
                out.append((view.name, view.attempt + 1))
        return out

    # ---------------------------------------------------------------- rules
    @initialize(shape=st.sampled_from(["default", "skip_compress", "linear"]))
    def create(self, shape: str) -> None:
        if shape == "linear":  # a queue as created before graphs
            self.expected_graph = linear_graph(STEPS)
            self.qid = self.app.start_processing(
                "tutor", "attachment", graph=self.expected_graph, max_retries=MAX_RETRIES
            )
        else:
            options = {"skip_compress": shape == "skip_compress"}
            steps = [s for s in STEPS if not (shape == "skip_compress" and s == "compress")]
            self.expected_graph = default_graph(steps)
            self.qid = self.app.start_processing("tutor", "attachment", options, max_retries=MAX_RETRIES)

    @rule(data=st.data())
    def start_next(self, data: st.DataObject) -> None:
        startable = self.startable()
        if startable:
            target = data.draw(st.sampled_from(startable))
            self.attempt(lambda: self.app.start_step(self.qid, *target))

    @rule(data=st.data())
    def duplicate_start(self, data: st.DataObject) -> None:
        """Another message for a running attempt (a duplicate publish) changes nothing."""
        target = self.running(data)
        if target is not None:
            # a step still running when another failed the queue: refused (QueueIsTerminal), nothing written
            expected = (None,) if self.queue().is_terminal else ("duplicate", "redelivered")
            assert self.attempt(lambda: self.app.start_step(self.qid, *target, "another-message")) in expected

    @rule(step=any_step, attempt=attempts)
    def start_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.start_step(self.qid, step, attempt))

    @rule(percent=percents, data=st.data())
    def progress_running(self, percent: Any, data: st.DataObject) -> None:
        target = self.running(data)
        if target is not None:
            self.attempt(lambda: self.app.report_progress(self.qid, *target, percent))

    @rule(step=any_step, attempt=attempts, percent=percents)
    def progress_any(self, step: str, attempt: int, percent: Any) -> None:
        self.attempt(lambda: self.app.report_progress(self.qid, step, attempt, percent))

    @rule(reason=st.sampled_from(["503 loading", "502", "timed out"]), data=st.data())
    def retry_running(self, reason: str, data: st.DataObject) -> None:
        target = self.running(data)
        if target is not None:
            self.attempt(lambda: self.app.retry_step(self.qid, *target, reason, 60))

    @rule(data=st.data())
    def complete_running(self, data: st.DataObject) -> None:
        target = self.running(data)
        if target is not None:
            self.attempt(lambda: self.app.complete_step(self.qid, *target, {"k": target[0]}))

    @rule(step=any_step, attempt=attempts)
    def complete_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.complete_step(self.qid, step, attempt))

    @rule(step=any_step, attempt=attempts)
    def fail_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.fail_step(self.qid, step, attempt, "permanent"))

    @rule(data=st.data())
    def undelivered_awaited(self, data: st.DataObject) -> None:
        """QStash dead-letters the message of a running attempt or of the next one a step awaits."""
        candidates = self.running_all() + self.startable()
        if candidates:
            target = data.draw(st.sampled_from(candidates))
            if self.attempt(lambda: self.app.fail_undelivered(self.qid, *target, "503 to 4 attempts", "dlq-1")):
                queue = self.queue()
                assert queue.status == "failed" and queue.step(target[0]).attempt == target[1]

    @rule(step=any_step, attempt=attempts)
    def undelivered_any(self, step: str, attempt: int) -> None:
        """A failure callback for any attempt: a late or duplicate one changes nothing."""
        self.attempt(lambda: self.app.fail_undelivered(self.qid, step, attempt, "undelivered", "dlq-2"))

    @rule(step=any_step, attempt=attempts)
    def retry_any(self, step: str, attempt: int) -> None:
        self.attempt(lambda: self.app.retry_step(self.qid, step, attempt, "flaky", 1))

    @precondition(lambda self: self.qid is not None)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if data.draw(st.integers(0, 9)) == 0:  # rarely, so long runs happen too
            self.attempt(lambda: self.app.cancel(self.qid, by="tutor"))

    @precondition(lambda self: self.qid is not None and len(self.running_all()) >= 2)
    @rule()
    def cancel_while_two_run(self) -> None:
        self.attempt(lambda: self.app.cancel(self.qid, by="tutor"))

    @precondition(lambda self: self.qid is not None)
    @rule()
    def resume(self) -> None:
        """The tutor retries (a double click or a redelivery too: the rule may run twice in a row)."""
        status = self.queue().status
        if self.attempt(lambda: self.app.resume(self.qid, by="tutor")) is True:
            assert status in ("failed", "cancelled")
            self.ended = None  # a retried queue runs again
            queue = self.queue()
            assert queue.status == "processing" and all(
                v.status in ("completed", "pending") and (v.status == "completed" or v.retries == 0) for v in queue.steps
            )

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
    def the_graph_is_the_one_created(self) -> None:
        if self.qid is not None:
            assert self.graph() == self.expected_graph

    @invariant()
    def steps_start_only_after_their_predecessors(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        status = {v.name: v.status for v in queue.steps}
        for name, state in status.items():
            if state != "pending":
                assert all(status[p] == "completed" for p in queue.graph[name]), status
        completed: set[str] = set()
        for e in self.app.queue_events(self.qid):
            kind = type(e).__name__
            if kind == "StepStarted":
                assert set(queue.graph[e.step]) <= completed, (e.step, completed)
            elif kind == "StepCompleted":
                completed.add(e.step)

    @invariant()
    def completed_iff_every_step_completed(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        every = all(v.status == "completed" for v in queue.steps)
        assert (queue.status == "completed") == every, [v.status for v in queue.steps]

    @invariant()
    def cancel_leaves_no_step_running(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        if queue.status == "cancelled":
            assert not [v.name for v in queue.steps if v.status in ("running", "retrying")]
            assert queue.running_steps == [] and queue.running_step is None

    @invariant()
    def retries_are_bounded_and_failures_keep_the_last_reason(self) -> None:
        if self.qid is None:
            return
        queue = self.queue()
        for view in queue.steps:
            assert 0 <= view.retries <= MAX_RETRIES
            if not getattr(queue, "resumed", 0):  # a retry of the queue gives a fresh budget
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
