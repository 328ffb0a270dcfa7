"""VideoProcessing: the application that runs commands against ProcessingQueue aggregates.

Persistence is the library's, chosen by the environment the application is
constructed with (``PERSISTENCE_MODULE``: in-memory POPO, ``eventsourcing.sqlite``
or ``eventsourcing.postgres``). Each command loads the queue, applies the
command and saves the new events in one atomic write. When another process
saved a conflicting event first (QStash redelivered a message to two replicas),
the library raises ``IntegrityError``; the command is then retried against the
fresh state, where it is usually a no-op, and so exactly one of the racing
writers wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError

from domain.errors import DomainError, QueueNotFound
from domain.queue import (
    DEFAULT_MAX_RETRIES,
    STEPS,
    Graph,
    ProcessingQueue,
    RetryOutcome,
    StartOutcome,
    default_graph,
    graph_for_options,
    validate_graph,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

CONFLICT_RETRIES = 5
"""How often a command is re-run against fresh state after losing a write race."""


class ConcurrencyConflict(DomainError):
    """Another writer kept winning the race for the same queue."""

    def __init__(self, queue_id: UUID, attempts: int) -> None:
        super().__init__(
            f"processing queue {queue_id} was changed concurrently "
            f"{attempts} times in a row; try again"
        )
        self.queue_id = queue_id


@dataclass(frozen=True)
class TimelineEntry:
    """One line of a queue's audit trail."""

    position: int
    timestamp: datetime
    event: str
    step: str | None
    attempt: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "timestamp": self.timestamp.isoformat(),
            "event": self.event,
            "step": self.step,
            "attempt": self.attempt,
            "detail": self.detail,
        }


def parse_queue_id(queue_id: UUID | str) -> UUID:
    """The queue id as a UUID, or :class:`QueueNotFound` for anything else."""
    if isinstance(queue_id, UUID):
        return queue_id
    try:
        return UUID(str(queue_id))
    except ValueError:
        raise QueueNotFound(queue_id) from None


class VideoProcessing(Application[UUID]):
    """Commands on processing queues; the event log is the truth and the audit trail."""

    name = "VideoProcessing"
    snapshotting_intervals: ClassVar[dict[type, int]] = {ProcessingQueue: 50}

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__(env)
        interval = self.env.get("SNAPSHOT_INTERVAL")
        if interval:
            self.snapshotting_intervals = {ProcessingQueue: int(interval)}

    # -------------------------------------------------------------- commands
    def start_processing(
        self,
        owner_id: str,
        attachment_id: str,
        options: Mapping[str, Any] | None = None,
        *,
        steps: tuple[str, ...] | list[str] | None = None,
        graph: Graph | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        queue_id: UUID | None = None,
    ) -> UUID:
        """Create a queue for ``attachment_id`` owned by ``owner_id``; return its id.

        The steps and their graph: ``graph`` (step → predecessors) when given,
        else :data:`~domain.queue.DEFAULT_GRAPH` over ``steps``, else what the
        options choose (:func:`~domain.queue.graph_for_options`: ``skip_compress``, ``media``).
        A graph outside the safe bounds raises :class:`~domain.errors.InvalidGraph`
        and creates nothing.

        ``queue_id`` is an id the caller derived (from an upload's
        Idempotency-Key): when a queue with that id exists already (a retry of a
        request whose process died after creating it), it is returned unchanged,
        so a retried request can never start a second queue.
        """
        if graph is not None:
            if steps is None:
                steps = sorted(graph, key=lambda s: STEPS.index(s) if s in STEPS else len(STEPS))
        elif steps is not None:
            graph = default_graph(list(steps))
        else:
            steps, graph = graph_for_options(dict(options or {}))
        graph = validate_graph(list(steps), graph)
        fields = {"owner_id": owner_id, "attachment_id": attachment_id, "steps": list(steps),
                  "options": dict(options or {}), "max_retries": max_retries, "graph": graph}
        if queue_id is None:
            queue = ProcessingQueue(**fields)
        else:  # the library's way to create an aggregate with a given id
            queue = ProcessingQueue._create(ProcessingQueue.Created, id=queue_id, **fields)  # noqa: SLF001
        try:
            self.save(queue)
        except IntegrityError:
            if queue_id is None or not self.queue_exists(queue_id):
                raise
            logger.info("queue %s exists already (a retried request); not created again", queue_id)
            return queue_id
        logger.info("queue %s created for owner %s", queue.id, owner_id)
        return queue.id

    def queue_exists(self, queue_id: UUID) -> bool:
        """Whether a queue with this id has been created."""
        return bool(self.recorder.select_events(queue_id, limit=1))

    def start_step(
        self, queue_id: UUID | str, step: str, attempt: int, message_id: str | None = None
    ) -> StartOutcome:
        return self._execute(queue_id, lambda q: q.start_step(step, attempt, message_id))

    def report_progress(
        self,
        queue_id: UUID | str,
        step: str,
        attempt: int,
        percent: object,
        detail: str | None = None,
    ) -> bool:
        return self._execute(
            queue_id, lambda q: q.report_progress(step, attempt, percent, detail)
        )

    def retry_step(
        self, queue_id: UUID | str, step: str, attempt: int, reason: str, delay_seconds: float
    ) -> RetryOutcome:
        return self._execute(
            queue_id, lambda q: q.retry_step(step, attempt, reason, delay_seconds)
        )

    def complete_step(
        self,
        queue_id: UUID | str,
        step: str,
        attempt: int,
        outputs: dict[str, Any] | None = None,
        provider: str | None = None,
        model: str | None = None,
        duration_seconds: float | None = None,
    ) -> bool:
        return self._execute(
            queue_id,
            lambda q: q.complete_step(step, attempt, outputs, provider, model, duration_seconds),
        )

    def fail_step(self, queue_id: UUID | str, step: str, attempt: int, reason: str) -> bool:
        return self._execute(queue_id, lambda q: q.fail_step(step, attempt, reason))

    def fail_undelivered(
        self, queue_id: UUID | str, step: str, attempt: int, reason: str, dlq_id: str | None = None
    ) -> bool:
        """QStash dead-lettered this attempt's message: fail the step and the queue if the attempt is current."""
        return self._execute(queue_id, lambda q: q.fail_undelivered(step, attempt, reason, dlq_id))

    def cancel(
        self, queue_id: UUID | str, by: str, reason: str = "cancelled by the tutor"
    ) -> bool:
        return self._execute(queue_id, lambda q: q.cancel(by, reason))

    def delete(self, queue_id: UUID | str, by: str) -> bool:
        """Record the tombstone (cancelling a running queue first); False if deleted already."""
        return self._execute(queue_id, lambda q: q.delete(by))

    def resume(self, queue_id: UUID | str, by: str) -> bool:
        """Retry a failed or cancelled queue from its steps not completed; False if it runs again already."""
        return self._execute(queue_id, lambda q: q.resume(by))

    # --------------------------------------------------------------- queries
    def get_queue(self, queue_id: UUID | str) -> ProcessingQueue:
        """The queue's current state (from its snapshot and later events)."""
        qid = parse_queue_id(queue_id)
        try:
            return self.repository.get(qid)
        except AggregateNotFoundError:
            raise QueueNotFound(queue_id) from None

    def queue_events(self, queue_id: UUID | str) -> Iterator[ProcessingQueue.Event]:
        """Every event of the queue, oldest first (snapshots are not events)."""
        qid = parse_queue_id(queue_id)
        found = False
        for domain_event in self.repository.event_store.get(qid):
            found = True
            yield domain_event
        if not found:
            raise QueueNotFound(queue_id)

    def replay(self, queue_id: UUID | str) -> ProcessingQueue:
        """The queue rebuilt from its events alone, ignoring snapshots."""
        queue: ProcessingQueue | None = None
        for domain_event in self.queue_events(queue_id):
            queue = domain_event.mutate(queue)
        assert queue is not None
        return queue

    def timeline(self, queue_id: UUID | str) -> list[TimelineEntry]:
        """The queue's audit trail: what happened, when, to which step and attempt."""
        return [_timeline_entry(e) for e in self.queue_events(queue_id)]

    # --------------------------------------------------------------- helpers
    def _execute(self, queue_id: UUID | str, command: Callable[[ProcessingQueue], T]) -> T:
        """Load, apply, save; on a lost write race re-run against the fresh state."""
        qid = parse_queue_id(queue_id)
        for attempt in range(1, CONFLICT_RETRIES + 1):
            queue = self.get_queue(qid)
            result = command(queue)
            try:
                self.save(queue)
            except IntegrityError:
                logger.info(
                    "queue %s: lost a write race (try %d), re-running on fresh state",
                    qid,
                    attempt,
                )
                continue
            return result
        raise ConcurrencyConflict(qid, CONFLICT_RETRIES)


_DETAIL_FIELDS = (
    "reason",
    "percent",
    "delay_seconds",
    "provider",
    "model",
    "duration_seconds",
    "outputs",
    "by",
    "owner_id",
    "attachment_id",
    "message_id",
    "dlq_id",
)


def _timeline_entry(domain_event: ProcessingQueue.Event) -> TimelineEntry:
    fields = vars(domain_event)
    detail = ", ".join(
        f"{name}={fields[name]}"
        for name in _DETAIL_FIELDS
        if fields.get(name) not in (None, {}, "")
    )
    return TimelineEntry(
        position=domain_event.originator_version,
        timestamp=domain_event.timestamp,
        event=type(domain_event).__name__,
        step=fields.get("step"),
        attempt=fields.get("attempt"),
        detail=detail,
    )
