"""Reading QStash's failure callback about a step message (:mod:`handlers.dead_letters`)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from handlers.dead_letters import BadFailureReport, parse_failure_report


def raw(**fields: Any) -> bytes:
    source = json.dumps({"queue_id": "q1", "step": "transcribe", "attempt": 2}).encode()
    return json.dumps({"sourceBody": base64.b64encode(source).decode(), **fields}).encode()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": 503, "retried": 3}, "the transcribe step could not be delivered: the service answered 503 to 4 attempts"),
        ({"status": 502, "retried": 0}, "the transcribe step could not be delivered: the service answered 502 to 1 attempt"),
        ({"status": 0, "retried": 2}, "the transcribe step could not be delivered: the service could not be reached in 3 attempts"),
        ({"status": 500}, "the transcribe step could not be delivered: the service answered 500"),
    ],
)
def test_the_reason_says_what_qstash_saw_in_a_tutors_words(fields: dict[str, Any], reason: str) -> None:
    letter = parse_failure_report(raw(dlqId="dlq_9", sourceMessageId="msg_1", **fields))
    assert letter.reason == reason
    assert (letter.message.queue_id, letter.message.step, letter.message.attempt) == ("q1", "transcribe", 2)
    assert (letter.dlq_id, letter.source_message_id) == ("dlq_9", "msg_1")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (raw(), "status must be a non-negative integer"),
        (raw(status="503"), "status must be a non-negative integer"),
        (raw(status=True), "status must be a non-negative integer"),
        (raw(status=503, retried=1.5), "retried must be a non-negative integer"),
        (raw(status=503, dlqId=7), "dlqId must be a string"),
        (json.dumps({"status": 503, "sourceBody": base64.b64encode(b"{}").decode()}).encode(), "not a step message"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_a_report_that_is_not_qstashs_names_what_is_wrong(body: bytes, error: str) -> None:
    with pytest.raises(BadFailureReport, match=error):
        parse_failure_report(body)
