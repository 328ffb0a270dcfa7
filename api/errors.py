"""The API's refusals, and how every error becomes ``{"error": "..."}``.

Route code raises an :class:`ApiError` subclass (or lets a domain error
through); the handlers installed by :func:`install_error_handlers` turn each
into a JSON body with a message a tutor or a frontend developer can act on.
Bad input is always a 4xx, never a 5xx, and is never echoed back whole: ids
and values quoted in a message are cut to :data:`SHOWN_CHARS` (:func:`shorten`).
A method a path does not take is 405 with ``Allow`` listing every method the
path does take (FastAPI's own 405 named only the first route's).

A database that cannot be reached (restarting, failing over, a SQLite file
locked past its busy timeout) is not a bug of the request: every route then
answers 503 with ``Retry-After`` and a message saying to retry, logged once per
outage at WARNING (:class:`OutageLog`), not as a stack trace per request.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import psycopg
from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from domain import QueueNotFound, VidpipeError

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_SECONDS = 5
"""What a 503 during a database outage tells the client to wait (a restart takes a few seconds)."""
DATABASE_UNAVAILABLE = "the database is unavailable right now (it may be restarting); retry in a few seconds"
SQLITE_UNAVAILABLE = ("database is locked", "database is busy", "unable to open database file")
SHOWN_CHARS = 64
"""Longest id or value quoted back in an error message (a 100 KB queue id is not echoed)."""
METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """``value`` as text for a message: at most ``limit`` characters, then an ellipsis."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class ApiError(VidpipeError):
    """A request refused with ``status``; the message goes to the caller."""

    status = 400

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    status = 400


class Unauthorized(ApiError):
    status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="vidpipe"'})


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class PayloadTooLarge(ApiError):
    status = 413


class UnsupportedMediaType(ApiError):
    status = 415


class Unprocessable(ApiError):
    status = 422


class TooManyRequests(ApiError):
    status = 429


class Unavailable(ApiError):
    status = 503


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path, in the usual order.

    Asked of the routes themselves, one method at a time (FastAPI nests included routers)."""
    scope = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
    return [
        method for method in METHOD_ORDER
        if any(_takes(route, {**scope, "method": method}) for route in request.app.router.routes)
    ]


def _takes(route: Any, scope: dict[str, Any]) -> bool:
    try:
        return route.matches(scope)[0] is Match.FULL
    except Exception:  # noqa: BLE001 - a route that cannot judge a bare scope takes nothing here
        return False


def _shortened_inputs(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation problems with long ``input`` values cut (FastAPI echoes them whole)."""
    return [
        {**p, "input": shorten(p["input"])} if isinstance(p.get("input"), str) and len(p["input"]) > SHOWN_CHARS else p
        for p in problems
    ]


def describe_validation_error(error: RequestValidationError) -> str:
    """One sentence per problem: where it is and what is wrong."""
    parts = []
    for problem in error.errors():
        location = [str(p) for p in problem.get("loc", ()) if p != "body" or len(problem["loc"]) == 1]
        where = " ".join(location[:1]) + (f" {'.'.join(location[1:])!r}" if len(location) > 1 else "")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}".strip(": "))
    return "; ".join(parts) or "the request is not valid"


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it was raised from (``__cause__``, else ``__context__``), innermost last."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` means the database cannot be reached now, rather than a bug.

    Postgres: any connection-level error (refused, terminated by a restart,
    the pool's wait for a connection timed out), raised by psycopg or wrapped
    by the eventsourcing library. SQLite: only a locked, busy or unopenable
    file; its other ``OperationalError`` s (no such table, syntax) are bugs.
    """
    chain = list(_causes(error))
    for cause in chain:
        if isinstance(cause, sqlite3.OperationalError):
            return any(text in str(cause).lower() for text in SQLITE_UNAVAILABLE)
    return any(
        isinstance(cause, (OperationalError, InterfaceError, psycopg.OperationalError, psycopg.InterfaceError))
        for cause in chain
    )


class OutageLog:
    """Logs a database outage once (WARNING, no traceback), then at most every ``quiet_seconds``.

    During a restart every request fails the same way; a stack trace per
    request would bury the one line an operator needs.
    """

    def __init__(self, quiet_seconds: float = 30.0) -> None:
        self.quiet_seconds = quiet_seconds
        self._last = -float("inf")
        self._suppressed = 0
        self._lock = threading.Lock()

    def warn(self, where: str, error: BaseException, consequence: str) -> None:
        """Log that ``where`` (say ``GET /api/...``) met the outage ``error``, unless logged recently."""
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.quiet_seconds:
                self._suppressed += 1
                return
            suppressed, self._suppressed, self._last = self._suppressed, 0, now
        first_line = (str(error).strip().splitlines() or [""])[0]
        logger.warning(
            "database unavailable (%s: %s) on %s; %s%s",
            type(error).__name__, first_line, where, consequence,
            f" ({suppressed} more since the last warning)" if suppressed else "",
        )


def unavailable_response() -> JSONResponse:
    return error_response(503, DATABASE_UNAVAILABLE, {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


def install_error_handlers(app: FastAPI) -> None:
    outages = OutageLog()

    async def _database_error(request: Request, error: Exception) -> JSONResponse:
        if database_unavailable(error):
            outages.warn(f"{request.method} {request.url.path}", error,
                         f"answering 503 with Retry-After: {DATABASE_RETRY_AFTER_SECONDS} until it is back")
            return unavailable_response()
        logger.error("database error on %s %s", request.method, request.url.path, exc_info=error)
        return error_response(500, "internal error; the operator can find it in the logs")

    # registered per class (not under Exception) so Starlette answers without re-raising
    for error_class in (PersistenceError, psycopg.Error, sqlite3.Error):
        app.add_exception_handler(error_class, _database_error)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(QueueNotFound)
    async def _not_found(_: Request, error: QueueNotFound) -> JSONResponse:
        return error_response(404, f"processing queue {shorten(error.queue_id)} does not exist")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # "detail" keeps FastAPI's own shape, so routes that declare it still match
        body = {"error": describe_validation_error(error), "detail": jsonable_encoder(_shortened_inputs(list(error.errors())))}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "request refused"
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs"
        if error.status_code == 405:
            allowed = allowed_methods(request) or [m.strip() for m in headers.get("Allow", "").split(",") if m.strip()]
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; this path takes {headers['Allow'] or 'no method'}"
        return error_response(error.status_code, message, headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the operator can find it in the logs")
