"""The API's refusals, and how every error becomes ``{"error": "..."}``.

Route code raises an :class:`ApiError` subclass (or lets a domain error
through); the handlers installed by :func:`install_error_handlers` turn each
into a JSON body with a message a tutor or a frontend developer can act on.
Bad input is always a 4xx, never a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain import QueueNotFound, VidpipeError

logger = logging.getLogger(__name__)


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


class Unavailable(ApiError):
    status = 503


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


def describe_validation_error(error: RequestValidationError) -> str:
    """One sentence per problem: where it is and what is wrong."""
    parts = []
    for problem in error.errors():
        location = [str(p) for p in problem.get("loc", ()) if p != "body" or len(problem["loc"]) == 1]
        where = " ".join(location[:1]) + (f" {'.'.join(location[1:])!r}" if len(location) > 1 else "")
        parts.append(f"{where}: {problem.get('msg', 'invalid')}".strip(": "))
    return "; ".join(parts) or "the request is not valid"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.headers)

    @app.exception_handler(QueueNotFound)
    async def _not_found(_: Request, error: QueueNotFound) -> JSONResponse:
        return error_response(404, f"processing queue {error.queue_id} does not exist")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        # "detail" keeps FastAPI's own shape, so routes that declare it still match
        body = {"error": describe_validation_error(error), "detail": jsonable_encoder(error.errors())}
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else "request refused"
        if error.status_code == 404 and message == "Not Found":
            message = "no such endpoint; see /docs"
        return error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the operator can find it in the logs")
