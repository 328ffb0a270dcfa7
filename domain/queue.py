"""The ProcessingQueue aggregate: one tutor's video on its way through the steps.

State changes only through events (each event class has an ``apply``), so
replaying a queue's events rebuilds exactly its state. Command methods check
the invariants first and trigger events only when something changes:

- steps start only after their predecessors completed; at most one attempt of
  a step runs at a time (and so at most one step runs at a time);
- ``completed``, ``failed`` and ``cancelled`` are terminal: later commands raise
  :class:`QueueIsTerminal` and change nothing;
- a step is retried at most ``max_retries`` times, then fails with the last reason;
- progress never goes backwards and stays within 0..100;
- a duplicate of a command already applied (QStash redelivers) is a no-op.

State holds only JSON-friendly values (dicts, lists, str, int, float,
datetime) so that snapshots round-trip exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from eventsourcing.domain import Aggregate

from domain.errors import (
    InvalidProgress,
    QueueIsTerminal,
    StaleAttempt,
    StepNotRunning,
    StepOutOfOrder,
    UnknownStep,
)

STEPS: tuple[str, ...] = ("compress", "audio-convert", "transcribe", "embed")
"""The pipeline's steps, in order."""

DEFAULT_MAX_RETRIES = 3

QueueStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "retrying", "completed", "failed", "cancelled"]
RetryOutcome = Literal["retried", "failed", "unchanged"]
StartOutcome = Literal["started", "redelivered", "duplicate", "done"]
"""``started``: a new attempt began. The others change nothing: ``redelivered``, the
message that started the running attempt came again (its worker may have died);
``duplicate``, another message for the running attempt; ``done``, the attempt ended."""

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class StepView:
    """A read-only picture of one step inside the aggregate."""

    name: str
    status: StepStatus
    attempt: int
    progress: int
    retries: int
    started_at: datetime | None
    completed_at: datetime | None
    last_error: str | None
    provider: str | None
    outputs: dict[str, Any]
    message_id: str | None
    """The bus message that started the current attempt (tells a redelivery from a duplicate)."""


def _new_step() -> dict[str, Any]:
    return {
        "status": "pending",
        "attempt": 0,
        "progress": 0,
        "retries": 0,
        "started_at": None,
        "completed_at": None,
        "last_error": None,
        "provider": None,
        "outputs": {},
        "message_id": None,
    }


def _checked_percent(percent: object) -> int:
    """Progress as an int 0..100, or :class:`InvalidProgress`."""
    if isinstance(percent, bool) or not isinstance(percent, (int, float)):
        raise InvalidProgress(percent)
    if math.isnan(percent) or percent < 0 or percent > 100:
        raise InvalidProgress(percent)
    return int(percent)


class ProcessingQueue(Aggregate):
    """One video's processing: the steps, their attempts and the outcome."""

    # ---------------------------------------------------------------- events
    class Created(Aggregate.Created):
        owner_id: str
        attachment_id: str
        steps: list[str]
        options: dict[str, Any]
        max_retries: int

    class StepStarted(Aggregate.Event):
        step: str
        attempt: int
        message_id: str | None

        def apply(self, queue: ProcessingQueue) -> None:
            state = queue._steps[self.step]
            state.update(
                status="running",
                attempt=self.attempt,
                started_at=self.timestamp,
                message_id=self.message_id,
            )
            queue.status = "processing"

    class StepProgressed(Aggregate.Event):
        step: str
        attempt: int
        percent: int
        detail: str | None

        def apply(self, queue: ProcessingQueue) -> None:
            queue._steps[self.step]["progress"] = self.percent

    class StepRetried(Aggregate.Event):
        step: str
        attempt: int
        next_attempt: int
        reason: str
        delay_seconds: float

        def apply(self, queue: ProcessingQueue) -> None:
            state = queue._steps[self.step]
            state.update(status="retrying", last_error=self.reason)
            state["retries"] += 1

    class StepCompleted(Aggregate.Event):
        step: str
        attempt: int
        outputs: dict[str, Any]
        provider: str | None
        model: str | None
        duration_seconds: float

        def apply(self, queue: ProcessingQueue) -> None:
            state = queue._steps[self.step]
            state.update(
                status="completed",
                progress=100,
                completed_at=self.timestamp,
                provider=self.provider,
                outputs=dict(self.outputs),
            )

    class StepFailed(Aggregate.Event):
        step: str
        attempt: int
        reason: str
        retries_exhausted: bool

        def apply(self, queue: ProcessingQueue) -> None:
            queue._steps[self.step].update(status="failed", last_error=self.reason)

    class Completed(Aggregate.Event):
        duration_seconds: float

        def apply(self, queue: ProcessingQueue) -> None:
            queue.status = "completed"

    class Failed(Aggregate.Event):
        step: str
        reason: str

        def apply(self, queue: ProcessingQueue) -> None:
            queue.status = "failed"
            queue.error = self.reason

    class Cancelled(Aggregate.Event):
        by: str
        reason: str
        step: str | None

        def apply(self, queue: ProcessingQueue) -> None:
            queue.status = "cancelled"
            queue.error = self.reason
            if self.step is not None:
                queue._steps[self.step]["status"] = "cancelled"

    # ------------------------------------------------------------- creation
    def __init__(
        self,
        owner_id: str,
        attachment_id: str,
        steps: list[str],
        options: dict[str, Any],
        max_retries: int,
    ) -> None:
        self.owner_id = owner_id
        self.attachment_id = attachment_id
        self.step_names = list(steps)
        self.options = dict(options)
        self.max_retries = max_retries
        self.status: QueueStatus = "pending"
        self.error: str | None = None
        self._steps: dict[str, dict[str, Any]] = {name: _new_step() for name in steps}

    # --------------------------------------------------------------- queries
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def step(self, name: str) -> StepView:
        self._check_known(name)
        return StepView(name=name, **self._steps[name])

    @property
    def steps(self) -> list[StepView]:
        return [self.step(name) for name in self.step_names]

    @property
    def running_step(self) -> str | None:
        for name in self.step_names:
            if self._steps[name]["status"] == "running":
                return name
        return None

    # -------------------------------------------------------------- commands
    def start_step(self, step: str, attempt: int, message_id: str | None = None) -> StartOutcome:
        """Start ``attempt`` of ``step``, or say why it is already under way or done."""
        state = self._checked(step, "start")
        if attempt == state["attempt"] and state["status"] in ("completed", "failed"):
            return "done"
        if attempt == state["attempt"] and state["status"] == "running":
            same = message_id is None or state["message_id"] in (None, message_id)
            return "redelivered" if same else "duplicate"
        expected = state["attempt"] + 1 if state["status"] in ("pending", "retrying") else None
        if expected is None or attempt != expected:
            raise StaleAttempt(step, attempt, state["attempt"], "start")
        for earlier in self.step_names[: self.step_names.index(step)]:
            if self._steps[earlier]["status"] != "completed":
                raise StepOutOfOrder(step, f"step {earlier!r} has not completed")
        self.trigger_event(self.StepStarted, step=step, attempt=attempt, message_id=message_id)
        return "started"

    def report_progress(
        self, step: str, attempt: int, percent: object, detail: str | None = None
    ) -> bool:
        """Record progress of the running attempt; lower or equal values are ignored."""
        value = _checked_percent(percent)
        state = self._running(step, attempt, "report progress of")
        if state is None or value <= state["progress"]:
            return False
        self.trigger_event(
            self.StepProgressed, step=step, attempt=attempt, percent=value, detail=detail
        )
        return True

    def retry_step(
        self, step: str, attempt: int, reason: str, delay_seconds: float
    ) -> RetryOutcome:
        """A transient failure: retry later, or fail once ``max_retries`` are used."""
        state = self._checked(step, "retry")
        if state["status"] == "retrying" and state["attempt"] == attempt:
            return "unchanged"  # redelivery of a retry already recorded
        if self._running(step, attempt, "retry") is None:
            return "unchanged"
        if state["retries"] >= self.max_retries:
            retries = state["retries"]
            given_up = f"{reason} (gave up after {retries} {'retry' if retries == 1 else 'retries'})"
            self._fail(step, attempt, given_up, retries_exhausted=True)
            return "failed"
        self.trigger_event(
            self.StepRetried,
            step=step,
            attempt=attempt,
            next_attempt=attempt + 1,
            reason=reason,
            delay_seconds=float(delay_seconds),
        )
        return "retried"

    def complete_step(
        self,
        step: str,
        attempt: int,
        outputs: dict[str, Any] | None = None,
        provider: str | None = None,
        model: str | None = None,
        duration_seconds: float | None = None,
    ) -> bool:
        """Record the step's result; the last step's completion completes the queue."""
        state = self._running(step, attempt, "complete")
        if state is None:
            return False
        if duration_seconds is None:
            duration_seconds = (datetime.now(timezone.utc) - state["started_at"]).total_seconds()
        self.trigger_event(
            self.StepCompleted,
            step=step,
            attempt=attempt,
            outputs=dict(outputs or {}),
            provider=provider,
            model=model,
            duration_seconds=float(duration_seconds),
        )
        if step == self.step_names[-1]:
            total = (datetime.now(timezone.utc) - self.created_on).total_seconds()
            self.trigger_event(self.Completed, duration_seconds=total)
        return True

    def fail_step(self, step: str, attempt: int, reason: str) -> bool:
        """A permanent failure: the step and the queue fail with ``reason``."""
        if self._running(step, attempt, "fail") is None:
            return False
        self._fail(step, attempt, reason, retries_exhausted=False)
        return True

    def cancel(self, by: str, reason: str = "cancelled by the tutor") -> bool:
        """Stop the queue; False when it was already cancelled."""
        if self.status == "cancelled":
            return False
        if self.is_terminal:
            raise QueueIsTerminal(self.id, self.status, "cancel")
        self.trigger_event(self.Cancelled, by=by, reason=reason, step=self.running_step)
        return True

    # --------------------------------------------------------------- helpers
    def _fail(self, step: str, attempt: int, reason: str, *, retries_exhausted: bool) -> None:
        self.trigger_event(
            self.StepFailed,
            step=step,
            attempt=attempt,
            reason=reason,
            retries_exhausted=retries_exhausted,
        )
        self.trigger_event(self.Failed, step=step, reason=reason)

    def _check_known(self, step: str) -> None:
        if step not in self._steps:
            raise UnknownStep(step, self.step_names)

    def _checked(self, step: str, command: str) -> dict[str, Any]:
        """The step's state, after refusing unknown steps and ended queues."""
        self._check_known(step)
        if self.is_terminal:
            raise QueueIsTerminal(self.id, self.status, f"{command} step {step!r}")
        return self._steps[step]

    def _running(self, step: str, attempt: int, command: str) -> dict[str, Any] | None:
        """The running state of ``attempt``; None for a redelivery of a finished attempt."""
        state = self._checked(step, command)
        if state["status"] == "pending":
            raise StepNotRunning(step, "pending", command)
        if attempt != state["attempt"]:
            raise StaleAttempt(step, attempt, state["attempt"], command)
        if state["status"] == "running":
            return state
        if state["status"] in ("completed", "retrying"):
            return None
        raise StepNotRunning(step, state["status"], command)
