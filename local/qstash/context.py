"""What every route needs from a request: the token check, the settings, the store,
and the body read with a hard size cap (413 beyond it)."""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request

from local.qstash.errors import ApiError
from local.qstash.settings import Settings
from local.qstash.store import MessageStore


def settings_of(request: Request) -> Settings:
    """The server's settings (set by ``create_app``)."""
    settings: Settings = request.app.state.settings
    return settings


def store_of(request: Request) -> MessageStore:
    """The open store (set by the app's lifespan)."""
    store: MessageStore = request.app.state.store
    return store


def authorize(request: Request) -> None:
    """Bearer token or ``?qstash_token=``; 401 otherwise."""
    expected = settings_of(request).token.get_secret_value()
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        presented = request.query_params.get("qstash_token", "")
    if not presented or not secrets.compare_digest(presented.strip(), expected):
        raise ApiError(401, "unauthorized: send 'Authorization: Bearer <QSTASH_TOKEN>'")


def destination_of(request: Request) -> str:
    """The destination URL: the path after ``/v2/publish/`` plus the query (minus our token)."""
    destination = str(request.path_params["destination"])
    query = "&".join(
        part
        for part in request.url.query.split("&")
        if part and not part.startswith("qstash_token=")
    )
    return f"{destination}?{query}" if query else destination


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"message of {declared} bytes exceeds the maximum of {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, f"message exceeds the maximum of {limit} bytes")
    return bytes(body)


async def json_body(request: Request, limit: int | None = None) -> Any:
    """The body parsed as JSON (at most ``limit`` bytes, default the message size cap),
    ``None`` when empty; 400 when not JSON."""
    raw = await read_body(request, limit or settings_of(request).max_message_bytes)
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "request body must be JSON") from None
