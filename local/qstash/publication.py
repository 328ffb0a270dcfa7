"""``POST /v2/publish/{destination}``: turning a publish request into a message.

Validates the destination and every ``Upstash-*`` header the contract lists
and answers a ``PublishError`` (400, with a message naming the header) for a
bad value. Pure: the caller supplies the clock and the new message id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from local.qstash.durations import DELAY_UNITS, TIMEOUT_UNITS, parse_duration
from local.qstash.expressions import ExpressionError, RetryDelayExpression
from local.qstash.flow_control import FlowControl, FlowControlError, parse_flow_control
from local.qstash.message import Kind, Message
from local.qstash.redaction import RedactionError, parse_redaction
from local.qstash.settings import Settings

METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})
FORWARD_PREFIX = "upstash-forward-"
CALLBACK_FORWARD_PREFIX = "upstash-callback-forward-"
FAILURE_CALLBACK_FORWARD_PREFIX = "upstash-failure-callback-forward-"
UNSUPPORTED_HEADERS: dict[str, str] = {}
"""Publish headers of features this server lacks: 501 rather than silently ignored."""


class PublishError(Exception):
    """A publish request the server refuses; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclasses.dataclass(frozen=True)
class Publication:
    """An accepted publish: the new message and, if asked for, its deduplication key."""

    message: Message
    dedup_key: str | None


def canonical_header(name: str) -> str:
    """Go's canonical header form (``x-foo-bar`` → ``X-Foo-Bar``), as QStash reports it."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def validate_url(url: str, what: str) -> str:
    """``url`` if it is an absolute http(s) URL, else a 400 naming ``what``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PublishError(
            f"invalid {what} {url!r}: it must be an absolute http:// or https:// URL"
        )
    return url


def forwarded(headers: Iterable[tuple[str, str]], prefix: str) -> dict[str, str]:
    """Headers named ``<prefix><Name>``, renamed ``<Name>`` (names lower-case on input)."""
    return {
        canonical_header(name[len(prefix):]): value
        for name, value in headers
        if name.startswith(prefix) and len(name) > len(prefix)
    }


def parse_publication(
    *,
    destination: str,
    headers: dict[str, str],
    body: bytes,
    caller_ip: str | None,
    settings: Settings,
    now: float,
    message_id: str,
    queue: str | None = None,
) -> Publication:
    """Validate a publish request (``headers`` keyed lower-case) into a ``Publication``."""
    if "://" not in destination:
        raise PublishError(
            f"publishing to a URL group or API ({destination[:64]!r}) is not supported by the"
            " local QStash server; publish to a full http(s) URL",
            status=501,
        )
    for name, feature in UNSUPPORTED_HEADERS.items():
        if name in headers:
            raise PublishError(f"{feature} is not supported by the local QStash server", status=501)
    url = validate_url(destination, "destination")
    items = list(headers.items())
    forward = forwarded(items, FORWARD_PREFIX)
    if "content-type" in headers:
        forward["Content-Type"] = headers["content-type"]
    not_before = _not_before(headers, settings, now)
    flow = _flow_control(headers)
    try:
        redact = parse_redaction(headers.get("upstash-redact-fields"))
    except RedactionError as error:
        raise PublishError(str(error)) from None
    message = Message(
        id=message_id,
        kind=Kind.MESSAGE,
        url=url,
        method=_method(headers),
        body=body,
        headers=forward,
        max_retries=_retries(headers, settings),
        retry_delay=_retry_delay(headers),
        timeout_s=_timeout(headers, settings),
        callback=_optional_url(headers, "upstash-callback"),
        failure_callback=_optional_url(headers, "upstash-failure-callback"),
        callback_headers=forwarded(items, CALLBACK_FORWARD_PREFIX),
        failure_callback_headers=forwarded(items, FAILURE_CALLBACK_FORWARD_PREFIX),
        label=headers.get("upstash-label"),
        caller_ip=caller_ip,
        created_at=now,
        not_before=not_before,
        next_attempt_at=not_before,
        queue=queue,
        flow_control_key=None if flow is None else flow.key,
        parallelism=None if flow is None else flow.parallelism,
        rate=None if flow is None else flow.rate,
        period_s=None if flow is None else flow.period_s,
        redact=redact,
    )
    return Publication(message=message, dedup_key=_dedup_key(headers, message))


def _flow_control(headers: dict[str, str]) -> FlowControl | None:
    try:
        return parse_flow_control(
            headers.get("upstash-flow-control-key"), headers.get("upstash-flow-control-value")
        )
    except FlowControlError as error:
        raise PublishError(str(error)) from None


def _method(headers: dict[str, str]) -> str:
    method = headers.get("upstash-method", "POST").strip().upper()
    if method not in METHODS:
        raise PublishError(
            f"invalid Upstash-Method {method!r}: use one of {', '.join(sorted(METHODS))}"
        )
    return method


def _not_before(headers: dict[str, str], settings: Settings, now: float) -> float:
    """Upstash-Not-Before (unix seconds) beats Upstash-Delay; both capped by max delay."""
    if "upstash-not-before" in headers:
        raw = headers["upstash-not-before"].strip()
        if not raw.isdigit():
            raise PublishError(
                f"invalid Upstash-Not-Before {raw!r}: expected a unix timestamp in seconds"
            )
        when = max(float(raw), now)
    elif "upstash-delay" in headers:
        raw = headers["upstash-delay"]
        try:
            when = now + parse_duration(raw, DELAY_UNITS)
        except ValueError:
            raise PublishError(
                f"invalid Upstash-Delay {raw!r}: expected <number><s|m|h|d>, e.g. 10s"
            ) from None
    else:
        return now
    if when - now > settings.max_delay_s:
        raise PublishError(
            f"delay of {when - now:.0f} s exceeds the maximum of {settings.max_delay_s:.0f} s"
        )
    return when


def _retries(headers: dict[str, str], settings: Settings) -> int:
    raw = headers.get("upstash-retries")
    if raw is None:
        return settings.default_retries
    raw = raw.strip()
    if not raw.isdigit() or int(raw) > settings.max_retries:
        raise PublishError(
            f"invalid Upstash-Retries {raw!r}: expected an integer 0..{settings.max_retries}"
        )
    return int(raw)


def _retry_delay(headers: dict[str, str]) -> str | None:
    raw = headers.get("upstash-retry-delay")
    if raw is None:
        return None
    try:
        RetryDelayExpression(raw)
    except ExpressionError as error:
        raise PublishError(f"invalid Upstash-Retry-Delay: {error}") from None
    return raw


def _timeout(headers: dict[str, str], settings: Settings) -> float | None:
    raw = headers.get("upstash-timeout")
    if raw is None:
        return None
    try:
        seconds = parse_duration(raw, TIMEOUT_UNITS)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= settings.max_timeout_s:
        raise PublishError(
            f"invalid Upstash-Timeout {raw!r}: expected <number><s|m|h> "
            f"between 1s and {settings.max_timeout_s:.0f}s"
        )
    return seconds


def _optional_url(headers: dict[str, str], name: str) -> str | None:
    raw = headers.get(name)
    return None if raw is None else validate_url(raw.strip(), canonical_header(name))


def _dedup_key(headers: dict[str, str], message: Message) -> str | None:
    """``id:<Upstash-Deduplication-Id>`` or ``content:<hash>``; the explicit id wins."""
    if "upstash-deduplication-id" in headers:
        return "id:" + headers["upstash-deduplication-id"]
    raw = headers.get("upstash-content-based-deduplication")
    if raw is None or raw.strip().lower() == "false":
        return None
    if raw.strip().lower() != "true":
        raise PublishError(
            f"invalid Upstash-Content-Based-Deduplication {raw!r}: expected true or false"
        )
    content = json.dumps(
        [message.url, message.method, sorted(message.headers.items())]
    ).encode() + b"\0" + message.body
    return "content:" + hashlib.sha256(content).hexdigest()
