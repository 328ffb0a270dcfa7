"""``DELETE /api/lectures/{queueId}``: the tutor deletes a lecture and everything derived from it.

Not ``DELETE /api/video-processing/status/{id}``, which keeps its meaning
(cancel; the queue and its audit trail stay). Deleting answers ``204``; the
lecture's owner only — anyone else, an unknown id and a lecture deleted
already get ``404`` (so a repeated delete is ``404``: the lecture does not
exist any more, as ``GET`` says too). What goes and what stays: see
:mod:`api.deletion`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.concurrency import run_in_threadpool

from api.auth import CurrentTutor
from api.deletion import LectureDeletion
from api.routes.queues import QUEUE_RESPONSES

PREFIX = "/api/lectures"
LectureId = Annotated[str, Path(alias="queueId", description="the lecture's queue id (returned by the upload)")]


def lectures_router(deletion: LectureDeletion) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["lectures"])

    @router.delete(
        "/{queueId}",
        status_code=204,
        response_class=Response,
        responses={**QUEUE_RESPONSES, 204: {"description": "deleted: the video, its artifacts, transcripts, "
                                            "embeddings, search moments and notifications are gone"}},
    )
    async def delete_lecture(queue_id: LectureId, caller: CurrentTutor) -> Response:
        """Delete the lecture (cancelling it first if it still runs); the audit log keeps a tombstone."""
        await run_in_threadpool(deletion.delete, caller, queue_id)
        return Response(status_code=204)

    return router
