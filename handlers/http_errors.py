"""What a remote server's failure means: retry later, or give up now.

Pure functions over an ``httpx`` response or exception, shared by every client
of a remote model server. A Hugging Face Space or endpoint that is asleep or
loading answers in one of a few ways, all *transient*:

- 503 with JSON ``{"error": "... is currently loading", "estimated_time": 20.0}``
  → :class:`ServerSleeping` with ``retry_after=estimated_time``;
- an HTML page saying the Space is sleeping, starting or building
  → :class:`ServerSleeping` (``Retry-After`` as the hint, if any);
- 502/504 while it starts, any other 5xx, 408/425/429, a refused connection,
  a timeout, a dropped connection → :class:`TransientError`, with
  ``Retry-After`` (seconds or an HTTP date) as the hint.

Everything else is *permanent*: 401/403 (our credentials), 404 (a wrong URL),
400/413/415/422 (the input), each with a message that names the server (its
name and host) and says what to do.

Transient messages say what happened and the server's own hint, never "will
retry": the last one becomes the queue's failure reason, which the tutor
reads once the retries are spent.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from handlers.errors import PermanentError, ProviderError, ServerSleeping, TransientError

SLEEP_WORDS = re.compile(r"\b(sleeping|asleep|starting|building|waking|restarting)\b", re.IGNORECASE)
"""Words of an HTML page that says the server is not up yet (Hugging Face Spaces)."""

TRANSIENT_4XX = {408: "timed out reading our request", 425: "is not ready yet", 429: "is rate-limiting us"}

MAX_DETAIL_CHARS = 300


@dataclass(frozen=True)
class RemoteServer:
    """Which server a call went to, for messages a person can act on."""

    name: str
    """What the server is, in words: ``"Whisper server"``, ``"BGE embedding server"``."""
    url: str
    """The configured base URL."""
    url_env: str | None = None
    """The variable that configures ``url`` (named in messages about a wrong URL)."""
    token_env: str | None = None
    """The variable holding the credentials (named when the server rejects them)."""

    @property
    def host(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc or self.url

    def __str__(self) -> str:
        return f"the {self.name} ({self.host})"


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment is None:  # pragma: no cover - older Pythons returned None
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


def error_for_response(response: httpx.Response, server: RemoteServer) -> ProviderError | None:
    """The error ``response`` stands for, or None when it is a usable success.

    A 2xx answer is an error only when it is an HTML page saying the server is
    asleep or starting (a proxy in front of a sleeping Space answers so).
    """
    status = response.status_code
    hint = parse_retry_after(response.headers.get("retry-after"))
    if status < 300:
        return _sleeping_page(response, server, hint) if _is_html(response) else None
    body = _json_body(response)
    if status == 503 and _is_loading(body):
        estimated = _number(body.get("estimated_time")) if isinstance(body, dict) else None
        wait = estimated if estimated is not None else hint
        return ServerSleeping(
            f"{server} is asleep or is loading its model ({_detail(response, body)}){_ready_words(wait)}",
            retry_after=wait,
        )
    if _is_html(response) and (sleeping := _sleeping_page(response, server, hint)):
        return sleeping
    if status >= 500:
        return TransientError(
            f"{server} answered {status} {_reason(response)} ({_detail(response, body)}){_hint_words(hint)}",
            retry_after=hint,
        )
    if status in TRANSIENT_4XX:
        return TransientError(
            f"{server} {TRANSIENT_4XX[status]} ({status}: {_detail(response, body)}){_hint_words(hint)}",
            retry_after=hint,
        )
    return _permanent(response, server, _detail(response, body))


def raise_for_response(response: httpx.Response, server: RemoteServer) -> httpx.Response:
    """``response`` if usable; otherwise raise what :func:`error_for_response` says."""
    error = error_for_response(response, server)
    if error is not None:
        raise error
    return response


def error_for_exception(error: Exception, server: RemoteServer) -> ProviderError:
    """What a failed call (no answer at all) means: almost always "try again later"."""
    if isinstance(error, httpx.TimeoutException):
        phase = "connect" if isinstance(error, httpx.ConnectTimeout) else "answer"
        return TransientError(f"{server} did not {phase} in time ({type(error).__name__})")
    if isinstance(error, httpx.ConnectError):
        return TransientError(
            f"{server} could not be reached (connection refused or failed: {error or type(error).__name__}); "
            "it may be asleep or restarting"
        )
    if isinstance(error, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        fix = f" (check {server.url_env})" if server.url_env else ""
        return PermanentError(f"{server} has an unusable URL {server.url!r}{fix}: {error}")
    if isinstance(error, httpx.TransportError):
        return TransientError(
            f"{server} dropped the connection ({type(error).__name__}: {error or 'no detail'})"
        )
    if isinstance(error, ProviderError):
        return error
    return TransientError(f"calling {server} failed unexpectedly ({type(error).__name__}: {error})")


# --------------------------------------------------------------------------- helpers


def _permanent(response: httpx.Response, server: RemoteServer, detail: str) -> PermanentError:
    status = response.status_code
    if status in (401, 403):
        check = f" (check {server.token_env})" if server.token_env else ""
        return PermanentError(f"{server} rejected our credentials{check}: {status} {detail}")
    if status in (404, 405):
        check = f"check {server.url_env}" if server.url_env else "check its URL"
        return PermanentError(
            f"{server} has no {response.request.url.path} endpoint ({status}): {check}; "
            "it must be an OpenAI-compatible server"
        )
    if status == 413:
        return PermanentError(f"{server} refused the input as too large: {detail}")
    if status == 415:
        return PermanentError(f"{server} cannot read this file format: {detail}")
    return PermanentError(f"{server} could not process the input ({status}): {detail}")


def _is_html(response: httpx.Response) -> bool:
    kind = response.headers.get("content-type", "").lower()
    if "html" in kind:
        return True
    head = response.content[:200].lstrip().lower()
    return head.startswith(b"<!doctype html") or head.startswith(b"<html")


def _sleeping_page(response: httpx.Response, server: RemoteServer, hint: float | None) -> ServerSleeping | None:
    text = _page_text(response.text)
    match = SLEEP_WORDS.search(text)
    if not match:
        return None
    return ServerSleeping(
        f"{server} is {match.group(1).lower()} (it answered {response.status_code} with a web page: "
        f"{_clip(text)}){_hint_words(hint)}",
        retry_after=hint,
    )


def _json_body(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return None


def _is_loading(body: Any) -> bool:
    if not isinstance(body, dict):
        return False
    if "estimated_time" in body:
        return True
    message = _message(body)
    return bool(message and re.search(r"loading|asleep|sleeping|starting", message, re.IGNORECASE))


def _message(body: Any) -> str | None:
    """The error message in a JSON body, whatever its dialect (OpenAI, TEI, FastAPI, HF)."""
    if isinstance(body, str):
        return body
    if isinstance(body, list):
        parts = [m for m in (_message(item) for item in body) if m]
        return "; ".join(parts) or None
    if not isinstance(body, dict):
        return None
    for key in ("error", "message", "detail", "msg"):
        value = body.get(key)
        if isinstance(value, dict):
            value = _message(value)
        elif isinstance(value, list):
            value = _message(value)
        if isinstance(value, str) and value.strip():
            location = body.get("loc")
            if key == "msg" and isinstance(location, list):
                where = ".".join(str(p) for p in location if p not in ("body", "query"))
                return f"{where}: {value}" if where else value
            return value.strip()
    return None


def _detail(response: httpx.Response, body: Any) -> str:
    message = _message(body)
    if message:
        return _clip(message)
    text = _page_text(response.text) if _is_html(response) else response.text.strip()
    return _clip(text) if text else "no details given"


def _page_text(html: str) -> str:
    html = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", html)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def _reason(response: httpx.Response) -> str:
    return response.reason_phrase or ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return max(0.0, float(value))


def _hint_words(seconds: float | None) -> str:
    """The server's ``Retry-After``, in words (empty without one)."""
    return f"; it asked to be called again in about {seconds:.0f} s" if seconds is not None else ""


def _ready_words(seconds: float | None) -> str:
    """A loading server's ``estimated_time``, in words (empty without one)."""
    return f"; it expects to be ready in about {seconds:.0f} s" if seconds is not None else ""
