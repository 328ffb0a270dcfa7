"""Search over the caller's lectures, and the signed links that play them.

- ``GET /api/search?q=&limit=&queue_id=&mode=``: moments of the caller's completed
  lectures (one lecture with ``queue_id``), hybrid keyword + semantic.
- ``GET /api/video-processing/status/{queueId}/media``: short-lived links to the
  compressed video and its VTT captions, for a ``<video>`` element.
- ``GET /media/{token}``: the artifact a link names, with HTTP Range requests; no
  bearer token (the link is the proof), nothing but that one artifact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, StreamingResponse

from api.auth import CurrentTutor
from api.errors import ApiError, NotFound
from api.media import playable_type
from api.media_links import InvalidMediaLink, MediaSigner
from api.routes.queues import PREFIX, QUEUE_RESPONSES, QueueId
from api.schemas import ErrorResponse, MediaLinks, SearchAnswer
from api.search import LectureSearch, SearchMode, result_json
from api.services import Services
from handlers.providers.recordings import PLAYBACK_ORIGINAL
from handlers.storage import ArtifactNotFound

MEDIA_TYPES = {"video": "video/mp4", "captions": "text/vtt; charset=utf-8"}


class InvalidQuery(ApiError):
    status = 422


class LinkRefused(ApiError):
    status = 403


def search_router(services: Services, search: LectureSearch, signer: MediaSigner) -> APIRouter:
    router = APIRouter(tags=["search and playback"])
    settings = services.settings

    @router.get("/api/search", response_model=SearchAnswer, responses=QUEUE_RESPONSES)
    def search_lectures(
        caller: CurrentTutor,
        q: Annotated[str, Query(description="a question or a few words, as remembered", max_length=10_000)],
        limit: Annotated[int, Query(ge=1, le=50)] = 10,
        queue_id: Annotated[str | None, Query(description="search only this lecture", max_length=200)] = None,
        mode: Annotated[SearchMode, Query(description="hybrid (default), keyword or semantic")] = "hybrid",
    ) -> dict[str, Any]:
        """The moments of the caller's completed lectures that answer ``q``, best first.

        When no embedding server can embed the question at once (asleep, down), the
        answer comes from keywords alone and ``notice`` says so; it never waits for a
        server to wake.
        """
        question = q.strip()
        if not question:
            raise InvalidQuery("the search question is empty")
        if len(question) > settings.search_max_query_chars:
            raise InvalidQuery(
                f"the search question has {len(question)} characters; at most "
                f"{settings.search_max_query_chars} are searched"
            )
        if queue_id is not None:
            services.queues.status(caller, queue_id)  # 404 unless it is the caller's
        return result_json(search.search(caller.owner_id, question, limit=limit, queue_id=queue_id, mode=mode))

    @router.get(PREFIX + "/status/{queueId}/media", response_model=MediaLinks, responses=QUEUE_RESPONSES)
    def media_links(queue_id: QueueId, caller: CurrentTutor) -> MediaLinks:
        """Signed links to the compressed video and its captions, valid for a short time.

        A ``<video>`` element cannot send the bearer token, so it gets links that
        open exactly these artifacts of this queue until ``expires_at``.
        """
        row = services.queues.status(caller, queue_id)
        media = row.get("media") or "video"
        outputs = {s["step"]: s.get("outputs") or {} for s in row["steps"]}
        compressed = outputs.get("compress", {})
        video = compressed.get("video")
        if not video and ("compress" not in outputs or compressed.get("playback") == PLAYBACK_ORIGINAL):
            # a queue without the compress step (skip_compress: an already small video; an audio recording),
            # or whose compress step found sound without picture, plays its original upload
            video = (services.queues.app.get_queue(queue_id).options or {}).get("source")
            media = compressed.get("media") or media
        if not video:
            raise NotFound(f"the compressed video of queue {queue_id} does not exist yet (queue {row['status']})")
        token, expires = signer.sign((queue_id, caller.owner_id, "video", str(video)))
        captions = outputs.get("transcribe", {}).get("transcript_vtt")
        captions_url = None
        if captions:
            captions_token, _ = signer.sign((queue_id, caller.owner_id, "captions", str(captions)))
            captions_url = f"/media/{captions_token}"
        return MediaLinks(
            queue_id=queue_id,
            video_url=f"/media/{token}",
            captions_url=captions_url,
            expires_at=datetime.fromtimestamp(expires, UTC),
            media=media,
        )

    @router.get(
        "/media/{token}",
        response_class=StreamingResponse,
        responses={
            200: {"description": "the artifact", "content": {t: {"schema": {"type": "string"}} for t in MEDIA_TYPES.values()}},
            206: {"description": "the requested byte range of the video"},
            403: {"model": ErrorResponse, "description": "the link is altered, forged or expired"},
            404: {"model": ErrorResponse, "description": "the artifact no longer exists"},
        },
    )
    def media(token: Annotated[str, Path(max_length=4096)], request: Request) -> Any:
        """The artifact a signed link names; the video answers HTTP Range requests (seeking)."""
        try:
            grant = signer.verify(token)
        except InvalidMediaLink as error:
            raise LinkRefused(str(error)) from None
        media_type = MEDIA_TYPES.get(grant.kind)
        if grant.kind == "video":  # the compressed MP4, or an original played as uploaded (video or audio)
            media_type = playable_type(grant.key)
        if media_type is None:
            raise LinkRefused("this media link names nothing playable")
        local_path = getattr(services.storage, "path", None)
        headers = {"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"}
        if callable(local_path):
            path = local_path(grant.key)
            if not path.is_file():
                raise NotFound("this lecture's media no longer exists")
            return FileResponse(path, media_type=media_type, headers=headers)
        try:
            size = services.storage.size(grant.key)
        except ArtifactNotFound:
            raise NotFound("this lecture's media no longer exists") from None
        # Remote storage (MEGA) streams the whole object; browsers play it without seeking ahead.
        return StreamingResponse(
            iter(services.storage.iter_bytes(grant.key)), media_type=media_type,
            headers={**headers, "Content-Length": str(size)},
        )

    return router

