"""``GET /v2/events``: the events log, every state change of every message.

States as QStash names them: ``CREATED`` (accepted), ``ACTIVE`` (a delivery
attempt started), ``ERROR`` (an attempt failed) followed by ``RETRY`` (with
``nextDeliveryTime``), ``DELIVERED``, ``FAILED`` (moved to the DLQ) and
``CANCELED``. Newest first, ``count`` (default 100, at most 1000) a page,
``cursor`` for the next older page; filters ``messageId``/``messageIds``,
``state``, ``url``, ``label``, ``queueName``, ``scheduleId``, ``topicName``,
``flowControlKey``, ``callerIp``, ``fromDate``/``toDate`` (unix ms). The
events live in the SQLite store, kept ``settings.events_retention_s``.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.qstash.context import authorize, store_of
from local.qstash.errors import ApiError
from local.qstash.message import Message, multi_header
from local.qstash.redaction import redacted, redaction, shown_headers
from local.qstash.store import Event

DEFAULT_COUNT = 100
MAX_COUNT = 1000
STATES = frozenset({"CREATED", "ACTIVE", "ERROR", "RETRY", "DELIVERED", "FAILED", "CANCELED", "IN_PROGRESS"})
_FILTERS = frozenset(
    {"messageId", "messageIds", "state", "url", "label", "queueName", "scheduleId", "flowControlKey",
     "callerIp", "fromDate", "toDate", "topicName"}
)
_IGNORED = frozenset({"qstash_token", "order", "count", "cursor"})


async def list_events(request: Request) -> Response:
    authorize(request)
    params = request.query_params
    if params.get("order", "latestFirst") != "latestFirst":
        raise ApiError(501, "events in earliest-first order are not supported by the local QStash server")
    filters: dict[str, tuple[str, ...]] = {}
    for name in dict.fromkeys(params.keys()):
        if name not in _FILTERS and name not in _IGNORED:
            raise ApiError(400, f"unknown parameter {name[:64]!r} for /v2/events")
        if name in _FILTERS:
            filters[name] = tuple(params.getlist(name))
    for state in filters.get("state", ()):
        if state not in STATES:
            raise ApiError(400, f"unknown state {state[:32]!r}: one of {', '.join(sorted(STATES))}")
    before = _integer(params.get("cursor"), "cursor", 1, None)
    count = _integer(params.get("count"), "count", 1, MAX_COUNT) or DEFAULT_COUNT
    for name in ("fromDate", "toDate"):
        for value in filters.get(name, ()):
            _integer(value, name, 0, None)
    page, cursor = store_of(request).events(before=before, count=count, filters=filters)
    data: dict[str, Any] = {"events": [event_json(event, message) for event, message in page]}
    if cursor is not None:
        data["cursor"] = str(cursor)
    return JSONResponse(data)


def event_json(event: Event, message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {
        "time": int(event.time * 1000),
        "messageId": event.message_id,
        "state": event.state,
        "url": message.url,
        "method": message.method,
        "header": multi_header(shown_headers(message.headers, message.redact)),
        "body": redacted(message.body) if redaction(message.redact).body else base64.b64encode(message.body).decode("ascii"),
        "maxRetries": message.max_retries,
    }
    optional = {
        "error": event.error,
        "nextDeliveryTime": None if event.next_delivery_time is None else int(event.next_delivery_time * 1000),
        "responseStatus": event.response_status,
        "responseBody": None if event.response_body is None else event.response_body.decode("utf-8", "replace"),
        "label": message.label,
        "queueName": message.queue,
        "scheduleId": message.schedule_id,
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "flowControlKey": message.flow_control_key,
        "callerIp": message.caller_ip,
        "callback": message.callback,
        "failureCallback": message.failure_callback,
        "retryDelayExpr": message.retry_delay,
    }
    data.update({key: value for key, value in optional.items() if value is not None})
    return data


def _integer(raw: str | None, name: str, low: int, high: int | None) -> int | None:
    if raw is None:
        return None
    if not raw.strip().isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        raise ApiError(400, f"{name} must be an integer >= {low}" + (f" and <= {high}" if high else ""))
    return int(raw)


def event_routes() -> list[Route]:
    return [Route("/v2/events", list_events, methods=["GET"])]
