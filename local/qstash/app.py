"""The QStash-compatible REST API: ``create_app(settings)`` builds the ASGI app.

Routes (QStash v2), one module per area: publish, enqueue, batch, messages,
DLQ and signing keys here; queues and flow control (``queue_api``), schedules
(``schedule_api``), URL groups (``url_group_api``), the events log
(``events_api``); official routes without an implementation answer 501
(``unsupported``). Every route needs ``Authorization: Bearer <token>`` or
``?qstash_token=<token>``. The app's lifespan opens the store and runs the
delivery worker (which also fires schedules). The table of every SDK call is
in ``local/qstash/README.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from local.qstash.context import authorize, destination_of, json_body, read_body, settings_of, store_of
from local.qstash.delivery import DeliveryWorker
from local.qstash.errors import ApiError
from local.qstash.events_api import event_routes
from local.qstash.schedule_api import schedule_routes
from local.qstash.message import DeadLetter, State, dead_letter_json, message_json, new_id
from local.qstash.queue_api import queue_name, queue_routes
from local.qstash.fanout import Endpoints, is_url, publications
from local.qstash.publication import Publication, PublishError
from local.qstash.selection import DLQ_FILTERS, MESSAGE_FILTERS, Selection, parse_selection
from local.qstash.settings import Settings
from local.qstash.store import MessageStore
from local.qstash.unsupported import unsupported_routes
from local.qstash.url_group_api import url_group_routes

log = logging.getLogger(__name__)

MAX_PAGE = 100


def create_app(settings: Settings) -> Starlette:
    """The server as an ASGI app; nothing is opened until its lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = MessageStore(settings.db_path)
        worker = DeliveryWorker(store, settings)
        app.state.store = store
        app.state.worker = worker
        pruned = store.prune_events(time.time() - settings.events_retention_s)
        if pruned:
            log.info("dropped %d events older than %g s", pruned, settings.events_retention_s)
        await worker.start()
        log.info("local QStash store at %s", settings.db_path)
        try:
            yield
        finally:
            await worker.stop()
            store.close()

    app = Starlette(
        routes=[
            *unsupported_routes(),  # first: some are more specific than /v2/dlq/{dlq_id} etc.
            Route("/v2/publish/{destination:path}", publish, methods=["POST"]),
            Route("/v2/batch", batch, methods=["POST"]),
            Route("/v2/keys", signing_keys, methods=["GET"]),
            Route("/v2/keys/rotate", rotate_signing_keys, methods=["POST"]),
            Route("/v2/enqueue/{queue}/{destination:path}", enqueue, methods=["POST"]),
            *queue_routes(),
            *event_routes(),
            *schedule_routes(),
            *url_group_routes(),
            Route("/v2/messages/{message_id}", get_message, methods=["GET"]),
            Route("/v2/messages/{message_id}", cancel_message, methods=["DELETE"]),
            Route("/v2/messages", cancel_messages, methods=["DELETE"]),
            Route("/v2/dlq", list_dead_letters, methods=["GET"]),
            Route("/v2/dlq", delete_dead_letters, methods=["DELETE"]),
            Route("/v2/dlq/retry", retry_dead_letters, methods=["POST"]),
            Route("/v2/dlq/retry/{dlq_id}", retry_dead_letter, methods=["POST"]),
            Route("/v2/dlq/{dlq_id}", get_dead_letter, methods=["GET"]),
            Route("/v2/dlq/{dlq_id}", delete_dead_letter, methods=["DELETE"]),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message}, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code)


async def publish(request: Request) -> Response:
    """``POST /v2/publish/{destination}``: 200 new, 202 deduplicated, 400 bad header."""
    return await _accept(request, queue=None)


async def enqueue(request: Request) -> Response:
    """``POST /v2/enqueue/{queue}/{destination}``: publish into a FIFO queue (created with
    parallelism 1 if it does not exist); answers like publish."""
    return await _accept(request, queue=queue_name(request.path_params["queue"]))


async def _accept(request: Request, queue: str | None) -> Response:
    authorize(request)
    settings = settings_of(request)
    body = await read_body(request, settings.max_message_bytes)
    now = time.time()
    destination = destination_of(request)
    try:
        created = publications(
            destination=destination,
            headers={name: value for name, value in request.headers.items()},
            body=body,
            caller_ip=request.client.host if request.client else None,
            settings=settings,
            now=now,
            queue=queue,
            endpoints=_endpoints(request),
        )
    except PublishError as error:
        raise ApiError(error.status, error.message) from None
    results = store_of(request).publish_many(created, now, settings.dedup_window_s)
    for publication, (message_id, deduplicated) in zip(created, results):
        if deduplicated:
            log.info("deduplicated publish to %s: %s", publication.message.url, message_id)
        else:
            log.info("published %s to %s%s", message_id, publication.message.url, f" (queue {queue})" if queue else "")
    request.app.state.worker.wake()
    if is_url(destination):
        [(message_id, deduplicated)] = results
        return JSONResponse(
            {"messageId": message_id, "deduplicated": deduplicated},
            status_code=202 if deduplicated else 200,
        )
    return JSONResponse(_group_answer(created, results))


def _group_answer(created: list[Publication], results: list[tuple[str, bool]]) -> list[dict[str, Any]]:
    """A URL group publish's answer: one ``{"messageId", "url", "deduplicated"}`` per endpoint."""
    return [
        {"messageId": message_id, "url": publication.message.url, "deduplicated": deduplicated}
        for publication, (message_id, deduplicated) in zip(created, results)
    ]


def _endpoints(request: Request) -> Endpoints:
    store = store_of(request)

    def lookup(group: str) -> list[tuple[str | None, str]] | None:
        found = store.url_groups(group)
        return found[0].endpoints if found else None

    return lookup


async def batch(request: Request) -> Response:
    """``POST /v2/batch``: a JSON list of ``{"destination", "headers", "body", "queue"?}``, each
    validated like a publish; all stored in one transaction or none (400 naming the
    entry). Answers, in order, ``{"messageId", "deduplicated"}`` per URL entry and a list of
    ``{"messageId", "url", "deduplicated"}`` per URL group entry."""
    authorize(request)
    settings = settings_of(request)
    entries = await json_body(request, settings.max_batch_bytes)
    if not isinstance(entries, list) or not entries:
        raise ApiError(400, 'expected a non-empty JSON list of {"destination", "headers", "body"}')
    if len(entries) > settings.max_batch_messages:
        raise ApiError(400, f"a batch holds at most {settings.max_batch_messages} messages, got {len(entries)}")
    now = time.time()
    groups = [_batch_entry(request, index, entry, now) for index, entry in enumerate(entries)]
    flat = [publication for _, created in groups for publication in created]
    results = iter(store_of(request).publish_many(flat, now, settings.dedup_window_s))
    answer: list[Any] = []
    for destination, created in groups:
        mine = [next(results) for _ in created]
        if is_url(destination):
            answer.append({"messageId": mine[0][0], "deduplicated": mine[0][1]})
        else:
            answer.append(_group_answer(created, mine))
    log.info("published a batch of %d messages", len(flat))
    request.app.state.worker.wake()
    return JSONResponse(answer)


def _batch_entry(request: Request, index: int, entry: Any, now: float) -> tuple[str, list[Publication]]:
    settings = settings_of(request)
    where = f"batch entry {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("destination"), str):
        raise ApiError(400, f'{where}: expected {{"destination": "<url>", "headers": {{...}}, "body": "..."}}')
    headers = entry.get("headers") or {}
    body = entry.get("body")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ApiError(400, f"{where}: headers must be an object of strings")
    if body is not None and not isinstance(body, str):
        raise ApiError(400, f"{where}: body must be a string")
    queue = entry.get("queue")
    if queue is not None and not isinstance(queue, str):
        raise ApiError(400, f"{where}: queue must be a queue name")
    raw = (body or "").encode("utf-8")
    if len(raw) > settings.max_message_bytes:
        raise ApiError(413, f"{where}: message of {len(raw)} bytes exceeds the maximum of {settings.max_message_bytes} bytes")
    try:
        return entry["destination"], publications(
            destination=entry["destination"],
            headers={str(name).lower(): value for name, value in headers.items()},
            body=raw,
            caller_ip=request.client.host if request.client else None,
            settings=settings,
            now=now,
            queue=None if queue is None else queue_name(queue),
            endpoints=_endpoints(request),
        )
    except PublishError as error:
        raise ApiError(error.status, f"{where}: {error.message}") from None


def current_keys(request: Request) -> tuple[str, str]:
    """The signing keys in force: the configured pair, or what rotations made of it."""
    settings = settings_of(request)
    return store_of(request).signing_keys(
        settings.current_signing_key.get_secret_value(), settings.next_signing_key.get_secret_value()
    )


async def signing_keys(request: Request) -> Response:
    """``GET /v2/keys``: ``{"current", "next"}`` (the TS SDK's dev-server probe reads it too)."""
    authorize(request)
    current, next_key = current_keys(request)
    return JSONResponse({"current": current, "next": next_key})


async def rotate_signing_keys(request: Request) -> Response:
    """``POST /v2/keys/rotate``: the next key becomes current, a new next key is made; kept in
    the store until the configured keys change. Receivers must then be given the new keys."""
    authorize(request)
    settings = settings_of(request)
    current, next_key = store_of(request).rotate_signing_keys(
        settings.current_signing_key.get_secret_value(),
        settings.next_signing_key.get_secret_value(),
        "sig_" + secrets.token_urlsafe(21)[:28],
    )
    log.warning("signing keys rotated: deliveries are now signed with the former next key")
    return JSONResponse({"current": current, "next": next_key})


async def get_message(request: Request) -> Response:
    """``GET /v2/messages/{id}``: a message not yet delivered; 404 otherwise."""
    authorize(request)
    message = store_of(request).get_active(request.path_params["message_id"])
    if message is None:
        raise ApiError(404, "message not found (it was delivered, cancelled, dead-lettered or never existed)")
    return JSONResponse(message_json(message))


async def cancel_message(request: Request) -> Response:
    """``DELETE /v2/messages/{id}``: cancel; ``{"cancelled": 1}`` (the TS SDK parses it), or 404."""
    authorize(request)
    if store_of(request).cancel([request.path_params["message_id"]]) == 0:
        raise ApiError(404, "message not found or no longer cancellable")
    return JSONResponse({"cancelled": 1})


async def cancel_messages(request: Request) -> Response:
    """``DELETE /v2/messages``: cancel by ids or filters (query or JSON body); neither: all.

    ``?messageIds=A&messageIds=B`` (TS SDK) and ``{"messageIds": [...]}`` (Python
    SDK) cancel exactly those; filters cancel their matches; only a request with
    neither cancels every message, as QStash does. ``{"cancelled": n}``.
    """
    authorize(request)
    selection = parse_selection(
        request.query_params.multi_items(),
        await json_body(request),
        ids_key="messageIds",
        filters=MESSAGE_FILTERS,
    )
    cancelled = store_of(request).cancel_selected(selection)
    log.info("bulk cancel (%s): %d cancelled", _describe(selection, "messageIds"), cancelled)
    return JSONResponse({"cancelled": cancelled})


def _describe(selection: Selection, ids_key: str) -> str:
    if selection.ids is not None:
        return f"{len(selection.ids)} {ids_key}"
    if selection.filters:
        return "filters " + ", ".join(sorted(selection.filters))
    return "all" + (f", count {selection.count}" if selection.count else "")


async def list_dead_letters(request: Request) -> Response:
    """``GET /v2/dlq``: ``{"messages": [...], "cursor"?}``, oldest first (``order=latestFirst``:
    newest first), ``count`` (at most 100) a page; by ``dlqIds`` or the DLQ filters."""
    authorize(request)
    query = [(name, value) for name, value in request.query_params.multi_items() if name != "order"]
    order = request.query_params.get("order", "earliestFirst")
    if order not in ("earliestFirst", "latestFirst"):
        raise ApiError(400, f"order must be earliestFirst or latestFirst, got {order[:32]!r}")
    selection = parse_selection(query, None, ids_key="dlqIds", filters=DLQ_FILTERS)
    if selection.count is not None and selection.count > MAX_PAGE:
        selection = dataclasses.replace(selection, count=MAX_PAGE)
    letters, cursor = store_of(request).select_dead_letters(selection, MAX_PAGE, latest_first=order == "latestFirst")
    data: dict[str, Any] = {"messages": [dead_letter_json(letter) for letter in letters]}
    if cursor is not None:
        data["cursor"] = str(cursor)
    return JSONResponse(data)


async def get_dead_letter(request: Request) -> Response:
    """``GET /v2/dlq/{dlqId}``."""
    authorize(request)
    letter = store_of(request).dead_letter(request.path_params["dlq_id"])
    if letter is None:
        raise ApiError(404, "dead letter not found")
    return JSONResponse(dead_letter_json(letter))


async def delete_dead_letter(request: Request) -> Response:
    """``DELETE /v2/dlq/{dlqId}``."""
    authorize(request)
    if store_of(request).delete_dead_letters([request.path_params["dlq_id"]]) == 0:
        raise ApiError(404, "dead letter not found")
    return Response(status_code=200)


async def delete_dead_letters(request: Request) -> Response:
    """``DELETE /v2/dlq``: by ``dlqIds`` (query or JSON body) or filters; neither: the
    whole DLQ, ``count`` (default 100) at a time. ``{"deleted": n, "cursor"?}``."""
    authorize(request)
    store = store_of(request)
    letters, cursor = store.select_dead_letters(await _dlq_selection(request), MAX_PAGE)
    deleted = store.delete_dead_letters([letter.dlq_id for letter in letters])
    data: dict[str, Any] = {"deleted": deleted}
    if cursor is not None:
        data["cursor"] = str(cursor)
    return JSONResponse(data)


async def retry_dead_letters(request: Request) -> Response:
    """``POST /v2/dlq/retry``: publish the selected dead letters again (same selection rules
    as ``DELETE /v2/dlq``); ``{"responses": [{"messageId"}, ...], "cursor"?}``."""
    authorize(request)
    store = store_of(request)
    letters, cursor = store.select_dead_letters(await _dlq_selection(request), MAX_PAGE)
    responses = [
        {"messageId": message_id}
        for letter in letters
        if (message_id := _requeue(request, letter)) is not None
    ]
    data: dict[str, Any] = {"responses": responses}
    if cursor is not None:
        data["cursor"] = str(cursor)
    return JSONResponse(data)


async def retry_dead_letter(request: Request) -> Response:
    """``POST /v2/dlq/retry/{dlqId}``: publish the dead message again; 201 ``{"messageId"}``."""
    authorize(request)
    letter = store_of(request).dead_letter(request.path_params["dlq_id"])
    message_id = None if letter is None else _requeue(request, letter)
    if message_id is None:
        raise ApiError(404, "dead letter not found")
    return JSONResponse({"messageId": message_id, "deduplicated": False}, status_code=201)


def _requeue(request: Request, letter: DeadLetter) -> str | None:
    """Move ``letter`` back to the pending messages as a fresh message; its new id."""
    now = time.time()
    fresh = dataclasses.replace(
        letter.message,
        id=new_id("msg"),
        state=State.PENDING,
        retried=0,
        created_at=now,
        not_before=now,
        next_attempt_at=now,
        queue_seq=None,  # a retried message of a queue joins its end, like a new enqueue
    )
    if not store_of(request).requeue_dead_letter(letter.dlq_id, fresh):
        return None
    log.info("retrying dead letter %s as %s", letter.dlq_id, fresh.id)
    request.app.state.worker.wake()
    return fresh.id


async def _dlq_selection(request: Request) -> Selection:
    return parse_selection(
        request.query_params.multi_items(),
        await json_body(request),
        ids_key="dlqIds",
        filters=DLQ_FILTERS,
    )
