"""The ProcessingQueue aggregate: one tutor's video on its way through the steps.

State changes only through events (each event class has an ``apply``), so
replaying a queue's events rebuilds exactly its state. Command methods check
the invariants first and trigger events only when something changes:

- the steps form a graph recorded in ``Created`` (each step names its
  predecessors, see :data:`DEFAULT_GRAPH`): a step starts only after its own
  predecessors completed, so several steps may run at once (audio is taken
  from the upload while compression runs); at most one attempt of a step runs
  at a time; the queue completes when every step has completed;
- cancelling marks every running or retrying step cancelled;
- ``completed``, ``failed`` and ``cancelled`` are terminal: later commands raise
  :class:`QueueIsTerminal` and change nothing, except that the tutor may retry a
  failed or cancelled queue (``Resumed``): its steps not completed run again,
  with a fresh retry budget, from attempts never used before;
- a step is retried at most ``max_retries`` times, then fails with the last reason;
- a step whose message QStash could not deliver (its failure callback) fails
  for good, if that attempt is still the step's current one;
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
    InvalidGraph,
    InvalidProgress,
    NotResumable,
    QueueIsTerminal,
    StaleAttempt,
    StepNotRunning,
    StepOutOfOrder,
    UnknownStep,
)

STEPS: tuple[str, ...] = ("compress", "audio-convert", "transcribe", "embed")
"""The pipeline's steps, in order."""

Graph = dict[str, list[str]]
"""Each step of a queue → the steps that must complete before it starts."""

DEFAULT_GRAPH: Graph = {
    "compress": [],
    "audio-convert": [],
    "transcribe": ["audio-convert"],
    "embed": ["transcribe"],
}
"""The default pipeline: audio comes from the uploaded original, so it does not wait for compression."""

NEEDS: dict[str, str] = {"transcribe": "audio-convert", "embed": "transcribe"}
"""Safe bounds of a custom graph: a step here must (transitively) follow its entry."""

DEFAULT_MAX_RETRIES = 3

QueueStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
StepStatus = Literal["pending", "running", "retrying", "completed", "failed", "cancelled"]
RetryOutcome = Literal["retried", "failed", "unchanged"]
StartOutcome = Literal["started", "redelivered", "duplicate", "done"]
"""``started``: a new attempt began. The others change nothing: ``redelivered``, the
message that started the running attempt came again (its worker may have died);
``duplicate``, another message for the running attempt; ``done``, the attempt ended."""

TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})

DELETED_REASON = "deleted by the tutor"
"""The reason of the ``Cancelled`` that deleting a running queue records."""


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


def linear_graph(steps: list[str] | tuple[str, ...]) -> Graph:
    """Each step after the one before it: the graph of queues created before graphs existed."""
    return {step: ([steps[i - 1]] if i else []) for i, step in enumerate(steps)}


def default_graph(steps: list[str] | tuple[str, ...] = STEPS) -> Graph:
    """:data:`DEFAULT_GRAPH` over ``steps``; a step left out is left out of its followers' predecessors."""
    return {step: [p for p in DEFAULT_GRAPH.get(step, []) if p in steps] for step in steps}


MEDIA_KINDS = ("video", "audio")
"""The option ``media``: what the upload is (a queue without the option is a video's)."""


def graph_for_options(options: dict[str, Any] | None) -> tuple[list[str], Graph]:
    """The steps and graph a queue's options choose: ``media: "audio"`` (an audio-only
    upload: nothing to compress) or ``skip_compress`` (an already small video) leaves the
    compress step out."""
    options = options or {}
    skip = options.get("skip_compress", False)
    if not isinstance(skip, bool):
        raise InvalidGraph(f"option skip_compress must be true or false, got {skip!r}")
    media = options.get("media", "video")
    if media not in MEDIA_KINDS:
        raise InvalidGraph(f"option media must be one of {', '.join(MEDIA_KINDS)}, got {media!r}")
    skip = skip or media == "audio"
    steps = [s for s in STEPS if not (skip and s == "compress")]
    return steps, default_graph(steps)


def validate_graph(steps: list[str] | tuple[str, ...], graph: Any) -> Graph:
    """The graph as a plain dict in pipeline order, or :class:`InvalidGraph` saying what is wrong.

    A graph is valid when it covers exactly ``steps`` (known steps, no duplicates),
    each step's predecessors are other steps of the queue, it has no cycle, and
    transcribe follows audio-convert and embed follows transcribe (:data:`NEEDS`).
    """
    steps = list(steps)
    if not steps:
        raise InvalidGraph("a queue needs at least one step")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise InvalidGraph(f"unknown step(s) {', '.join(map(repr, unknown))}; the steps are {', '.join(STEPS)}")
    if len(set(steps)) != len(steps):
        raise InvalidGraph("a step is listed twice")
    if not isinstance(graph, dict) or set(graph) != set(steps):
        raise InvalidGraph(f"the graph must name the predecessors of exactly these steps: {', '.join(steps)}")
    clean: Graph = {}
    for step in sorted(steps, key=STEPS.index):
        preds = graph[step]
        if not isinstance(preds, (list, tuple)) or not all(isinstance(p, str) for p in preds):
            raise InvalidGraph(f"the predecessors of {step!r} must be a list of step names")
        strangers = [p for p in preds if p not in steps or p == step]
        if strangers:
            raise InvalidGraph(f"step {step!r} cannot wait for {', '.join(map(repr, strangers))}: not another step of this queue")
        clean[step] = sorted(set(preds), key=STEPS.index)
    done: set[str] = set()
    while len(done) < len(clean):  # Kahn: take the steps whose predecessors are all taken
        ready = [s for s, preds in clean.items() if s not in done and set(preds) <= done]
        if not ready:
            raise InvalidGraph(f"the graph has a cycle among {', '.join(s for s in clean if s not in done)}")
        done.update(ready)
    for step, needed in NEEDS.items():
        if step in clean and needed not in _ancestors(clean, step):
            raise InvalidGraph(f"step {step!r} needs {needed!r} before it")
    return clean


def _ancestors(graph: Graph, step: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[step])
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo.extend(graph.get(p, []))
    return seen


class ProcessingQueue(Aggregate):
    """One video's processing: the steps, their attempts and the outcome."""

    # ---------------------------------------------------------------- events
    class_version = 2
    """2: the queue has a ``graph``; a snapshot of version 1 gets the linear graph of its steps."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["graph"] = linear_graph(state["step_names"])

    class Created(Aggregate.Created):
        owner_id: str
        attachment_id: str
        steps: list[str]
        options: dict[str, Any]
        max_retries: int
        graph: dict[str, list[str]]

        class_version = 2
        """2: ``graph``; a queue created before (version 1) runs its steps in a line."""

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["graph"] = linear_graph(state["steps"])

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

        unblocked: list[str]
        """The steps whose predecessors have now all completed (the dispatcher starts them)."""
        unblocked_attempts: dict[str, int]
        """The attempt each unblocked step starts with: 1, or after a retry of the queue the
        attempt after its last one (absent from events written before retries: 1)."""

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["unblocked"] = None  # before graphs: the dispatcher reads the next step from the view

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
        dlq_id: str | None
        """QStash's dead-letter id when the attempt's message could not be delivered (else None)."""

        class_version = 2
        """2: ``dlq_id``; a step failure recorded before has none."""

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["dlq_id"] = None

        def apply(self, queue: ProcessingQueue) -> None:
            # the attempt: an undelivered one never started, yet its number is used (a retry follows it)
            queue._steps[self.step].update(status="failed", attempt=self.attempt, last_error=self.reason)

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
        """The first running step in pipeline order (kept for older readers)."""
        steps: list[str]
        """Every step that was running or retrying: all are marked cancelled."""

        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["steps"] = [] if state.get("step") is None else [state["step"]]

        def apply(self, queue: ProcessingQueue) -> None:
            queue.status = "cancelled"
            queue.error = self.reason
            for name in self.steps:
                queue._steps[name]["status"] = "cancelled"

    class Resumed(Aggregate.Event):
        """The tutor retried a failed or cancelled queue: the steps not completed run again.

        Completed steps keep their outputs (their artifacts are reused). Each step that
        runs again is pending with a fresh retry budget; its next attempt follows its
        last one (``attempts``), so no message id or deduplication id is ever reused."""

        by: str
        previous_status: str
        steps: list[str]
        """The steps that run again (every step not completed)."""
        attempts: dict[str, int]
        """The attempt each of them starts with: after its last one, and after one whose message
        was published but refused because the queue had ended (it may still be at QStash)."""
        ready: list[str]
        """Those whose predecessors have all completed: the dispatcher starts them now."""

        def apply(self, queue: ProcessingQueue) -> None:
            queue.status = "processing"
            queue.error = None
            queue.resumed = getattr(queue, "resumed", 0) + 1
            for name in self.steps:  # the next start is ``attempts[name]``
                queue._steps[name].update(
                    status="pending", attempt=self.attempts[name] - 1, retries=0, last_error=None, message_id=None
                )

    class Deleted(Aggregate.Event):
        """The tombstone: who deleted the lecture (when: the event's timestamp); no content."""

        by: str

        def apply(self, queue: ProcessingQueue) -> None:
            queue.deleted_by = self.by

    # ------------------------------------------------------------- creation
    def __init__(
        self,
        owner_id: str,
        attachment_id: str,
        steps: list[str],
        options: dict[str, Any],
        max_retries: int,
        graph: dict[str, list[str]],
    ) -> None:
        self.owner_id = owner_id
        self.attachment_id = attachment_id
        self.step_names = list(steps)
        self.graph = {name: list(graph[name]) for name in steps}
        self.options = dict(options)
        self.max_retries = max_retries
        self.status: QueueStatus = "pending"
        self.error: str | None = None
        self._steps: dict[str, dict[str, Any]] = {name: _new_step() for name in steps}

    # --------------------------------------------------------------- queries
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def is_deleted(self) -> bool:
        return getattr(self, "deleted_by", None) is not None

    def step(self, name: str) -> StepView:
        self._check_known(name)
        return StepView(name=name, **self._steps[name])

    @property
    def steps(self) -> list[StepView]:
        return [self.step(name) for name in self.step_names]

    @property
    def running_step(self) -> str | None:
        """The first running step in pipeline order."""
        running = self.running_steps
        return running[0] if running else None

    @property
    def running_steps(self) -> list[str]:
        """Every running step, in pipeline order."""
        return [name for name in self.step_names if self._steps[name]["status"] == "running"]

    def predecessors(self, step: str) -> list[str]:
        self._check_known(step)
        return list(self.graph[step])

    def ready_steps(self) -> list[str]:
        """Pending steps whose predecessors have all completed, in pipeline order."""
        return [
            name for name in self.step_names
            if self._steps[name]["status"] == "pending"
            and all(self._steps[p]["status"] == "completed" for p in self.graph[name])
        ]

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
        for earlier in self.graph[step]:
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
        """Record the step's result; the completion of the last step to finish completes the queue."""
        state = self._running(step, attempt, "complete")
        if state is None:
            return False
        if duration_seconds is None:
            duration_seconds = (datetime.now(timezone.utc) - state["started_at"]).total_seconds()
        unblocked = [
            name for name in self.step_names
            if step in self.graph[name] and self._steps[name]["status"] == "pending"
            and all(p == step or self._steps[p]["status"] == "completed" for p in self.graph[name])
        ]
        unblocked_attempts = {name: self._steps[name]["attempt"] + 1 for name in unblocked}
        self.trigger_event(
            self.StepCompleted,
            step=step,
            attempt=attempt,
            outputs=dict(outputs or {}),
            provider=provider,
            model=model,
            duration_seconds=float(duration_seconds),
            unblocked=unblocked,
            unblocked_attempts=unblocked_attempts,
        )
        if all(s["status"] == "completed" for s in self._steps.values()):
            total = (datetime.now(timezone.utc) - self.created_on).total_seconds()
            self.trigger_event(self.Completed, duration_seconds=total)
        return True

    def fail_step(self, step: str, attempt: int, reason: str) -> bool:
        """A permanent failure: the step and the queue fail with ``reason``."""
        if self._running(step, attempt, "fail") is None:
            return False
        self._fail(step, attempt, reason, retries_exhausted=False)
        return True

    def fail_undelivered(self, step: str, attempt: int, reason: str, dlq_id: str | None = None) -> bool:
        """QStash gave up delivering ``attempt``'s message (its DLQ holds it as ``dlq_id``): fail for good.

        Only while that attempt is the step's current one: running (its handler kept
        failing), or awaited (the step is retrying or ready and ``attempt`` is the next
        one: the message never got through). False, writing nothing, for an attempt that
        ended, was superseded by a retry of the queue, or is a duplicate report."""
        state = self._checked(step, "fail undelivered")
        if state["status"] == "running":
            awaited = attempt == state["attempt"]
        elif state["status"] == "retrying":
            awaited = attempt == state["attempt"] + 1
        elif state["status"] == "pending":
            ready = all(self._steps[p]["status"] == "completed" for p in self.graph[step])
            awaited = ready and attempt == state["attempt"] + 1
        else:
            awaited = False
        if not awaited:
            return False
        self._fail(step, attempt, reason, retries_exhausted=True, dlq_id=dlq_id)
        return True

    def cancel(self, by: str, reason: str = "cancelled by the tutor") -> bool:
        """Stop the queue; False when it was already cancelled."""
        if self.status == "cancelled":
            return False
        if self.is_terminal:
            raise QueueIsTerminal(self.id, self.status, "cancel")
        active = [n for n in self.step_names if self._steps[n]["status"] in ("running", "retrying")]
        self.trigger_event(
            self.Cancelled, by=by, reason=reason, step=self.running_step, steps=active
        )
        return True

    def resume(self, by: str) -> bool:
        """Run a failed or cancelled queue again from its steps not completed.

        False (nothing written) when the queue runs again already after a retry: a
        double click or a redelivered request. A completed queue, or one that has not
        ended and was never retried, raises :class:`NotResumable`."""
        if self.is_deleted:
            raise QueueIsTerminal(self.id, "deleted", "retry")
        if self.status not in ("failed", "cancelled"):
            if self.status != "completed" and getattr(self, "resumed", 0):
                return False
            raise NotResumable(self.id, self.status)
        again = [n for n in self.step_names if self._steps[n]["status"] != "completed"]
        ready = [n for n in again if all(self._steps[p]["status"] == "completed" for p in self.graph[n])]

        def offered(name: str) -> bool:
            """Whether a message for the attempt after the last may have been published already
            (a delayed retry, also of a step since cancelled, or a step that was ready): that
            number is skipped too, as the dispatcher never publishes an attempt twice."""
            status = self._steps[name]["status"]
            return status in ("retrying", "cancelled") or (status == "pending" and name in ready)

        self.trigger_event(
            self.Resumed,
            by=by,
            previous_status=self.status,
            steps=again,
            attempts={n: self._steps[n]["attempt"] + (2 if offered(n) else 1) for n in again},
            ready=ready,
        )
        return True

    def delete(self, by: str) -> bool:
        """Leave a tombstone (cancelling the queue first while it runs); False if deleted already.

        A deleted queue is terminal; every later command on it changes nothing."""
        if self.is_deleted:
            return False
        if not self.is_terminal:
            self.cancel(by, DELETED_REASON)
        self.trigger_event(self.Deleted, by=by)
        return True

    # --------------------------------------------------------------- helpers
    def _fail(
        self, step: str, attempt: int, reason: str, *, retries_exhausted: bool, dlq_id: str | None = None
    ) -> None:
        self.trigger_event(
            self.StepFailed,
            step=step,
            attempt=attempt,
            reason=reason,
            retries_exhausted=retries_exhausted,
            dlq_id=dlq_id,
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
