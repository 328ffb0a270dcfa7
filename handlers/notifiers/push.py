"""The push notifier: a follower of the event log that sends OneSignal pushes.

Like the dispatcher, it does its side effects in ``prepare`` (before the
batch's transaction) and records them in ``apply``: one row in
``notification_deliveries`` per attempt, with its outcome (``delivered`` or
``failed``, and why). A transient failure (unreachable, 5xx, 429) is tried
again at once, up to ``attempts`` times; then the failure is recorded and
the follower moves on. A push never fails, delays or retries the video's
queue: the queue's events are already saved when this runs.

A notification already recorded (a batch re-run after a crash) is not sent
again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from domain import VideoProcessing
from handlers.errors import ProviderError
from handlers.notifiers import Notifier, PushMessage
from projections.notifications import Notice, is_first_start, notice_for
from projections.views import ReadModelView, SqlSession

logger = logging.getLogger(__name__)

HEADINGS = {
    "started": "Processing started",
    "progress": "Processing progress",
    "completed": "Your video is ready",
    "failed": "Processing failed",
    "cancelled": "Processing cancelled",
}


@dataclass(frozen=True)
class Attempt:
    notice: Notice
    owner_id: str
    number: int
    outcome: str
    detail: str
    provider_id: str | None
    at: datetime


class PushNotifier:
    """Sends a push per notice and records each attempt."""

    name = "push"

    def __init__(
        self,
        app: VideoProcessing,
        view: ReadModelView,
        notifier: Notifier,
        *,
        attempts: int = 2,
        pause_seconds: float = 0.2,
        progress: bool = False,
    ) -> None:
        self.app = app
        self.view = view
        self.notifier = notifier
        self.attempts = attempts
        self.pause_seconds = pause_seconds
        self.progress = progress
        self._done: dict[str, list[Attempt]] = {}

    # --------------------------------------------------- before the transaction
    def prepare(self, events: Sequence[Any]) -> None:
        self._done.clear()
        for domain_event in events:
            if not self._may_notify(domain_event):
                continue
            queue = self.app.get_queue(domain_event.originator_id)
            notice = notice_for(domain_event, queue.options.get("filename"), progress=self.progress)
            if notice is None or self._recorded(notice.id):
                continue
            self._done[notice.id] = self._deliver(notice, queue.owner_id)

    def _may_notify(self, domain_event: Any) -> bool:
        """A cheap filter, so only notifiable events load their queue."""
        kind = type(domain_event).__name__
        if kind == "StepStarted":
            return is_first_start(domain_event)
        if kind == "StepCompleted":
            return self.progress
        return kind in ("Completed", "Failed", "Cancelled")

    def _deliver(self, notice: Notice, owner_id: str) -> list[Attempt]:
        message = PushMessage(
            external_user_id=owner_id,
            heading=HEADINGS[notice.kind],
            text=notice.message,
            data={"queue_id": notice.queue_id, "kind": notice.kind},
        )
        attempts: list[Attempt] = []
        for number in range(1, self.attempts + 1):
            try:
                receipt = self.notifier.send(message)
            except ProviderError as error:
                attempts.append(self._attempt(notice, owner_id, number, "failed", str(error), None))
                logger.warning("push %s to %s (try %d): %s", notice.kind, owner_id, number, error)
                if not error.transient or number == self.attempts:
                    break
                time.sleep(self.pause_seconds)
                continue
            attempts.append(
                self._attempt(notice, owner_id, number, "delivered", receipt.detail, receipt.provider_id)
            )
            break
        return attempts

    def _attempt(self, notice: Notice, owner: str, number: int, outcome: str, detail: str, pid: str | None) -> Attempt:
        return Attempt(notice, owner, number, outcome, detail, pid, datetime.now(timezone.utc))

    def _recorded(self, notice_id: str) -> bool:
        return self.view.fetchone(
            "SELECT 1 AS found FROM notification_deliveries WHERE notification_id = :id AND channel = :channel",
            {"id": notice_id, "channel": self.notifier.name},
        ) is not None

    # ------------------------------------------------------ in the transaction
    def apply(self, domain_event: Any, session: SqlSession) -> None:
        notice_id = f"{domain_event.originator_id}-{domain_event.originator_version}"
        for a in self._done.get(notice_id, []):
            session.execute(
                "INSERT INTO notification_deliveries (notification_id, channel, attempt, owner_id, "
                "queue_id, kind, outcome, detail, provider_id, attempted_at) VALUES (:id, :channel, "
                ":attempt, :owner, :queue, :kind, :outcome, :detail, :pid, :at) "
                "ON CONFLICT (notification_id, channel, attempt) DO NOTHING",
                {"id": a.notice.id, "channel": self.notifier.name, "attempt": a.number,
                 "owner": a.owner_id, "queue": a.notice.queue_id, "kind": a.notice.kind,
                 "outcome": a.outcome, "detail": a.detail or None, "pid": a.provider_id,
                 "at": a.at.isoformat()},
            )

    def reset(self, session: SqlSession) -> None:
        """Pushes already sent stay sent: a rebuild does not send them again."""
