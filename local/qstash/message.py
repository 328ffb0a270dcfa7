"""What the server stores: messages and their dead letters, and their JSON form.

A message is a delivery order accepted by ``POST /v2/publish``; a callback
(success or failure) is also a message, of kind ``callback``, so it is signed,
retried and persisted the same way. JSON field names follow the QStash REST
API (``messageId``, ``notBefore`` in ms, ``header`` as name → list, ...).
"""

from __future__ import annotations

import base64
import dataclasses
import secrets
from enum import StrEnum
from typing import Any

from local.qstash.redaction import redacted, redaction, shown_headers


class State(StrEnum):
    """Lifecycle of a message in the store."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    DLQ = "dlq"


class Kind(StrEnum):
    """A published message, or a callback about one (callbacks get no callbacks)."""

    MESSAGE = "message"
    CALLBACK = "callback"


@dataclasses.dataclass(frozen=True)
class Message:
    """One message: where it goes, what it carries, how it is retried, where it stands.

    ``queue``/``queue_seq``: the FIFO queue it was enqueued to and its place there
    (a callback inherits its source's place, so the queue waits for it);
    ``flow_control_key`` with ``parallelism``/``rate``/``period_s``: the flow
    control it is subject to; ``schedule_id``: the schedule that created it;
    ``topic_name``/``endpoint_name``: the URL group (and endpoint) it fanned out to;
    ``redact``: fields hidden in API answers (``local.qstash.redaction``).
    """

    id: str
    url: str
    method: str
    body: bytes
    headers: dict[str, str]
    max_retries: int
    created_at: float
    not_before: float
    kind: Kind = Kind.MESSAGE
    retry_delay: str | None = None
    timeout_s: float | None = None
    callback: str | None = None
    failure_callback: str | None = None
    callback_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    failure_callback_headers: dict[str, str] = dataclasses.field(default_factory=dict)
    label: str | None = None
    caller_ip: str | None = None
    queue: str | None = None
    queue_seq: int | None = None
    flow_control_key: str | None = None
    parallelism: int | None = None
    rate: int | None = None
    period_s: float | None = None
    schedule_id: str | None = None
    topic_name: str | None = None
    endpoint_name: str | None = None
    redact: str | None = None
    state: State = State.PENDING
    next_attempt_at: float = 0.0
    retried: int = 0


@dataclasses.dataclass(frozen=True)
class DeadLetter:
    """A message whose delivery failed for good, with the last response."""

    dlq_id: str
    message: Message
    response_status: int
    response_headers: dict[str, list[str]]
    response_body: bytes
    created_at: float


def multi_header(headers: dict[str, str]) -> dict[str, list[str]]:
    """QStash's header shape: each name maps to a list of values."""
    return {name: [value] for name, value in headers.items()}


def body_fields(body: bytes, text_key: str, base64_key: str) -> dict[str, str]:
    """``{text_key: text}`` for UTF-8 bodies, else ``{base64_key: base64}``; empty for none."""
    if not body:
        return {}
    try:
        return {text_key: body.decode("utf-8")}
    except UnicodeDecodeError:
        return {base64_key: base64.b64encode(body).decode("ascii")}


def shown_body(body: bytes, redact: str | None) -> dict[str, str]:
    """The body fields of an API answer: ``REDACTED:<sha256>`` when the body is redacted."""
    if body and redaction(redact).body:
        return {"body": redacted(body)}
    return body_fields(body, "body", "bodyBase64")


def with_optional(data: dict[str, Any], optional: dict[str, Any], message: Message) -> dict[str, Any]:
    """``data`` with the ``optional`` fields that are set and the message's callback headers, as QStash
    leaves unset fields out of its answers."""
    data.update({key: value for key, value in optional.items() if value is not None})
    if message.callback_headers:
        data["callbackHeader"] = multi_header(message.callback_headers)
    if message.failure_callback_headers:
        data["failureCallbackHeader"] = multi_header(message.failure_callback_headers)
    return data


def message_json(message: Message) -> dict[str, Any]:
    """``GET /v2/messages/{id}``: the message as QStash describes it."""
    data: dict[str, Any] = {
        "messageId": message.id,
        "url": message.url,
        "method": message.method,
        "header": multi_header(shown_headers(message.headers, message.redact)),
        "maxRetries": message.max_retries,
        "notBefore": int(message.not_before * 1000),
        "createdAt": int(message.created_at * 1000),
        **shown_body(message.body, message.redact),
    }
    optional = {
        "callback": message.callback,
        "failureCallback": message.failure_callback,
        "callerIP": message.caller_ip,
        "label": message.label,
        "retryDelayExpression": message.retry_delay,
        "queueName": message.queue,
        "scheduleId": message.schedule_id,
        "topicName": message.topic_name,
        "endpointName": message.endpoint_name,
        "flowControlKey": message.flow_control_key,
        "parallelism": message.parallelism,
        "rate": message.rate,
        "period": None if message.period_s is None else int(message.period_s),
    }
    return with_optional(data, optional, message)


def dead_letter_json(letter: DeadLetter) -> dict[str, Any]:
    """``GET /v2/dlq[/{dlqId}]``: the message plus ``dlqId`` and the last response."""
    data = message_json(letter.message)
    data.update(
        {
            "dlqId": letter.dlq_id,
            "responseStatus": letter.response_status,
            "responseHeader": letter.response_headers,
            **body_fields(letter.response_body, "responseBody", "responseBodyBase64"),
        }
    )
    return data


def new_id(prefix: str) -> str:
    """A fresh id such as ``msg_4f9c...`` or ``dlq_...``."""
    return f"{prefix}_{secrets.token_hex(13)}"


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A cron schedule: the publish request it repeats (``headers`` keyed lower-case, as
    ``POST /v2/schedules/{destination}`` received them) and when it fires next."""

    id: str
    cron: str
    destination: str
    headers: dict[str, str]
    body: bytes
    caller_ip: str | None
    queue: str | None
    paused: bool
    created_at: float
    next_fire: float
    last_fire: float | None = None
    last_message_id: str | None = None
    error: str | None = None
