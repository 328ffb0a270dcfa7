"""``POST /api/video-processing/steps/{step}``: QStash's signed step deliveries.

Authenticated by ``Upstash-Signature`` only (never a user's JWT): the JWT is
verified with ``qstash.Receiver`` against the current and next signing keys,
the exact public URL QStash was asked to call, and the raw body. Anything
else is 401 and nothing is recorded.

At most ``max_concurrent_steps`` deliveries run their step at once in this
process; the others wait for a slot as coroutines, holding no thread. Steps
run in threads of their own limiter, never in the pool that serves the public
API's synchronous endpoints: however many deliveries QStash sends at once, the
work (and its ffmpeg processes, memory and CPU) stays bounded and a tutor's
status request does not queue behind a hundred running steps. Waiting spends
none of QStash's retries (a 503 would).
"""

from __future__ import annotations

import logging
from typing import Literal

import anyio.to_thread
from anyio import CapacityLimiter
from eventsourcing.persistence import PersistenceError
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from qstash import Receiver
from qstash.errors import SignatureError

from handlers.dispatcher import step_url
from handlers.step_runner import NON_RETRYABLE, BadMessage, StepMessage, StepRunner

logger = logging.getLogger(__name__)

StepName = Literal["compress", "audio-convert", "transcribe", "embed"]
CLOCK_TOLERANCE_SECONDS = 30
DATABASE_RETRY_AFTER_SECONDS = 10


class StepResponse(BaseModel):
    """What the handler tells QStash (and an operator reading QStash's logs)."""

    completed: str | None = None
    attempt: int | None = None
    retry_in_seconds: float | None = None
    reason: str | None = None
    cancelled: bool | None = None
    ignored: str | None = None
    error: str | None = None


def steps_router(
    runner: StepRunner, receiver: Receiver, public_base_url: str, *, max_concurrent_steps: int = 8
) -> APIRouter:
    router = APIRouter(tags=["step webhooks (QStash only)"])
    slots = CapacityLimiter(max_concurrent_steps)

    @router.post(
        "/api/video-processing/steps/{step}",
        response_model=StepResponse,
        response_model_exclude_none=True,
        responses={
            401: {"model": StepResponse, "description": "missing or invalid Upstash-Signature"},
            489: {"model": StepResponse, "description": "failed for good; QStash must not retry"},
            503: {"model": StepResponse, "description": "database unreachable; retry later"},
        },
    )
    async def step_webhook(step: StepName, request: Request) -> JSONResponse:
        raw = await request.body()
        signature = request.headers.get("upstash-signature")
        if not signature:
            return JSONResponse({"error": "missing Upstash-Signature header"}, status_code=401)
        try:
            receiver.verify(
                signature=signature,
                body=raw.decode("utf-8"),
                url=step_url(public_base_url, step),
                clock_tolerance=CLOCK_TOLERANCE_SECONDS,
            )
        except (SignatureError, UnicodeDecodeError) as error:
            logger.warning("rejected a %s delivery: %s", step, error)
            return JSONResponse({"error": f"invalid Upstash-Signature: {error}"}, status_code=401)
        try:
            message = StepMessage.parse(raw)
            if message.step != step:
                raise BadMessage(f"message for step {message.step!r} delivered to {step!r}")
        except BadMessage as error:
            return JSONResponse({"error": str(error)}, status_code=489, headers=NON_RETRYABLE)
        message_id = request.headers.get("upstash-message-id")
        try:
            outcome = await anyio.to_thread.run_sync(runner.handle, message, message_id, limiter=slots)
        except PersistenceError as error:
            logger.warning("database unreachable while handling %s: %s", step, error)
            return JSONResponse(
                {"error": "the database is unreachable; QStash will deliver again"},
                status_code=503,
                headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
            )
        return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)

    return router
