"""FIFO queues (``/v2/queues``) and flow-control keys (``/v2/flowControl/{key}``).

``POST /v2/queues`` ``{"queueName", "parallelism", "paused"}`` creates or
updates a queue; ``GET /v2/queues[/{name}]`` answers ``{name, parallelism,
createdAt, updatedAt, lag, paused}``; ``DELETE /v2/queues/{name}`` removes an
empty queue (one still holding messages answers 501: what QStash does to them
is not documented, so the server does not guess); ``POST
/v2/queues/{name}/pause|resume``. ``GET /v2/flowControl[/{key}]`` reports a key's
limits, use and waitlist; ``POST /v2/flowControl/{key}/pause|resume|pin|unpin|resetRate``
manage it; ``GET /v2/globalParallelism``. Delivery order and limits:
``local.qstash.admission``.
"""

from __future__ import annotations

import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.qstash.context import authorize, json_body, settings_of, store_of
from local.qstash.errors import ApiError
from local.qstash.flow_control import FlowControlError, parse_flow_control
from local.qstash.store import QueueInfo

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_PARALLELISM = 1000


def queue_name(raw: str) -> str:
    """``raw`` if it is a valid queue name, else 400."""
    if not _NAME.match(raw):
        raise ApiError(400, f"invalid queue name {raw[:64]!r}: use 1-128 letters, digits, '.', '_' or '-'")
    return raw


def queue_json(queue: QueueInfo) -> dict[str, Any]:
    return {
        "name": queue.name,
        "parallelism": queue.parallelism,
        "createdAt": int(queue.created_at * 1000),
        "updatedAt": int(queue.updated_at * 1000),
        "lag": queue.lag,
        "paused": queue.paused,
    }


async def upsert_queue(request: Request) -> Response:
    """``POST /v2/queues``: create or update; 200 with an empty body, as QStash."""
    authorize(request)
    payload = await json_body(request)
    if not isinstance(payload, dict) or not isinstance(payload.get("queueName"), str):
        raise ApiError(400, 'expected JSON {"queueName": "<name>", "parallelism": <n>, "paused": <bool>}')
    parallelism = payload.get("parallelism", 1)
    paused = payload.get("paused", False)
    if isinstance(parallelism, bool) or not isinstance(parallelism, int) or not 1 <= parallelism <= MAX_PARALLELISM:
        raise ApiError(400, f"parallelism must be an integer 1..{MAX_PARALLELISM}")
    if not isinstance(paused, bool):
        raise ApiError(400, "paused must be true or false")
    store_of(request).upsert_queue(queue_name(payload["queueName"]), parallelism, paused, time.time())
    request.app.state.worker.wake()
    return Response(status_code=200)


async def get_queue(request: Request) -> Response:
    authorize(request)
    found = store_of(request).queues(request.path_params["name"])
    if not found:
        raise ApiError(404, "queue not found")
    return JSONResponse(queue_json(found[0]))


async def list_queues(request: Request) -> Response:
    authorize(request)
    return JSONResponse([queue_json(queue) for queue in store_of(request).queues()])


async def delete_queue(request: Request) -> Response:
    authorize(request)
    outcome = store_of(request).delete_queue(request.path_params["name"])
    if outcome == "missing":
        raise ApiError(404, "queue not found")
    if outcome == "busy":
        raise ApiError(
            501,
            "deleting a queue that still holds messages is not supported by the local QStash server;"
            " cancel them first (DELETE /v2/messages?queueName=<name>)",
        )
    return Response(status_code=200)


async def pause_queue(request: Request) -> Response:
    return _set_paused(request, True)


async def resume_queue(request: Request) -> Response:
    return _set_paused(request, False)


def _set_paused(request: Request, paused: bool) -> Response:
    authorize(request)
    if not store_of(request).set_queue_paused(request.path_params["name"], paused, time.time()):
        raise ApiError(404, "queue not found")
    request.app.state.worker.wake()
    return Response(status_code=200)


async def get_flow_control(request: Request) -> Response:
    """``GET /v2/flowControl/{key}``: limits, in-flight count, rate use, waitlist size."""
    authorize(request)
    info = store_of(request).flow_control_info(request.path_params["key"], time.time())
    if info is None:
        raise ApiError(404, "flow-control key not found (no message was published with it)")
    return JSONResponse(info)


async def list_flow_controls(request: Request) -> Response:
    """``GET /v2/flowControl``: every key's info."""
    authorize(request)
    store, now = store_of(request), time.time()
    return JSONResponse([store.flow_control_info(key, now) for key in store.flow_control_keys()])


async def global_parallelism(request: Request) -> Response:
    """``GET /v2/globalParallelism``: the server's delivery concurrency and its use."""
    authorize(request)
    return JSONResponse(
        {"parallelismMax": settings_of(request).concurrency, "parallelismCount": store_of(request).in_flight()}
    )


async def pause_flow_control(request: Request) -> Response:
    """``POST /v2/flowControl/{key}/pause``: the key's messages wait until resumed."""
    return _update_flow(request, paused=1)


async def resume_flow_control(request: Request) -> Response:
    return _update_flow(request, paused=0)


async def reset_flow_rate(request: Request) -> Response:
    """``POST /v2/flowControl/{key}/resetRate``: a new rate period starts now, count 0."""
    return _update_flow(request, rate_reset_at=time.time())


async def pin_flow_control(request: Request) -> Response:
    """``POST /v2/flowControl/{key}/pin?parallelism=&rate=&period=``: these values win over
    what publishes say until unpinned (rate and period pin together)."""
    params = request.query_params
    changes: dict[str, Any] = {}
    if "parallelism" in params:
        changes["pinned_parallelism"] = _positive(params["parallelism"], "parallelism")
    if "rate" in params:
        changes["pinned_rate"] = _positive(params["rate"], "rate")
    if "period" in params:
        try:
            changes["pinned_period_s"] = parse_flow_control("k", f"rate=1, period={params['period']}").period_s  # type: ignore[union-attr]
        except FlowControlError as error:
            raise ApiError(400, str(error)) from None
    if not changes:
        raise ApiError(400, "pin needs parallelism, rate or period")
    return _update_flow(request, **changes)


async def unpin_flow_control(request: Request) -> Response:
    """``POST /v2/flowControl/{key}/unpin?parallelism=true&rate=true``."""
    params = request.query_params
    changes: dict[str, Any] = {}
    if params.get("parallelism", "").lower() == "true":
        changes["pinned_parallelism"] = None
    if params.get("rate", "").lower() == "true":
        changes.update(pinned_rate=None, pinned_period_s=None)
    if not changes:
        raise ApiError(400, "unpin needs parallelism=true or rate=true")
    return _update_flow(request, **changes)


def _positive(raw: str, name: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(400, f"{name} must be a positive integer, got {raw[:32]!r}")
    return int(raw)


def _update_flow(request: Request, **changes: Any) -> Response:
    authorize(request)
    if not store_of(request).update_flow_control(request.path_params["key"], **changes):
        raise ApiError(404, "flow-control key not found (no message was published with it)")
    request.app.state.worker.wake()
    return Response(status_code=200)


def queue_routes() -> list[Route]:
    return [
        Route("/v2/queues", upsert_queue, methods=["POST"]),
        Route("/v2/queues", list_queues, methods=["GET"]),
        Route("/v2/queues/{name}", get_queue, methods=["GET"]),
        Route("/v2/queues/{name}", delete_queue, methods=["DELETE"]),
        Route("/v2/queues/{name}/pause", pause_queue, methods=["POST"]),
        Route("/v2/queues/{name}/resume", resume_queue, methods=["POST"]),
        Route("/v2/flowControl", list_flow_controls, methods=["GET"]),
        Route("/v2/flowControl/{key}", get_flow_control, methods=["GET"]),
        Route("/v2/flowControl/{key}/pause", pause_flow_control, methods=["POST"]),
        Route("/v2/flowControl/{key}/resume", resume_flow_control, methods=["POST"]),
        Route("/v2/flowControl/{key}/pin", pin_flow_control, methods=["POST"]),
        Route("/v2/flowControl/{key}/unpin", unpin_flow_control, methods=["POST"]),
        Route("/v2/flowControl/{key}/resetRate", reset_flow_rate, methods=["POST"]),
        Route("/v2/globalParallelism", global_parallelism, methods=["GET"]),
    ]
