"""The notifications projection: in-app rows for the moments a tutor cares about.

One row in ``notifications`` per notifiable event of a queue:

- ``started``: the queue's first step began (its first attempt);
- ``completed``, ``failed`` (with the reason), ``cancelled``;
- ``progress``: a step finished (only when ``VIDPIPE_NOTIFY_PROGRESS`` is on).

A deleted lecture (``Deleted``) takes its rows with it, and the cancellation
that deleting a running queue records is not announced.

Row ids are ``<queue id>-<event version>`` and timestamps come from the events,
so a rebuild gives the same rows, and the push notifier (handlers/notifiers)
refers to the same ids when it records its deliveries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.queue import DELETED_REASON, ProcessingQueue
from projections.views import ReadModelView, SqlSession

Q = ProcessingQueue


@dataclass(frozen=True)
class Notice:
    """What to tell the owner about one event."""

    id: str
    queue_id: str
    kind: str
    message: str
    created_at: datetime


def is_first_start(domain_event: Any) -> bool:
    """The queue's first step start, whichever step it is (compress and audio-convert start side by side):
    nothing but a start can follow ``Created`` (version 1) while a queue runs, so it is version 2."""
    return isinstance(domain_event, Q.StepStarted) and domain_event.originator_version == 2


def notice_for(domain_event: Any, filename: str | None, *, progress: bool = False) -> Notice | None:
    """The notice an event deserves, or None."""
    name = f"“{filename}”" if filename else "your video"
    kind, message = None, ""
    if is_first_start(domain_event):
        kind, message = "started", f"Processing of {name} has started."
    elif isinstance(domain_event, Q.StepCompleted) and progress:
        kind, message = "progress", f"{name[0].upper()}{name[1:]}: {domain_event.step} finished."
    elif isinstance(domain_event, Q.Completed):
        kind, message = "completed", f"{name[0].upper()}{name[1:]} is ready: its transcript and search are available."
    elif isinstance(domain_event, Q.Failed):
        kind, message = "failed", f"Processing of {name} failed: {domain_event.reason}"
    elif isinstance(domain_event, Q.Cancelled) and domain_event.reason != DELETED_REASON:
        kind, message = "cancelled", f"Processing of {name} was cancelled."
    if kind is None:
        return None
    queue_id = str(domain_event.originator_id)
    return Notice(
        id=f"{queue_id}-{domain_event.originator_version}",
        queue_id=queue_id,
        kind=kind,
        message=message,
        created_at=domain_event.timestamp,
    )


class NotificationsProjection:
    """Writes ``notifications`` (and the owners it needs in ``notification_queues``)."""

    name = "notifications"

    def __init__(self, *, progress: bool = False) -> None:
        self.progress = progress

    def prepare(self, events: Sequence[Any]) -> None:
        """No side effects: everything happens in the transaction."""

    def reset(self, session: SqlSession) -> None:
        session.execute("DELETE FROM notifications")
        session.execute("DELETE FROM notification_queues")

    def apply(self, domain_event: Any, session: SqlSession) -> None:
        queue_id = str(domain_event.originator_id)
        if isinstance(domain_event, Q.Deleted):  # the lecture is gone: so are its notifications
            session.execute("DELETE FROM notifications WHERE queue_id = :id", {"id": queue_id})
            session.execute("DELETE FROM notification_queues WHERE queue_id = :id", {"id": queue_id})
            return
        if isinstance(domain_event, Q.Created):
            session.execute(
                "INSERT INTO notification_queues (queue_id, owner_id, filename) "
                "VALUES (:id, :owner, :filename) ON CONFLICT (queue_id) DO NOTHING",
                {"id": queue_id, "owner": domain_event.owner_id,
                 "filename": (domain_event.options or {}).get("filename")},
            )
            return
        queue = session.fetchone(
            "SELECT owner_id, filename FROM notification_queues WHERE queue_id = :id",
            {"id": queue_id},
        )
        if queue is None:
            return
        notice = notice_for(domain_event, queue["filename"], progress=self.progress)
        if notice is None:
            return
        session.execute(
            "INSERT INTO notifications (id, owner_id, queue_id, kind, message, created_at) "
            "VALUES (:id, :owner, :queue, :kind, :message, :at) ON CONFLICT (id) DO NOTHING",
            {"id": notice.id, "owner": queue["owner_id"], "queue": queue_id, "kind": notice.kind,
             "message": notice.message, "at": notice.created_at.isoformat()},
        )


class NotificationReader:
    """Queries on notifications and their deliveries."""

    def __init__(self, view: ReadModelView) -> None:
        self.view = view

    def list_for_owner(self, owner_id: str, *, limit: int = 20, offset: int = 0) -> list[dict[str, Any]]:
        """The owner's notifications, newest first."""
        rows = self.view.fetchall(
            "SELECT id, queue_id, kind, message, created_at FROM notifications "
            "WHERE owner_id = :owner ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset",
            {"owner": owner_id, "limit": limit, "offset": offset},
        )
        return [_iso(row) for row in rows]

    def for_queue(self, queue_id: str) -> list[dict[str, Any]]:
        rows = self.view.fetchall(
            "SELECT id, owner_id, queue_id, kind, message, created_at FROM notifications "
            "WHERE queue_id = :id ORDER BY created_at, id",
            {"id": queue_id},
        )
        return [_iso(row) for row in rows]

    def deliveries(self, queue_id: str) -> list[dict[str, Any]]:
        """Every push attempt for the queue's notifications, in order."""
        rows = self.view.fetchall(
            "SELECT * FROM notification_deliveries WHERE queue_id = :id "
            "ORDER BY attempted_at, notification_id, attempt",
            {"id": queue_id},
        )
        return [_iso(row) for row in rows]

    def delivery_counts(self) -> list[dict[str, Any]]:
        """Attempts by channel and outcome (for /metrics)."""
        return self.view.fetchall(
            "SELECT channel, outcome, COUNT(*) AS n FROM notification_deliveries "
            "GROUP BY channel, outcome ORDER BY channel, outcome"
        )


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
