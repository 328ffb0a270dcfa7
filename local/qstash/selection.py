"""Which messages or dead letters a bulk request targets: ids, filters, or all.

The bulk endpoints (``DELETE /v2/messages``, ``DELETE /v2/dlq``, ``POST
/v2/dlq/retry``) take their target from the query (the TypeScript SDK 2.x:
``?messageIds=A&messageIds=B``, ``?dlqIds=...``, filter fields, ``count``,
``cursor``) or from a JSON body (the Python SDK: ``{"messageIds": [...]}``).
QStash's rule, followed exactly: ids given → exactly those; filters given →
exactly the matches; **neither → every one** (the request the SDKs send for
``cancel({all: true})`` / ``cancel_all()``), at most ``count`` of them when a
count is given. Anything else the server does not understand is refused
before a single message is touched: an unknown parameter is 400, a filter on
a feature this server does not have is 501, an empty id list is 400 (the
SDKs refuse it too, because it reads as "all").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from local.qstash.errors import ApiError
from local.qstash.message import Message

MAX_COUNT = 1000
"""Largest ``count`` accepted for one bulk call."""

_IGNORED = ("qstash_token",)
_COMMON_FILTERS = (
    "url", "label", "callerIp", "fromDate", "toDate", "flowControlKey", "queueName", "topicName", "scheduleId"
)
MESSAGE_FILTERS = (*_COMMON_FILTERS, "host", "path")
DLQ_FILTERS = (*_COMMON_FILTERS, "messageId", "responseStatus")
UNSUPPORTED_FILTERS = {
    "api": "API destinations",
}
"""Filters on features this server does not implement: 501, never a silent no-op."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """The target of one bulk request: explicit ``ids``, or ``filters`` (empty: all)."""

    ids: tuple[str, ...] | None
    filters: Mapping[str, tuple[str, ...]]
    count: int | None
    cursor: int

    @property
    def everything(self) -> bool:
        return self.ids is None and not self.filters

    def matches(self, message: Message, response_status: int | None = None) -> bool:
        """Does ``message`` (with its dead letter's status, for the DLQ) pass every filter?"""
        return all(
            _field_matches(name, values, message, response_status)
            for name, values in self.filters.items()
        )


def parse_selection(
    query: Sequence[tuple[str, str]],
    body: Any,
    *,
    ids_key: str,
    filters: Sequence[str],
) -> Selection:
    """A ``Selection`` from the query's ``(name, value)`` pairs and a parsed JSON body (or None)."""
    params: dict[str, list[str]] = {}
    for name, value in query:
        if name not in _IGNORED:
            params.setdefault(name, []).append(value)
    if body is not None:
        _merge_body(params, body, ids_key)
    ids = _ids(params.pop(ids_key, None), ids_key)
    count = _integer(params.pop("count", None), "count", 1, MAX_COUNT)
    cursor = _integer(params.pop("cursor", None), "cursor", 0, None) or 0
    for name in params:
        if name in UNSUPPORTED_FILTERS and name not in filters:
            raise ApiError(
                501, f"the {name} filter ({UNSUPPORTED_FILTERS[name]}) is not supported by the local QStash server"
            )
        if name not in filters:
            raise ApiError(
                400, f"unknown parameter {name[:64]!r}: expected {ids_key}, count, cursor or one of {', '.join(filters)}"
            )
    chosen = {name: tuple(values) for name, values in params.items()}
    if ids is not None and chosen:
        raise ApiError(400, f"send either {ids_key} or filters, not both")
    for name in ("fromDate", "toDate", "responseStatus"):
        for value in chosen.get(name, ()):
            _integer([value], name, 0, None)
    return Selection(ids=ids, filters=chosen, count=count, cursor=cursor)


def _merge_body(params: dict[str, list[str]], body: Any, ids_key: str) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, f'expected a JSON object such as {{"{ids_key}": ["...", ...]}}')
    for name, value in body.items():
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise ApiError(400, f"{str(name)[:64]!r} must be a string, a number or a list of them")
        params.setdefault(str(name), []).extend(str(v) for v in values)


def _ids(values: list[str] | None, key: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    ids = tuple(dict.fromkeys(v for v in values if v))
    if not ids:
        raise ApiError(
            400, f"empty {key}: name at least one id (send neither ids nor filters to target all)"
        )
    return ids


def _integer(values: list[str] | None, name: str, low: int, high: int | None) -> int | None:
    if not values:
        return None
    raw = values[-1].strip()
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ApiError(400, f"{name} must be an integer {bound}, got {raw[:32]!r}")
    return int(raw)


def _field_matches(name: str, values: tuple[str, ...], message: Message, status: int | None) -> bool:
    if name == "fromDate":
        return message.created_at * 1000 >= int(values[-1])
    if name == "toDate":
        return message.created_at * 1000 <= int(values[-1])
    if name == "responseStatus":
        return status is not None and str(status) in values
    if name == "label":
        labels = set((message.label or "").split(","))
        return bool(labels & set(values))
    actual = _field(name, message)
    return actual is not None and actual in values


def _field(name: str, message: Message) -> str | None:
    if name == "messageId":
        return message.id
    if name == "url":
        return message.url
    if name == "host":
        return urlsplit(message.url).hostname
    if name == "path":
        return urlsplit(message.url).path
    if name == "callerIp":
        return message.caller_ip
    if name == "flowControlKey":
        return message.flow_control_key
    if name == "queueName":
        return message.queue
    if name == "topicName":
        return message.topic_name
    if name == "scheduleId":
        return message.schedule_id
    return None
