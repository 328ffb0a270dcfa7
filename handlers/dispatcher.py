"""The dispatcher: follows the event log and publishes the step messages.

The event log is the outbox. On

- ``Created``: every step without predecessors in the queue's graph, attempt 1
  (by default compress and audio-convert, which then run side by side);
- ``StepCompleted``: every step the completion unblocked (the event names them:
  its predecessors have now all completed), attempt 1; a ``StepCompleted``
  recorded before graphs (no ``unblocked``) starts the next step in line;
- ``Resumed`` (the tutor retried a failed or cancelled queue): every step that
  runs again and whose predecessors completed, at the attempt the event names
  (after its last one, so deduplication ids are never reused);
- ``StepRetried``: the same step, the next attempt, delayed by the event's
  ``delay_seconds`` (QStash carries the delay; no handler sleeps);
- ``Cancelled``: every message of the queue still pending is cancelled.

Every step message names the step-failure webhook as its failure callback
(:func:`step_failure_url`): when QStash gives up delivering it (its retries
are spent: the API was down, or the handler kept answering 5xx), QStash
dead-letters it and POSTs there, and :mod:`handlers.webhooks` fails the step
for good, so the tutor hears of it and can retry the queue.

Every message of a step kind carries that kind's flow-control key and
parallelism (:mod:`handlers.flow_control`), a retry too, so QStash delivers
at most that many of the kind at once across every replica.

Publishing happens before the batch's transaction (so SQLite's write lock is
not held during HTTP calls); the transaction then records the message ids in
``video_processing_messages`` and the dispatcher's position. If the process
dies in between, the batch is dispatched again: rows already recorded are
skipped, QStash's deduplication id (queue, step, attempt) returns the same
message for ten minutes, and the handlers ignore an attempt already done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import singledispatchmethod
from typing import Any

from domain.queue import ProcessingQueue
from handlers.bus import MessageBus
from handlers.failpoints import failpoint
from handlers.flow_control import StepFlowControl
from handlers.step_runner import StepMessage
from projections.views import ReadModelView, SqlSession

logger = logging.getLogger(__name__)
Q = ProcessingQueue


@dataclass(frozen=True)
class Publication:
    message: StepMessage
    delay_seconds: float

    @property
    def deduplication_id(self) -> str:
        return f"{self.message.queue_id}-{self.message.step}-{self.message.attempt}"


def _event_key(domain_event: Any) -> tuple[str, int]:
    return (str(domain_event.originator_id), domain_event.originator_version)


def step_url(base_url: str, step: str) -> str:
    return f"{base_url.rstrip('/')}/api/video-processing/steps/{step}"


STEP_FAILURES_PATH = "/api/video-processing/step-failures"


def step_failure_url(base_url: str) -> str:
    """Where QStash reports a step message it dead-lettered (its ``Upstash-Failure-Callback``)."""
    return f"{base_url.rstrip('/')}{STEP_FAILURES_PATH}"


class Dispatcher:
    """A follower of the log with side effects: publishing and cancelling messages."""

    name = "dispatcher"

    def __init__(
        self, bus: MessageBus, base_url: str, view: ReadModelView, flow_control: StepFlowControl | None = None
    ) -> None:
        self.bus = bus
        self.base_url = base_url
        self.view = view
        self.flow_control = flow_control
        self._published: dict[tuple[str, str, int], tuple[str, float]] = {}
        self._keys: dict[tuple[str, int], list[tuple[str, str, int]]] = {}
        """The messages each event of the batch asked for, by (queue, version)."""
        self._cancelled: set[str] = set()

    # --------------------------------------------------- before the transaction
    def prepare(self, events: Sequence[Any]) -> None:
        self._published.clear()
        self._cancelled.clear()
        self._keys.clear()
        for domain_event in events:
            if isinstance(domain_event, Q.Cancelled):
                self._cancel_all(str(domain_event.originator_id))
                continue
            for publication in self._publications(domain_event):
                self._publish(publication)
                m = publication.message
                self._keys.setdefault(_event_key(domain_event), []).append((m.queue_id, m.step, m.attempt))

    def _publications(self, e: Any) -> list[Publication]:
        qid = str(e.originator_id)
        if isinstance(e, Q.Created):
            graph = getattr(e, "graph", None) or {}
            roots = [s for s in e.steps if not graph.get(s)] if graph else e.steps[:1]
            return [Publication(StepMessage(qid, step, 1), 0.0) for step in roots]
        if isinstance(e, Q.StepRetried):
            return [Publication(StepMessage(qid, e.step, e.next_attempt), e.delay_seconds)]
        if isinstance(e, Q.StepCompleted):
            unblocked = getattr(e, "unblocked", None)
            if unblocked is None:  # recorded before graphs: the next step in line
                following = self._following_step(qid, e.step)
                unblocked = [] if following is None else [following]
            attempts = getattr(e, "unblocked_attempts", None) or {}
            return [Publication(StepMessage(qid, step, attempts.get(step, 1)), 0.0) for step in unblocked]
        if isinstance(e, Q.Resumed):
            return [Publication(StepMessage(qid, step, e.attempts[step]), 0.0) for step in e.ready]
        return []

    def _following_step(self, queue_id: str, step: str) -> str | None:
        row = self.view.fetchone(
            "SELECT step FROM video_processing_steps WHERE queue_id = :id AND position = "
            "(SELECT position + 1 FROM video_processing_steps WHERE queue_id = :id AND step = :step)",
            {"id": queue_id, "step": step},
        )
        return None if row is None else row["step"]

    def _publish(self, publication: Publication) -> None:
        m = publication.message
        key = (m.queue_id, m.step, m.attempt)
        if self._recorded(key):
            return
        failpoint("dispatcher.before_publish")  # decided to publish, not published
        message_id = self.bus.publish(
            step_url(self.base_url, m.step),
            m.as_body(),
            deduplication_id=publication.deduplication_id,
            delay_seconds=publication.delay_seconds,
            flow_control=None if self.flow_control is None else self.flow_control.for_step(m.step),
            failure_callback=step_failure_url(self.base_url),
        )
        self._published[key] = (message_id, publication.delay_seconds)
        failpoint("dispatcher.after_publish")  # published, not yet recorded in video_processing_messages
        logger.info(
            "queue %s: published %s attempt %d as %s (delay %.0fs)",
            m.queue_id, m.step, m.attempt, message_id, publication.delay_seconds,
        )

    def _recorded(self, key: tuple[str, str, int]) -> bool:
        return key in self._published or self.view.fetchone(
            "SELECT 1 AS found FROM video_processing_messages "
            "WHERE queue_id = :id AND step = :step AND attempt = :attempt",
            {"id": key[0], "step": key[1], "attempt": key[2]},
        ) is not None

    def _cancel_all(self, queue_id: str) -> None:
        rows = self.view.fetchall(
            "SELECT message_id FROM video_processing_messages "
            "WHERE queue_id = :id AND status = 'published'",
            {"id": queue_id},
        )
        ids = [r["message_id"] for r in rows] + [
            mid for (qid, _, _), (mid, _) in self._published.items() if qid == queue_id
        ]
        for message_id in ids:
            self.bus.cancel(message_id)
        self._cancelled.add(queue_id)
        logger.info("queue %s: cancelled %d pending message(s)", queue_id, len(ids))

    # ------------------------------------------------------ in the transaction
    @singledispatchmethod
    def apply(self, domain_event: Any, session: SqlSession) -> None:
        """Record what ``prepare`` published for this event."""
        for publication in self._keys.get(_event_key(domain_event), []):
            if publication not in self._published:
                continue  # recorded by an earlier batch
            message_id, delay = self._published[publication]
            session.execute(
                "INSERT INTO video_processing_messages (queue_id, step, attempt, message_id, "
                "delay_seconds, status, published_at) VALUES "
                "(:id, :step, :attempt, :message_id, :delay, 'published', :at) "
                "ON CONFLICT (queue_id, step, attempt) DO NOTHING",
                {
                    "id": publication[0], "step": publication[1], "attempt": publication[2],
                    "message_id": message_id, "delay": delay, "at": domain_event.timestamp.isoformat(),
                },
            )

    @apply.register
    def _(self, e: Q.Cancelled, session: SqlSession) -> None:
        session.execute(
            "UPDATE video_processing_messages SET status = 'cancelled' "
            "WHERE queue_id = :id AND status = 'published'",
            {"id": str(e.originator_id)},
        )

    def close(self) -> None:
        close = getattr(self.bus, "close", None)
        if close is not None:
            close()

    def reset(self, session: SqlSession) -> None:
        """The dispatcher's effects are not rebuilt: messages already published stay published."""
