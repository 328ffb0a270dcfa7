"""``POST /api/video-processing/status/{id}/retry``: run a failed or cancelled queue again.

The queue's steps not completed run again (completed steps keep their
artifacts, which the later steps read), each with a fresh retry budget and
from an attempt never used before; the audit trail records ``Resumed`` with
who asked. Owner only: another tutor's, an unknown and a deleted queue are
404. A double click, or a retried request, answers ``changed: false`` and
records nothing; a completed queue, and one that has not ended (and was not
retried), is 409.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.auth import Caller, CurrentTutor
from api.errors import Conflict, NotFound, shorten
from api.routes.queues import PREFIX, QUEUE_RESPONSES, QueueId
from api.schemas import ErrorResponse, QueueState
from api.services import Services
from domain import NotResumable, QueueIsTerminal, QueueNotFound


class Retry(BaseModel):
    """The answer to a retry: the queue runs again."""

    queue_id: str
    status: QueueState = Field(description="processing (or already further, for quick steps)")
    changed: bool = Field(description="false when the queue was already running again (a double click)")
    steps: list[str] = Field(description="the steps that run again (every step not completed)")


def retry_router(services: Services) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["video processing"])
    app = services.core.app

    def retry_owned(caller: Caller, queue_id: str) -> Retry:
        try:
            queue = app.get_queue(queue_id)
        except QueueNotFound:
            queue = None
        if queue is None or queue.owner_id != caller.owner_id or queue.is_deleted:
            raise NotFound(f"processing queue {shorten(queue_id)} does not exist")
        try:
            changed = app.resume(queue.id, by=caller.owner_id)
        except (NotResumable, QueueIsTerminal) as error:
            raise Conflict(
                f"processing queue {shorten(queue_id)} is {error.status}; only failed or cancelled queues can be retried"
            ) from None
        queue = app.get_queue(queue.id)
        again = [s.name for s in queue.steps if s.status != "completed"]
        return Retry(queue_id=str(queue.id), status=queue.status, changed=changed, steps=again)

    @router.post("/status/{queueId}/retry", status_code=202, response_model=Retry, responses={
        **QUEUE_RESPONSES,
        409: {"model": ErrorResponse, "description": "the queue completed, or has not ended"},
    })
    async def retry(queue_id: QueueId, caller: CurrentTutor) -> Retry:
        """Run a failed or cancelled queue again from its steps not completed."""
        return await run_in_threadpool(retry_owned, caller, queue_id)

    return router
