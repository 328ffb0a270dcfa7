"""Errors the model servers answer with, always as JSON ``{"error": ...}``.

Bad input is the client's to fix (4xx) and never takes the server down; a
model that is loading or asleep is 503 with Hugging Face's body
(``{"error": "Model X is currently loading", "estimated_time": 20.0}``), which
clients treat as "retry later".
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)


class ModelServerError(Exception):
    """An answer other than success, with the HTTP status it maps to."""

    status_code = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class BadInput(ModelServerError):
    """The request cannot be served as sent (not audio, empty input...)."""

    status_code = 400


class InvalidParameter(ModelServerError):
    """A parameter has a value the server does not accept."""

    status_code = 422


class InputTooLarge(ModelServerError):
    """The request exceeds one of the server's limits."""

    status_code = 413


class ModelLoading(ModelServerError):
    """The model is loading or asleep: come back in ``estimated_time`` seconds."""

    status_code = 503

    def __init__(self, model_name: str, estimated_time: float) -> None:
        super().__init__(f"Model {model_name} is currently loading")
        self.estimated_time = round(max(estimated_time, 1.0), 1)

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "estimated_time": self.estimated_time}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(math.ceil(self.estimated_time))}


class ModelBusy(ModelServerError):
    """The model is working and as many requests as allowed already wait: come back in ``retry_after`` s.

    503 with ``Retry-After``, as while loading, but without ``estimated_time``
    (the model is awake; clients read this as "busy", not "asleep").
    """

    status_code = 503

    def __init__(self, model_name: str, *, waiting: int, retry_after: int) -> None:
        super().__init__(
            f"Model {model_name} is busy: one request is being served and {waiting} wait, the most this server "
            f"queues (WHISPER_MAX_QUEUED); try again in about {retry_after} s"
        )
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ModelFailed(ModelServerError):
    """The model could not be loaded; the operator must fix the configuration."""

    status_code = 500


def error_response(error: ModelServerError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


async def _on_model_server_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ModelServerError)
    if exc.status_code >= 500 and not isinstance(exc, (ModelLoading, ModelBusy)):
        logger.error("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(_describe(error) for error in exc.errors())
    return JSONResponse({"error": f"Invalid request: {problems}"}, status_code=422)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s crashed", request.method, request.url.path)
    return JSONResponse({"error": f"Internal error: {type(exc).__name__}: {exc}"}, status_code=500)


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query"))
    return f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg", "invalid"))


def install_error_handlers(app: FastAPI) -> None:
    """Make every failure of ``app`` a JSON ``{"error": ...}`` answer."""
    app.add_exception_handler(ModelServerError, _on_model_server_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
