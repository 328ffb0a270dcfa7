"""``POST /api/video-processing/steps/{step}``: QStash's signed step deliveries.

Authenticated by ``Upstash-Signature`` only (never a user's JWT): the JWT is
verified with ``qstash.Receiver`` against the current and next signing keys,
the exact public URL QStash was asked to call, and the raw body. Anything
else is 401, naming the check that failed, and nothing is recorded.

The body is read last and never whole when it should not be: a delivery
whose signature header is missing, not a JWT, or fails any check the header
alone allows (key, issuer, expiry, URL: :mod:`handlers.signatures`) is
refused before a byte of it is read; one whose ``Content-Length`` is over
``max_body_bytes`` (QStash sends at most 1 MB) gets 413 likewise; any other
is read up to that cap and refused with 413 as soon as it passes it, so an
unauthenticated gigabyte costs the process nothing. Early refusals say
``Connection: close``, so the server does not go on reading what the client
still sends.

At most ``max_concurrent_steps`` deliveries run their step at once in this
process; the others wait for a slot as coroutines, holding no thread. Steps
run in threads of their own limiter, never in the pool that serves the public
API's synchronous endpoints: however many deliveries QStash sends at once, the
work (and its ffmpeg processes, memory and CPU) stays bounded and a tutor's
status request does not queue behind a hundred running steps. Waiting spends
none of QStash's retries (a 503 would), but it does run inside the delivery:
it holds the step kind's flow-control slot and counts toward QStash's delivery
timeout. Across replicas, QStash's flow control (:mod:`handlers.flow_control`)
bounds each step kind before delivery; this limiter bounds one process.

``POST /api/video-processing/step-failures`` is where QStash reports a step
message it dead-lettered (every step message names it as its
``Upstash-Failure-Callback``): signed and size-limited like a delivery, with
the same refusals. If the message's attempt is still the step's current one
(running, or the next one the step awaits), the step and the queue fail for
good with a reason the tutor reads (``the compress step could not be
delivered: the service answered 503 to 4 attempts``) and QStash's ``dlqId``
in the ``StepFailed`` event; the tutor is notified and may retry the queue.
A duplicate report, or one about an attempt that ended or that a retry of the
queue superseded, changes nothing and is answered 200 (so QStash stops); a
body that is not QStash's report about a step message is 400.
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
from starlette.requests import ClientDisconnect

from domain import DomainError, VideoProcessing
from handlers.dead_letters import BadFailureReport, DeadLetter, parse_failure_report
from handlers.dispatcher import STEP_FAILURES_PATH, step_failure_url, step_url
from handlers.signatures import SignatureRejected, StepSignatures
from handlers.step_runner import NON_RETRYABLE, BadMessage, Outcome, StepMessage, StepRunner

logger = logging.getLogger(__name__)

StepName = Literal["compress", "audio-convert", "transcribe", "embed"]
DATABASE_RETRY_AFTER_SECONDS = 10
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""QStash's own cap on a message body is 1 MB; a step message is about a hundred bytes."""
CLOSE = {"Connection": "close"}


class BodyTooLarge(Exception):
    """The request body passed the cap; the rest of it was not read."""


class StepResponse(BaseModel):
    """What the handler tells QStash (and an operator reading QStash's logs)."""

    completed: str | None = None
    attempt: int | None = None
    retry_in_seconds: float | None = None
    reason: str | None = None
    cancelled: bool | None = None
    ignored: str | None = None
    error: str | None = None


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, or :class:`BodyTooLarge` as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise BodyTooLarge
        body.extend(chunk)
    return bytes(body)


class StepFailureResponse(BaseModel):
    """What the step-failure webhook tells QStash about a dead-lettered step message."""

    failed: str | None = None
    """The step that failed for good (the queue failed with it)."""
    attempt: int | None = None
    reason: str | None = None
    ignored: str | None = None
    """Why nothing changed: the attempt ended or was superseded, the queue ended or is unknown."""
    error: str | None = None


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse(
        {"error": f"a step message is at most {limit} bytes (VIDPIPE_MAX_STEP_BODY_BYTES); QStash sends at most 1 MB"},
        status_code=413,
        headers=CLOSE,
    )


def _rejected(what: str, error: SignatureRejected, *, before_body: bool) -> JSONResponse:
    logger.warning("rejected a %s delivery: %s", what, error)
    return JSONResponse({"error": str(error)}, status_code=401, headers=CLOSE if before_body else None)


def _database_unreachable(what: str, error: Exception) -> JSONResponse:
    logger.warning("database unreachable while handling %s: %s", what, error)
    return JSONResponse(
        {"error": "the database is unreachable; QStash will deliver again"},
        status_code=503,
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


async def signed_body(
    request: Request, signatures: StepSignatures, url: str, max_body_bytes: int, what: str
) -> bytes | JSONResponse:
    """The body of a delivery QStash signed for ``url``, or the refusal to answer instead."""
    signature = request.headers.get("upstash-signature")
    try:
        signatures.check_header(signature, url)
    except SignatureRejected as error:
        return _rejected(what, error, before_body=True)
    assert signature is not None
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > max_body_bytes:
        return _too_large(max_body_bytes)
    try:
        raw = await read_capped(request, max_body_bytes)
    except BodyTooLarge:
        return _too_large(max_body_bytes)
    except ClientDisconnect:
        logger.info("a %s delivery was abandoned by its sender mid-body", what)
        return JSONResponse({"error": "the sender went away mid-body"}, status_code=400)
    try:
        signatures.verify(signature, raw, url)
    except SignatureRejected as error:
        return _rejected(what, error, before_body=False)
    return raw


def record_dead_letter(app: VideoProcessing, letter: DeadLetter) -> Outcome:
    """Fail the step of a dead-lettered message if its attempt is current; else say why not."""
    m = letter.message
    try:
        failed = app.fail_undelivered(m.queue_id, m.step, m.attempt, letter.reason, letter.dlq_id)
    except DomainError as error:  # an unknown queue, one that ended (a duplicate report, a cancel), no such step
        return Outcome(200, {"ignored": str(error)})
    if not failed:
        return Outcome(200, {"ignored": f"attempt {m.attempt} of {m.step} is no longer current"})
    logger.warning(
        "queue %s: %s attempt %d dead-lettered by QStash (%s): %s",
        m.queue_id, m.step, m.attempt, letter.dlq_id, letter.reason,
    )
    return Outcome(200, {"failed": m.step, "attempt": m.attempt, "reason": letter.reason})


def steps_router(
    runner: StepRunner,
    signatures: StepSignatures,
    public_base_url: str,
    *,
    max_concurrent_steps: int = 8,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> APIRouter:
    router = APIRouter(tags=["step webhooks (QStash only)"])
    slots = CapacityLimiter(max_concurrent_steps)

    @router.post(
        "/api/video-processing/steps/{step}",
        response_model=StepResponse,
        response_model_exclude_none=True,
        responses={
            401: {"model": StepResponse, "description": "missing or invalid Upstash-Signature (the error names the check)"},
            413: {"model": StepResponse, "description": "the body is over VIDPIPE_MAX_STEP_BODY_BYTES"},
            489: {"model": StepResponse, "description": "failed for good; QStash must not retry"},
            503: {"model": StepResponse, "description": "database unreachable; retry later"},
        },
    )
    async def step_webhook(step: StepName, request: Request) -> JSONResponse:
        raw = await signed_body(request, signatures, step_url(public_base_url, step), max_body_bytes, step)
        if isinstance(raw, JSONResponse):
            return raw
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
            return _database_unreachable(step, error)
        return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)

    @router.post(
        STEP_FAILURES_PATH,
        response_model=StepFailureResponse,
        response_model_exclude_none=True,
        responses={
            400: {"model": StepFailureResponse, "description": "not QStash's failure report about a step message"},
            401: {"model": StepFailureResponse, "description": "missing or invalid Upstash-Signature (the error names the check)"},
            413: {"model": StepFailureResponse, "description": "the body is over VIDPIPE_MAX_STEP_BODY_BYTES"},
            503: {"model": StepFailureResponse, "description": "database unreachable; retry later"},
        },
    )
    async def step_failure_webhook(request: Request) -> JSONResponse:
        """QStash's failure callback: a step message was dead-lettered; fail its step if still current."""
        what = "step-failure"
        raw = await signed_body(request, signatures, step_failure_url(public_base_url), max_body_bytes, what)
        if isinstance(raw, JSONResponse):
            return raw
        try:
            letter = parse_failure_report(raw)
        except BadFailureReport as error:
            logger.warning("refused a failure report: %s", error)
            return JSONResponse({"error": str(error)}, status_code=400)
        try:
            outcome = await anyio.to_thread.run_sync(record_dead_letter, runner.app, letter)
        except PersistenceError as error:
            return _database_unreachable(what, error)
        return JSONResponse(outcome.body, status_code=outcome.status, headers=outcome.headers)

    return router
