"""The public API's response bodies, declared so /openapi.json describes every answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

QueueState = Literal["pending", "processing", "completed", "failed", "cancelled"]
StepState = Literal["pending", "running", "retrying", "completed", "failed", "cancelled"]
NotificationKind = Literal["started", "progress", "completed", "failed", "cancelled"]
TranscriptFormat = Literal["json", "srt", "vtt", "txt"]


class ErrorResponse(BaseModel):
    """Every refusal: what went wrong, in words the caller can act on."""

    error: str


class StepStatus(BaseModel):
    step: str
    position: int
    status: StepState
    progress: int = Field(ge=0, le=100)
    attempts: int
    retries: int
    last_error: str | None = None
    provider: str | None = None
    model: str | None = None
    duration_seconds: float | None = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime | None = None
    completed_at: datetime | None = None


class QueueStatus(BaseModel):
    """The status view of one queue (``video_processing_queue_status``)."""

    queue_id: str
    owner_id: str
    attachment_id: str
    status: QueueState
    progress_percentage: int = Field(
        ge=0, le=100,
        description="the steps' progress weighted by their expected cost (compress 64, audio-convert 4, "
        "transcribe 31, embed 1, over the queue's own steps); 100 once completed",
    )
    current_step: str | None = Field(
        default=None,
        description="the first running step in pipeline order (the failed step after a failure; "
        "null once completed)",
    )
    running_steps: list[str] = Field(
        default_factory=list,
        description="every running step in pipeline order: steps run side by side "
        "(compress beside audio-convert → transcribe → embed)",
    )
    error: str | None = None
    retries: int = 0
    version: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    steps: list[StepStatus]
    filename: str | None = None
    """The uploaded video's original file name (None for an attachment id without one)."""
    media: Literal["video", "audio"] = Field(
        default="video",
        description="what is played: a video, or an audio recording (uploaded as audio: no compress step; "
        "or a video file found to hold only sound: compress completes without a compressed file); "
        "the player plays the original sound",
    )


class QueueAccepted(BaseModel):
    """The answer to an upload: processing is queued (or an earlier queue is reused)."""

    queue_id: str
    status: QueueState
    attachment_id: str
    reused: bool = Field(
        default=False,
        description="true when an earlier queue answers this upload "
        "(same Idempotency-Key, or the same file uploaded again)",
    )


class QueuePage(BaseModel):
    """One page of the caller's queues, newest first."""

    items: list[QueueStatus]
    limit: int
    offset: int
    has_more: bool


class Cancellation(BaseModel):
    queue_id: str
    status: Literal["cancelled"]
    changed: bool = Field(description="false when the queue was already cancelled")


class TimelineEvent(BaseModel):
    """One line of the audit trail."""

    position: int
    timestamp: datetime
    event: str
    step: str | None = None
    attempt: int | None = None
    detail: str


class Timeline(BaseModel):
    queue_id: str
    events: list[TimelineEvent]


class Notification(BaseModel):
    id: str
    queue_id: str
    kind: NotificationKind
    message: str
    created_at: datetime


class NotificationPage(BaseModel):
    items: list[Notification]
    limit: int
    offset: int
    has_more: bool


class Health(BaseModel):
    status: Literal["ok"]


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, Check]
    failed: list[str] = Field(default_factory=list)


class SearchMoment(BaseModel):
    """One moment of a lecture that answers the question."""

    queue_id: str
    filename: str | None = Field(description="the lecture's original file name")
    chunk_index: int
    start_seconds: float = Field(ge=0, description="where to start playing")
    end_seconds: float = Field(ge=0)
    text: str = Field(description="what is said in this moment (the transcript)")
    highlights: list[tuple[int, int]] = Field(
        description="character spans [start, end) of `text` whose words match the question's"
    )
    marked: str = Field(description="`text` as escaped HTML with the matched words in <mark>")
    score: float = Field(description="fused score (relative score fusion of the retrievers, 0..1); higher is better")
    retriever: Literal["keyword", "semantic", "both"] = Field(description="which retrieval found it")


class SearchAnswer(BaseModel):
    """The moments that answer a question, best first."""

    query: str
    mode: Literal["hybrid", "keyword", "semantic"] = Field(
        description="what the answer was built from; `keyword` when the embedding servers could not answer"
    )
    notice: str | None = Field(default=None, description="why the answer is not what was asked for, if it is not")
    unavailable: dict[str, str] = Field(
        default_factory=dict, description="embedding servers that could not embed the question, and why"
    )
    moments: list[SearchMoment]


class MediaLinks(BaseModel):
    """Signed links a <video> element can use (it cannot send a bearer token)."""

    queue_id: str
    video_url: str = Field(
        description="the compressed video (the original upload in a queue without compress: an audio "
        "recording or an already small video), served with its own Content-Type; answers HTTP Range requests"
    )
    captions_url: str | None = Field(default=None, description="the VTT transcript, for a <track>")
    expires_at: datetime
    media: Literal["video", "audio"] = Field(
        default="video", description="what video_url plays: a video, or an audio recording (sound only)"
    )
