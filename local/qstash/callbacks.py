"""``Upstash-Callback`` and ``Upstash-Failure-Callback``: reporting an outcome.

A callback is a POST of JSON to the callback URL, delivered like any message
(signed, retried, persisted). Its body holds the destination's last answer
(``status``, ``header``, ``body`` base64) and the source message
(``sourceMessageId``, ``url``, ``method``, ``sourceHeader``, ``sourceBody``
base64, ``retried``, ``maxRetries``, ...); a failure callback adds ``dlqId``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from local.qstash.message import Kind, Message, multi_header


def callback_body(
    source: Message,
    *,
    status: int,
    response_headers: dict[str, list[str]],
    response_body: bytes,
    dlq_id: str | None = None,
) -> dict[str, Any]:
    """The JSON a callback receives about ``source``'s last attempt."""
    body: dict[str, Any] = {
        "status": status,
        "header": response_headers,
        "body": base64.b64encode(response_body).decode("ascii"),
        "retried": source.retried,
        "maxRetries": source.max_retries,
        "sourceMessageId": source.id,
        "url": source.url,
        "method": source.method,
        "sourceHeader": multi_header(source.headers),
        "sourceBody": base64.b64encode(source.body).decode("ascii"),
        "notBefore": str(int(source.not_before * 1000)),
        "createdAt": str(int(source.created_at * 1000)),
    }
    if source.caller_ip is not None:
        body["callerIP"] = source.caller_ip
    if source.label is not None:
        body["label"] = source.label
    if dlq_id is not None:
        body["dlqId"] = dlq_id
    return body


def callback_message(
    *,
    message_id: str,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    max_retries: int,
    now: float,
) -> Message:
    """A callback as a message of its own (callbacks trigger no further callbacks)."""
    return Message(
        id=message_id,
        kind=Kind.CALLBACK,
        url=url,
        method="POST",
        body=json.dumps(body).encode("utf-8"),
        headers={**headers, "Content-Type": "application/json"},
        max_retries=max_retries,
        created_at=now,
        not_before=now,
        next_attempt_at=now,
    )
