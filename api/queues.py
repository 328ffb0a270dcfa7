"""Owner-scoped reads and commands on processing queues, for the routes.

A queue is visible only to its owner: anyone else gets the same 404 as for a
queue that does not exist, and nothing changes. Reads come from the status
view; in the moment between an upload and the projection catching up, the
queue is described from its aggregate instead, so a client polling right
after ``202`` never sees a 404 for its own queue.

The status and list routes await the reader's ``astatus``/``alist_for_owner``: on Postgres one
round trip on the event loop (no worker thread), the owner checked on the
row it returns, so another tutor's queue costs no more than one's own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio.to_thread

from api.auth import Caller
from api.errors import Conflict, NotFound, shorten
from domain import QueueIsTerminal, QueueNotFound, VideoProcessing
from domain.application import TimelineEntry
from domain.queue import TERMINAL, ProcessingQueue
from projections.queue_status import QueueStatusReader, weighted_progress
from projections.views import ReadModelView

MAX_PAGE = 100


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def status_from_aggregate(queue: ProcessingQueue) -> dict[str, Any]:
    """The status view's row shape, computed from the aggregate (projection lag only)."""
    steps = [
        {
            "step": s.name, "position": i, "status": s.status, "progress": s.progress,
            "attempts": s.attempt, "retries": s.retries, "last_error": s.last_error,
            "provider": s.provider, "model": None, "duration_seconds": None,
            "outputs": s.outputs, "started_at": _iso(s.started_at), "completed_at": _iso(s.completed_at),
        }
        for i, s in enumerate(queue.steps)
    ]
    progress = 100 if queue.status == "completed" else weighted_progress({s["step"]: s["progress"] for s in steps})
    return {
        "queue_id": str(queue.id), "owner_id": queue.owner_id, "attachment_id": queue.attachment_id,
        "status": queue.status, "progress_percentage": progress, "current_step": queue.running_step,
        "running_steps": list(queue.running_steps),
        "error": queue.error, "retries": sum(s["retries"] for s in steps), "version": queue.version,
        "created_at": _iso(queue.created_on), "started_at": None, "finished_at": None,
        "updated_at": _iso(queue.modified_on), "steps": steps,
        "filename": (queue.options or {}).get("filename"),
        "media": (queue.options or {}).get("media") or _compress_media(queue) or "video",
    }


def _compress_media(queue: ProcessingQueue) -> str | None:
    """``"audio"`` when the compress step found sound without picture (the original plays as uploaded)."""
    return next((s.outputs.get("media") for s in queue.steps if s.name == "compress" and s.outputs), None)


class QueueAccess:
    """What a caller may read and do with queues."""

    def __init__(self, app: VideoProcessing, reader: QueueStatusReader) -> None:
        self.app = app
        self.reader = reader

    async def status_async(self, caller: Caller, queue_id: str) -> dict[str, Any]:
        """:meth:`status` on the event loop: one read of the view (the aggregate only in projection lag)."""
        row = await self.reader.astatus(queue_id)
        if row is None:
            queue = await anyio.to_thread.run_sync(self._owned_aggregate, caller, queue_id)
            return status_from_aggregate(queue)
        if row["owner_id"] != caller.owner_id:
            raise self._not_found(queue_id)
        return row

    async def list_async(
        self, caller: Caller, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], bool]:
        rows = await self.reader.alist_for_owner(caller.owner_id, status=status, limit=limit + 1, offset=offset)
        return rows[:limit], len(rows) > limit

    def status(self, caller: Caller, queue_id: str) -> dict[str, Any]:
        """The caller's queue from the status view; 404 for others' and unknown queues."""
        row = self.reader.status(queue_id)
        if row is None:
            queue = self._owned_aggregate(caller, queue_id)
            return status_from_aggregate(queue)
        if row["owner_id"] != caller.owner_id:
            raise self._not_found(queue_id)
        return row

    def list(self, caller: Caller, status: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], bool]:
        rows = self.reader.list_for_owner(caller.owner_id, status=status, limit=limit + 1, offset=offset)
        return rows[:limit], len(rows) > limit

    def cancel(self, caller: Caller, queue_id: str) -> bool:
        """Cancel the caller's queue; False if it already was; 409 once it completed or failed."""
        queue = self._owned_aggregate(caller, queue_id)
        try:
            return self.app.cancel(queue.id, by=caller.owner_id, reason="cancelled by the tutor")
        except QueueIsTerminal as error:
            raise Conflict(
                f"processing queue {shorten(queue_id)} is already {error.status}; "
                "only pending or processing queues can be cancelled"
            ) from None

    def timeline(self, caller: Caller, queue_id: str, after: int = 0) -> list[TimelineEntry]:
        queue = self._owned_aggregate(caller, queue_id)
        return [e for e in self.app.timeline(queue.id) if e.position > after]

    def transcript_key(self, caller: Caller, queue_id: str, fmt: str) -> str:
        """The storage key of the transcript in ``fmt``; 404 until the transcribe step made it."""
        return self.transcript(caller, queue_id, fmt)[0]

    def transcript(self, caller: Caller, queue_id: str, fmt: str) -> tuple[str, str | None]:
        """The storage key of the transcript in ``fmt`` and its language (ISO 639-1, None if unknown);
        404 until the transcribe step made it."""
        row = self.status(caller, queue_id)
        step = next((s for s in row["steps"] if s["step"] == "transcribe"), None)
        if step is None:
            raise NotFound(f"processing queue {shorten(queue_id)} has no transcribe step")
        key = (step.get("outputs") or {}).get(f"transcript_{fmt}")
        if not key:
            state = "is " + step["status"] if step["status"] != "completed" else "completed without it"
            raise NotFound(
                f"the {fmt} transcript of queue {shorten(queue_id)} does not exist yet: "
                f"the transcribe step {state} (queue {row['status']})"
            )
        language = (step.get("outputs") or {}).get("language")
        return str(key), str(language) if language else None

    def _owned_aggregate(self, caller: Caller, queue_id: str) -> ProcessingQueue:
        try:
            queue = self.app.get_queue(queue_id)
        except QueueNotFound:
            raise self._not_found(queue_id) from None
        if queue.owner_id != caller.owner_id or queue.is_deleted:
            raise self._not_found(queue_id)
        return queue

    @staticmethod
    def _not_found(queue_id: str) -> NotFound:
        return NotFound(f"processing queue {shorten(queue_id)} does not exist")


def is_terminal(status: str) -> bool:
    return status in TERMINAL
