"""Cron schedules: ``/v2/schedules``.

``POST /v2/schedules/{destination}`` with ``Upstash-Cron`` (and every publish
header; ``Upstash-Schedule-Id`` to choose or update an id, ``Upstash-Queue-Name``
to enqueue each firing) answers ``{"scheduleId"}``; ``GET /v2/schedules[/{id}]``,
``DELETE /v2/schedules/{id}``, ``PATCH /v2/schedules/{id}/pause|resume``.
Firing: ``local.qstash.scheduling``. Schedules live in the SQLite store.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.qstash.context import authorize, destination_of, read_body, settings_of, store_of
from local.qstash.cron import CronError, parse_cron
from local.qstash.errors import ApiError
from local.qstash.message import Schedule, multi_header, new_id, shown_body, with_optional
from local.qstash.redaction import shown_headers
from local.qstash.publication import PublishError
from local.qstash.queue_api import queue_name
from local.qstash.fanout import is_url
from local.qstash.scheduling import scheduled_messages

_TEMPLATE_URL = "http://url-group.invalid/"
"""Stands in for a URL group destination when reading a schedule's options."""
_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_NOT_TEMPLATE = frozenset({"authorization", "host", "content-length", "connection", "upstash-cron",
                           "upstash-schedule-id", "upstash-queue-name", "accept", "accept-encoding", "user-agent"})


async def create_schedule(request: Request) -> Response:
    """``POST /v2/schedules/{destination}``: create or update; ``{"scheduleId"}``."""
    authorize(request)
    settings = settings_of(request)
    headers = {name.lower(): value for name, value in request.headers.items()}
    cron_text = headers.get("upstash-cron")
    if not cron_text:
        raise ApiError(400, "Upstash-Cron is required, e.g. 'Upstash-Cron: */5 * * * *'")
    try:
        cron = parse_cron(cron_text)
    except CronError as error:
        raise ApiError(400, str(error)) from None
    schedule_id = headers.get("upstash-schedule-id") or new_id("scd")
    if not _ID.match(schedule_id):
        raise ApiError(400, f"invalid Upstash-Schedule-Id {schedule_id[:64]!r}: use 1-128 letters, digits, '.', '_' or '-'")
    queue = headers.get("upstash-queue-name")
    now = time.time()
    schedule = Schedule(
        id=schedule_id,
        cron=cron.text,
        destination=destination_of(request),
        headers={name: value for name, value in headers.items() if name not in _NOT_TEMPLATE},
        body=await read_body(request, settings.max_message_bytes),
        caller_ip=request.client.host if request.client else None,
        queue=None if queue is None else queue_name(queue),
        paused=False,
        created_at=now,
        next_fire=cron.next_after(now),
    )
    try:  # refuses now what every firing would refuse (a URL group must exist)
        scheduled_messages(schedule, store_of(request), settings, now)
    except PublishError as error:
        raise ApiError(error.status, error.message) from None
    store_of(request).save_schedule(schedule)
    request.app.state.worker.wake()
    return JSONResponse({"scheduleId": schedule_id})


def schedule_json(schedule: Schedule, request: Request) -> dict[str, Any]:
    """A schedule as QStash describes it (message fields from one would-be firing)."""
    now = time.time()
    template = dataclasses.replace(schedule, destination=_TEMPLATE_URL) if not is_url(schedule.destination) else schedule
    [message] = scheduled_messages(template, store_of(request), settings_of(request), now)
    data: dict[str, Any] = {
        "scheduleId": schedule.id,
        "cron": schedule.cron,
        "createdAt": int(schedule.created_at * 1000),
        "destination": schedule.destination,
        "method": message.method,
        "header": multi_header(shown_headers(message.headers, message.redact)),
        "retries": message.max_retries,
        "isPaused": schedule.paused,
        "nextScheduleTime": int(schedule.next_fire * 1000),
        **shown_body(schedule.body, message.redact),
    }
    optional = {
        "delay": int(round(message.not_before - now)) or None,
        "timeout": None if message.timeout_s is None else int(message.timeout_s),
        "callback": message.callback,
        "failureCallback": message.failure_callback,
        "callerIP": schedule.caller_ip,
        "queueName": schedule.queue,
        "label": message.label,
        "retryDelayExpression": message.retry_delay,
        "lastScheduleTime": None if schedule.last_fire is None else int(schedule.last_fire * 1000),
        "error": schedule.error,
        "flowControlKey": message.flow_control_key,
        "parallelism": message.parallelism,
        "rate": message.rate,
        "period": None if message.period_s is None else int(message.period_s),
    }
    return with_optional(data, optional, message)


async def get_schedule(request: Request) -> Response:
    authorize(request)
    found = store_of(request).schedules(request.path_params["schedule_id"])
    if not found:
        raise ApiError(404, "schedule not found")
    return JSONResponse(schedule_json(found[0], request))


async def list_schedules(request: Request) -> Response:
    authorize(request)
    return JSONResponse([schedule_json(schedule, request) for schedule in store_of(request).schedules()])


async def delete_schedule(request: Request) -> Response:
    authorize(request)
    if not store_of(request).delete_schedule(request.path_params["schedule_id"]):
        raise ApiError(404, "schedule not found")
    return Response(status_code=200)


async def pause_schedule(request: Request) -> Response:
    authorize(request)
    if not store_of(request).set_schedule_paused(request.path_params["schedule_id"], True, None):
        raise ApiError(404, "schedule not found")
    return Response(status_code=200)


async def resume_schedule(request: Request) -> Response:
    """Resume: the next firing is the cron's next slot from now (paused slots are skipped)."""
    authorize(request)
    store = store_of(request)
    found = store.schedules(request.path_params["schedule_id"])
    if not found:
        raise ApiError(404, "schedule not found")
    next_fire = parse_cron(found[0].cron).next_after(time.time())
    store.set_schedule_paused(found[0].id, False, next_fire)
    request.app.state.worker.wake()
    return Response(status_code=200)


def schedule_routes() -> list[Route]:
    return [
        Route("/v2/schedules", list_schedules, methods=["GET"]),
        Route("/v2/schedules/{schedule_id}/pause", pause_schedule, methods=["PATCH"]),
        Route("/v2/schedules/{schedule_id}/resume", resume_schedule, methods=["PATCH"]),
        Route("/v2/schedules/{schedule_id}", get_schedule, methods=["GET"]),
        Route("/v2/schedules/{schedule_id}", delete_schedule, methods=["DELETE"]),
        Route("/v2/schedules/{destination:path}", create_schedule, methods=["POST"]),
    ]
