"""QStash's failure callback about a step message it dead-lettered, read and put in a tutor's words.

When QStash has spent a message's retries (the API was unreachable, or the
handler kept answering 5xx) it moves the message to its DLQ and POSTs a JSON
report to the message's ``Upstash-Failure-Callback``: the last answer
(``status``, ``header``, ``body`` base64), how often it ``retried`` (of
``maxRetries``), the ``dlqId``, and the source message (``sourceMessageId``,
``url``, ``method``, ``sourceHeader``, ``sourceBody`` base64). The source body
is the step message, which names the queue, the step and the attempt.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from domain.errors import VidpipeError
from handlers.step_runner import BadMessage, StepMessage


class BadFailureReport(VidpipeError):
    """A failure callback body that is not QStash's report about one of our step messages."""


@dataclass(frozen=True)
class DeadLetter:
    """One step message QStash gave up on."""

    message: StepMessage
    status: int
    """The last answer's HTTP status; 0 when no answer came (refused connection, timeout)."""
    retried: int | None
    """How often QStash retried after the first attempt (absent from the report: None)."""
    dlq_id: str | None
    source_message_id: str | None

    @property
    def reason(self) -> str:
        """Why the step failed, for the tutor: ``the compress step could not be delivered: ...``."""
        step = f"the {self.message.step} step could not be delivered"
        if self.retried is None:
            count = ""
        else:
            attempts = self.retried + 1
            count = f" {attempts} attempt{'s' if attempts != 1 else ''}"
        if self.status == 0:
            return f"{step}: the service could not be reached" + (f" in{count}" if count else "")
        return f"{step}: the service answered {self.status}" + (f" to{count}" if count else "")


def _optional_str(report: dict[str, Any], name: str) -> str | None:
    value = report.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadFailureReport(f"the failure report's {name} must be a string")
    return value


def _count(report: dict[str, Any], name: str, *, required: bool) -> int | None:
    value = report.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadFailureReport(f"the failure report's {name} must be a non-negative integer, got {value!r}")
    return value


def parse_failure_report(raw: bytes) -> DeadLetter:
    """The dead letter a failure callback reports; :class:`BadFailureReport` names what is wrong."""
    try:
        report = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadFailureReport(f"the failure report is not JSON: {error}") from None
    if not isinstance(report, dict):
        raise BadFailureReport("the failure report must be a JSON object")
    source = report.get("sourceBody")
    if not isinstance(source, str):
        raise BadFailureReport("the failure report has no sourceBody (the step message, base64)")
    try:
        body = base64.b64decode(source, validate=True)
    except (binascii.Error, ValueError):
        raise BadFailureReport("the failure report's sourceBody is not base64") from None
    try:
        message = StepMessage.parse(body)
    except BadMessage as error:
        raise BadFailureReport(f"the failure report's sourceBody is not a step message: {error}") from None
    status = _count(report, "status", required=True)
    assert status is not None
    return DeadLetter(
        message=message,
        status=status,
        retried=_count(report, "retried", required=False),
        dlq_id=_optional_str(report, "dlqId"),
        source_message_id=_optional_str(report, "sourceMessageId"),
    )
