"""The local QStash server end to end: the official SDK publishes, a real
loopback destination receives and verifies with ``qstash.Receiver``."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.local.qstash_support import TOKEN, Destination, Reply, ThreadedServer, wait_until

SDK = Callable[[ThreadedServer | str], QStash]


def test_publish_delivers_a_signed_request(sdk: QStash, destination: Destination) -> None:
    """Protocol: publish → delivery with Upstash-Signature (exact URL incl. query, raw body),
    Upstash-Message-Id, Upstash-Retried, User-Agent, Upstash-Caller-Ip, Content-Type."""
    url = destination.url("/hook?x=1&y=two")
    result = sdk.message.publish_json(url=url, body={"video": "v1", "n": [1, 2]})
    assert result.message_id.startswith("msg_") and result.deduplicated is False
    [received] = destination.wait_for("/hook?x=1&y=two")
    assert received.signature_error is None
    assert received.method == "POST"
    assert json.loads(received.body) == {"video": "v1", "n": [1, 2]}
    assert received.headers["upstash-message-id"] == result.message_id
    assert received.headers["upstash-retried"] == "0"
    assert received.headers["user-agent"] == "Upstash-QStash"
    assert received.headers["upstash-caller-ip"] == "127.0.0.1"
    assert received.headers["content-type"] == "application/json"


def test_forwarded_headers_and_method(sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Forward-<Name> forwarded as <Name>; Upstash-Method; raw body unchanged."""
    raw = b'{ "spacing"  :  "kept" }'
    sdk.message.publish(
        url=destination.url("/put"),
        body=raw,
        method="PUT",
        content_type="text/plain",
        headers={"X-Queue-Id": "q-42", "Upstash-Forward-X-Step": "compress"},
    )
    [received] = destination.wait_for("/put")
    assert received.signature_error is None
    assert received.method == "PUT"
    assert received.body == raw
    assert received.headers["x-queue-id"] == "q-42"
    assert received.headers["x-step"] == "compress"
    assert received.headers["content-type"] == "text/plain"
    assert not any(name.startswith("upstash-forward") for name in received.headers)


def test_delay_and_pending_message(sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Delay postpones delivery; GET /v2/messages/{id} while pending,
    404 once delivered."""
    published = time.time()
    result = sdk.message.publish_json(url=destination.url("/later"), body={"a": 1}, delay="1s", retries=2, label="lbl")
    message = sdk.message.get(result.message_id)
    assert message.url == destination.url("/later")
    assert message.method == "POST"
    assert message.max_retries == 2
    assert message.label == "lbl"
    assert message.body == '{"a": 1}'
    assert message.not_before >= int(published * 1000) + 900
    [received] = destination.wait_for("/later", timeout=5)
    assert received.at - published >= 0.9
    wait_until(lambda: _message_gone(sdk, result.message_id), 3, "the message to be gone")


def _message_gone(sdk: QStash, message_id: str) -> bool:
    try:
        sdk.message.get(message_id)
    except QStashError as error:
        return "404" in str(error)
    return False


def test_not_before_beats_delay(sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Not-Before (unix seconds) wins over Upstash-Delay."""
    published = time.time()
    sdk.message.publish_json(url=destination.url("/nb"), body={}, delay="1h", not_before=int(published) + 1)
    [received] = destination.wait_for("/nb", timeout=5)
    assert received.at >= int(published) + 1 - 0.05


def test_retries_with_retry_delay_expression(sdk: QStash, destination: Destination) -> None:
    """Protocol: non-2xx is retried; Upstash-Retry-Delay (ms expression over `retried`);
    Upstash-Retried counts attempts."""
    destination.script("/flaky", Reply(500), Reply(502))
    sdk.message.publish_json(url=destination.url("/flaky"), body={}, retries=3, retry_delay="100 * (1 + retried)")
    requests = destination.wait_for("/flaky", 3)
    assert [r.headers["upstash-retried"] for r in requests] == ["0", "1", "2"]
    assert all(r.signature_error is None for r in requests)
    assert requests[1].at - requests[0].at >= 0.09
    assert requests[2].at - requests[1].at >= 0.19
    time.sleep(0.3)
    assert len(destination.requests_to("/flaky")) == 3


def test_retry_after_from_destination(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Protocol: the destination's Retry-After (seconds, Go duration, 0) sets the next attempt,
    overriding the default backoff (12 s here, unscaled)."""
    server = qstash_factory(backoff_scale=1.0)
    destination.script(
        "/busy",
        Reply(503, {"Retry-After": "0"}),
        Reply(503, {"Retry-After": "600ms"}),
        Reply(429, {"Retry-After": "1"}),
    )
    sdk_factory(server).message.publish_json(url=destination.url("/busy"), body={})
    requests = destination.wait_for("/busy", 4, timeout=6)
    gaps = [later.at - earlier.at for earlier, later in zip(requests, requests[1:])]
    assert gaps[0] < 0.5
    assert 0.55 <= gaps[1] < 2
    assert 0.95 <= gaps[2] < 3


def test_non_retryable_489_goes_to_dlq(sdk: QStash, destination: Destination) -> None:
    """Protocol: 489 with Upstash-NonRetryable-Error: true → DLQ at once, no retry."""
    destination.script("/refuse", Reply(489, {"Upstash-NonRetryable-Error": "true"}, b"bad video"))
    result = sdk.message.publish_json(url=destination.url("/refuse"), body={}, retries=3)
    dead = wait_until(lambda: sdk.dlq.list().messages, 5, "a dead letter")
    assert len(destination.requests_to("/refuse")) == 1
    [letter] = dead
    assert letter.message_id == result.message_id
    assert letter.response_status == 489
    assert letter.response_body == "bad video"
    assert letter.url == destination.url("/refuse")


def test_exhausted_retries_go_to_dlq_with_failure_callback(sdk: QStash, destination: Destination) -> None:
    """Protocol: retries exhausted (default backoff, scaled) → DLQ + signed failure callback
    with status, header, body, retried, maxRetries, sourceMessageId, url, method,
    sourceHeader, sourceBody, dlqId."""
    destination.script("/broken", *[Reply(500, {"X-Why": "disk"}, b"boom")] * 3)
    result = sdk.message.publish(
        url=destination.url("/broken"),
        body=b"payload",
        content_type="text/plain",
        retries=2,
        headers={"X-Queue-Id": "q1"},
        failure_callback=destination.url("/failed"),
        failure_callback_headers={"Forward-X-Note": "from-failure"},
    )
    [callback] = destination.wait_for("/failed", timeout=5)
    assert len(destination.requests_to("/broken")) == 3
    assert callback.signature_error is None
    assert callback.headers["x-note"] == "from-failure"
    payload = json.loads(callback.body)
    [letter] = sdk.dlq.list().messages
    assert payload["status"] == 500
    assert payload["header"]["X-Why"] == ["disk"]
    assert base64.b64decode(payload["body"]) == b"boom"
    assert payload["retried"] == 2
    assert payload["maxRetries"] == 2
    assert payload["sourceMessageId"] == result.message_id
    assert payload["url"] == destination.url("/broken")
    assert payload["method"] == "POST"
    assert payload["sourceHeader"]["X-Queue-Id"] == ["q1"]
    assert payload["sourceHeader"]["Content-Type"] == ["text/plain"]
    assert base64.b64decode(payload["sourceBody"]) == b"payload"
    assert payload["dlqId"] == letter.dlq_id
    assert letter.response_status == 500


def test_success_callback(sdk: QStash, destination: Destination) -> None:
    """Protocol: success → signed Upstash-Callback with the failure callback's shape minus dlqId."""
    destination.script("/ok", Reply(201, {}, b"created"))
    result = sdk.message.publish_json(url=destination.url("/ok"), body={"k": "v"}, callback=destination.url("/cb"))
    [callback] = destination.wait_for("/cb")
    assert callback.signature_error is None
    payload = json.loads(callback.body)
    assert "dlqId" not in payload
    assert payload["status"] == 201
    assert base64.b64decode(payload["body"]) == b"created"
    assert payload["sourceMessageId"] == result.message_id
    assert payload["retried"] == 0
    assert payload["maxRetries"] == 3
    assert json.loads(base64.b64decode(payload["sourceBody"])) == {"k": "v"}
    assert payload["url"] == destination.url("/ok")
    assert payload["method"] == "POST"


def test_deduplication_id(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Protocol: Upstash-Deduplication-Id → 202 with the existing id, deduplicated: true."""
    first = sdk.message.publish_json(url=destination.url("/dedup"), body={"n": 1}, deduplication_id="queue-1:compress:0")
    second = sdk.message.publish_json(url=destination.url("/dedup"), body={"n": 2}, deduplication_id="queue-1:compress:0")
    assert second.deduplicated is True and second.message_id == first.message_id
    raw = http.post(
        f"/v2/publish/{destination.url('/dedup')}",
        content=b"{}",
        headers={"Upstash-Deduplication-Id": "queue-1:compress:0"},
    )
    assert raw.status_code == 202
    assert raw.json() == {"messageId": first.message_id, "deduplicated": True}
    other = sdk.message.publish_json(url=destination.url("/dedup"), body={"n": 3}, deduplication_id="queue-1:compress:1")
    assert other.deduplicated is False and other.message_id != first.message_id
    destination.wait_for("/dedup", 2)
    time.sleep(0.2)
    assert len(destination.requests_to("/dedup")) == 2


def test_content_based_deduplication(sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Content-Based-Deduplication: same content → same id; other content → new."""
    url = destination.url("/content")
    first = sdk.message.publish_json(url=url, body={"n": 1}, content_based_deduplication=True)
    again = sdk.message.publish_json(url=url, body={"n": 1}, content_based_deduplication=True)
    other = sdk.message.publish_json(url=url, body={"n": 2}, content_based_deduplication=True)
    assert again.deduplicated and again.message_id == first.message_id
    assert not other.deduplicated and other.message_id != first.message_id


def test_deduplication_window_expires(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Protocol: a deduplication id is remembered for a window only (10 min; shortened here)."""
    sdk = sdk_factory(qstash_factory(dedup_window_s=0.3))
    first = sdk.message.publish_json(url=destination.url("/window"), body={}, deduplication_id="d")
    assert sdk.message.publish_json(url=destination.url("/window"), body={}, deduplication_id="d").deduplicated
    time.sleep(0.35)
    later = sdk.message.publish_json(url=destination.url("/window"), body={}, deduplication_id="d")
    assert not later.deduplicated and later.message_id != first.message_id


def test_cancel_single_message(sdk: QStash, destination: Destination) -> None:
    """Protocol: DELETE /v2/messages/{id} cancels (never delivered); then 404."""
    doomed = sdk.message.publish_json(url=destination.url("/doomed"), body={}, delay="1s")
    sdk.message.cancel(doomed.message_id)
    sdk.message.publish_json(url=destination.url("/marker"), body={}, delay="1s")
    destination.wait_for("/marker", timeout=5)
    assert destination.requests_to("/doomed") == []
    with pytest.raises(QStashError, match="404"):
        sdk.message.cancel(doomed.message_id)
    with pytest.raises(QStashError, match="404"):
        sdk.message.get(doomed.message_id)


def test_cancel_many_and_all(sdk: QStash, destination: Destination) -> None:
    """Protocol: DELETE /v2/messages {"messageIds": [...]} (Python SDK) → {"cancelled": n};
    no body and no query: all (QStash's definition of cancel-all)."""
    ids = [sdk.message.publish_json(url=destination.url(f"/many{i}"), body={}, delay="1s").message_id for i in range(3)]
    assert sdk.message.cancel_many([ids[0], ids[1], "msg_unknown"]) == 2
    destination.wait_for("/many2", timeout=5)
    assert destination.requests_to("/many0") == destination.requests_to("/many1") == []
    for i in range(2):
        sdk.message.publish_json(url=destination.url(f"/all{i}"), body={}, delay="1h")
    assert sdk.message.cancel_all() == 2
    assert sdk.message.cancel_all() == 0


def _vidpipe_step_messages(sdk: QStash, destination: Destination) -> list[str]:
    """Pending messages shaped like vidpipe's step messages (delayed so they stay pending)."""
    return [
        sdk.message.publish_json(
            url=destination.url(f"/api/video-processing/steps/{step}"),
            body={"queue_id": "q-1", "step": step, "attempt": 0},
            delay="1h",
            deduplication_id=f"q-1:{step}:0",
        ).message_id
        for step in ("compress", "transcribe")
    ]


def _still_pending(sdk: QStash, message_ids: list[str]) -> list[str]:
    return [sdk.message.get(message_id).message_id for message_id in message_ids]


def test_cancelling_an_unknown_id_leaves_other_messages_alone(sdk: QStash, destination: Destination) -> None:
    """Regression (issue 15, item 4): bulk cancel of a nonexistent id through the Python SDK
    (JSON body) cancels nothing; vidpipe's pending step messages stay pending."""
    steps = _vidpipe_step_messages(sdk, destination)
    assert sdk.message.cancel_many(["msg_does_not_exist"]) == 0
    assert _still_pending(sdk, steps) == steps


def test_bulk_cancel_by_query_ids_cancels_exactly_those(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Regression (issue 15, item 4): the TypeScript SDK 2.x sends the ids in the query,
    ``DELETE /v2/messages?messageIds=A&messageIds=B``; exactly those are cancelled, an
    unknown one counts 0, nothing else is touched."""
    steps = _vidpipe_step_messages(sdk, destination)
    doomed = sdk.message.publish_json(url=destination.url("/doomed"), body={}, delay="1h").message_id
    response = http.delete("/v2/messages", params=[("messageIds", "msg_does_not_exist")])
    assert response.status_code == 200 and response.json() == {"cancelled": 0}
    response = http.delete("/v2/messages", params=[("messageIds", doomed), ("messageIds", "msg_does_not_exist")])
    assert response.json() == {"cancelled": 1}
    assert _still_pending(sdk, steps) == steps
    with pytest.raises(QStashError, match="404"):
        sdk.message.get(doomed)


@pytest.mark.parametrize(
    ("params", "content", "status", "mentions"),
    [
        ([("messageIds", "")], None, 400, "empty messageIds"),
        ([], b'{"messageIds": []}', 400, "empty messageIds"),
        ([("messageId", "msg_x")], None, 400, "unknown parameter"),
        ([("api", "llm")], None, 501, "API destinations"),
        ([("count", "many")], None, 400, "count"),
        ([("messageIds", "msg_x"), ("label", "l")], None, 400, "not both"),
        ([], b"not json", 400, "JSON"),
        ([], b'["msg_x"]', 400, "JSON object"),
    ],
)
def test_a_bulk_cancel_the_server_does_not_understand_cancels_nothing(
    sdk: QStash,
    http: httpx.Client,
    destination: Destination,
    params: list[tuple[str, str]],
    content: bytes | None,
    status: int,
    mentions: str,
) -> None:
    """Protocol: a bulk cancel that is neither ids, nor known filters, nor the bare cancel-all
    request is refused (400, or 501 for a filter on a feature this server lacks) and cancels
    nothing."""
    steps = _vidpipe_step_messages(sdk, destination)
    response = http.request("DELETE", "/v2/messages", params=params, content=content)
    assert response.status_code == status
    assert mentions in response.json()["error"]
    assert _still_pending(sdk, steps) == steps


def test_bulk_cancel_by_filter_and_count(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Protocol: DELETE /v2/messages?label=...|url=...|path=... cancels the matches only;
    ?count=N (TS SDK ``cancel({all: true, count})``) cancels at most N."""
    labelled = sdk.message.publish_json(url=destination.url("/a"), body={}, delay="1h", label="batch-7").message_id
    other = sdk.message.publish_json(url=destination.url("/b"), body={}, delay="1h", label="batch-8").message_id
    assert http.delete("/v2/messages", params={"label": "batch-7"}).json() == {"cancelled": 1}
    assert _still_pending(sdk, [other]) == [other]
    with pytest.raises(QStashError, match="404"):
        sdk.message.get(labelled)
    assert http.delete("/v2/messages", params={"path": "/nowhere"}).json() == {"cancelled": 0}
    assert http.delete("/v2/messages", params={"url": destination.url("/b")}).json() == {"cancelled": 1}
    for i in range(3):
        sdk.message.publish_json(url=destination.url(f"/c{i}"), body={}, delay="1h")
    assert http.delete("/v2/messages", params={"count": "2"}).json() == {"cancelled": 2}
    assert http.delete("/v2/messages", params={"count": "2"}).json() == {"cancelled": 1}


def test_dlq_list_get_delete_and_retry(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Protocol: GET /v2/dlq, GET/DELETE /v2/dlq/{dlqId}, POST /v2/dlq/retry/{dlqId} → 201."""
    destination.script("/dead", Reply(500, {}, b"nope"), Reply(500, {}, b"nope"))
    first = sdk.message.publish_json(url=destination.url("/dead"), body={"i": 1}, retries=0)
    second = sdk.message.publish_json(url=destination.url("/dead"), body={"i": 2}, retries=0)
    letters = wait_until(lambda: len(sdk.dlq.list().messages) == 2 and sdk.dlq.list().messages, 5, "two dead letters")
    by_message = {letter.message_id: letter for letter in letters}
    assert set(by_message) == {first.message_id, second.message_id}
    page = sdk.dlq.list(count=1)
    assert len(page.messages) == 1 and page.cursor is not None
    assert len(sdk.dlq.list(cursor=page.cursor).messages) == 1
    assert sdk.dlq.list(filter={"message_id": first.message_id}).messages[0].message_id == first.message_id

    letter = sdk.dlq.get(by_message[first.message_id].dlq_id)
    assert letter.response_status == 500 and letter.response_body == "nope" and letter.body == '{"i": 1}'

    retried = http.post(f"/v2/dlq/retry/{letter.dlq_id}")
    assert retried.status_code == 201
    new_id = retried.json()["messageId"]
    assert new_id != first.message_id
    redelivered = destination.wait_for("/dead", 3)[2]
    assert redelivered.headers["upstash-message-id"] == new_id
    assert redelivered.body == b'{"i": 1}'

    sdk.dlq.delete(by_message[second.message_id].dlq_id)
    assert sdk.dlq.list().messages == []
    with pytest.raises(QStashError, match="404"):
        sdk.dlq.get(letter.dlq_id)
    assert http.post(f"/v2/dlq/retry/{letter.dlq_id}").status_code == 404


def test_unauthorized(qstash_server: ThreadedServer, sdk_factory: SDK, destination: Destination) -> None:
    """Protocol: auth by Bearer token or ?qstash_token=; 401 {"error"} otherwise."""
    wrong = QStash("not-the-token", retry=False, base_url=qstash_server.url)
    try:
        with pytest.raises(QStashError, match="401"):
            wrong.message.publish_json(url=destination.url("/x"), body={})
    finally:
        wrong.http._client.close()
    target = f"{qstash_server.url}/v2/publish/{destination.url('/tok')}"
    response = httpx.post(target, content=b"{}")
    assert response.status_code == 401 and "error" in response.json()
    with_query = httpx.post(f"{target}?qstash_token={TOKEN}", content=b"{}")
    assert with_query.status_code == 200
    [received] = destination.wait_for("/tok")
    assert received.signature_error is None  # the token is not part of the destination URL


@pytest.mark.parametrize(
    ("headers", "mentions"),
    [
        ({"Upstash-Delay": "soon"}, "Upstash-Delay"),
        ({"Upstash-Delay": "8d"}, "exceeds"),
        ({"Upstash-Not-Before": "tomorrow"}, "Upstash-Not-Before"),
        ({"Upstash-Retries": "-1"}, "Upstash-Retries"),
        ({"Upstash-Retries": "many"}, "Upstash-Retries"),
        ({"Upstash-Retry-Delay": "__import__('os').system('true')"}, "Upstash-Retry-Delay"),
        ({"Upstash-Method": "FETCH"}, "Upstash-Method"),
        ({"Upstash-Timeout": "10x"}, "Upstash-Timeout"),
        ({"Upstash-Callback": "not a url"}, "Upstash-Callback"),
        ({"Upstash-Content-Based-Deduplication": "maybe"}, "Upstash-Content-Based-Deduplication"),
    ],
)
def test_bad_header_is_400(http: httpx.Client, destination: Destination, headers: dict[str, str], mentions: str) -> None:
    """Protocol: 400 with a clear message for a bad header value."""
    response = http.post(f"/v2/publish/{destination.url('/bad')}", content=b"{}", headers=headers)
    assert response.status_code == 400
    assert mentions in response.json()["error"]


@pytest.mark.parametrize("target", ["ftp://example.com/x", "http://"])
def test_bad_destination_is_400(http: httpx.Client, target: str) -> None:
    """Protocol: 400 for a bad destination."""
    response = http.post(f"/v2/publish/{target}", content=b"{}")
    assert response.status_code == 400
    assert "destination" in response.json()["error"]


def test_publishing_to_an_unknown_url_group_is_404(http: httpx.Client) -> None:
    """Protocol: a destination that is not a URL names a URL group; an unknown one is 404,
    an Upstash API destination (api/llm) is 501; never a delivery elsewhere."""
    response = http.post("/v2/publish/not-a-url", content=b"{}")
    assert response.status_code == 404
    assert "URL group 'not-a-url' not found" in response.json()["error"]
    response = http.post("/v2/publish/api/llm", content=b"{}")
    assert response.status_code == 501
    assert "not supported by the local QStash server" in response.json()["error"]


def test_oversized_message_is_413(qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination) -> None:
    """Protocol limit: max message size (configurable; 1 MB by default) → 413."""
    server = qstash_factory(max_message_bytes=1000)
    sdk = sdk_factory(server)
    sdk.message.publish(url=destination.url("/size"), body=b"x" * 1000)
    with pytest.raises(QStashError, match="413"):
        sdk.message.publish(url=destination.url("/size"), body=b"x" * 1001)
    response = httpx.post(
        f"{server.url}/v2/publish/{destination.url('/size')}",
        content=iter([b"x" * 600, b"x" * 600]),  # chunked: no Content-Length
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert response.status_code == 413 and "1000 bytes" in response.json()["error"]


def test_timeout_is_a_failure(sdk: QStash, destination: Destination) -> None:
    """Protocol: Upstash-Timeout bounds a delivery; a timeout counts as a failed attempt."""
    destination.script("/slow", Reply(200, delay=1.5))
    sdk.message.publish_json(url=destination.url("/slow"), body={}, timeout="1s", retries=0)
    [letter] = wait_until(lambda: sdk.dlq.list().messages, 4, "the timed-out message in the DLQ")
    assert letter.response_status == 0
    assert "timed out" in (letter.response_body or "")


def test_deliveries_run_concurrently(sdk: QStash, destination: Destination) -> None:
    """Delivery concurrency: a long-running handler does not hold up other messages."""
    destination.script("/long", Reply(200, delay=1.5))
    sdk.message.publish_json(url=destination.url("/long"), body={})
    destination.wait_for("/long")
    started = time.time()
    sdk.message.publish_json(url=destination.url("/quick"), body={})
    [quick] = destination.wait_for("/quick", timeout=3)
    assert quick.at - started < 1.0


def test_restart_keeps_delayed_messages_and_delivers_once(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Persistence: a delayed message survives a restart on the same SQLite file and is
    delivered exactly once, also across a further restart."""
    first = qstash_factory()
    result = sdk_factory(first).message.publish_json(url=destination.url("/persist"), body={"keep": True}, delay="1s")
    first.stop()
    second = qstash_factory()
    [received] = destination.wait_for("/persist", timeout=5)
    assert received.headers["upstash-message-id"] == result.message_id
    assert received.signature_error is None
    wait_until(lambda: _message_gone(sdk_factory(second), result.message_id), 3, "delivery recorded")
    second.stop()
    qstash_factory()
    time.sleep(0.4)
    assert len(destination.requests_to("/persist")) == 1


def test_batch_json(sdk: QStash, destination: Destination) -> None:
    """Protocol: POST /v2/batch (Python SDK ``batch_json``): one message per entry with its own
    headers (method, delay, dedup id, forwarded), answered in order; each delivery signed."""
    results = sdk.message.batch_json(
        [
            {"url": destination.url("/b1"), "body": {"n": 1}, "headers": {"X-Step": "compress"}},
            {"url": destination.url("/b2"), "body": {"n": 2}, "method": "PUT", "deduplication_id": "b-2"},
            {"url": destination.url("/b2"), "body": {"n": 3}, "deduplication_id": "b-2"},
        ]
    )
    assert [result.deduplicated for result in results] == [False, False, True]  # type: ignore[union-attr]
    assert results[2].message_id == results[1].message_id  # type: ignore[union-attr]
    [first] = destination.wait_for("/b1")
    [second] = destination.wait_for("/b2")
    assert first.signature_error is None and second.signature_error is None
    assert json.loads(first.body) == {"n": 1} and first.headers["x-step"] == "compress"
    assert second.method == "PUT" and json.loads(second.body) == {"n": 2}
    assert first.headers["upstash-message-id"] == results[0].message_id  # type: ignore[union-attr]


def test_a_batch_with_one_bad_entry_stores_nothing(http: httpx.Client, destination: Destination) -> None:
    """Protocol: a batch is validated whole; a bad entry is 400 naming it and nothing is published."""
    entries = [
        {"destination": destination.url("/fine"), "headers": {}, "body": "{}"},
        {"destination": destination.url("/bad"), "headers": {"Upstash-Delay": "soon"}, "body": "{}"},
    ]
    response = http.post("/v2/batch", json=entries)
    assert response.status_code == 400
    assert "batch entry 1" in response.json()["error"] and "Upstash-Delay" in response.json()["error"]
    time.sleep(0.3)
    assert destination.requests_to("/fine") == []


def test_dlq_bulk_delete_and_retry(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Protocol: DELETE /v2/dlq with {"dlqIds"} (Python SDK ``delete_many``) or ?dlqIds= (TS SDK),
    ?count=N pages through the whole DLQ with a cursor; POST /v2/dlq/retry?dlqIds= republishes."""
    destination.script("/gone", *[Reply(500)] * 4)
    for i in range(4):
        sdk.message.publish_json(url=destination.url("/gone"), body={"i": i}, retries=0)
    letters = wait_until(lambda: len(sdk.dlq.list().messages) == 4 and sdk.dlq.list().messages, 5, "four dead letters")
    ids = [letter.dlq_id for letter in letters]
    assert sdk.dlq.delete_many([ids[0], "dlq_unknown"]) == 1
    assert http.delete("/v2/dlq", params=[("dlqIds", ids[1])]).json() == {"deleted": 1}
    retried = http.post("/v2/dlq/retry", params=[("dlqIds", ids[2]), ("dlqIds", "dlq_unknown")]).json()
    [response] = retried["responses"]
    redelivered = destination.wait_for("/gone", 5)[4]
    assert redelivered.headers["upstash-message-id"] == response["messageId"]
    assert [letter.dlq_id for letter in sdk.dlq.list().messages] == [ids[3]]
    first_page = http.delete("/v2/dlq", params={"count": "1"}).json()
    assert first_page == {"deleted": 1}
    assert sdk.dlq.list().messages == []


def test_redacted_fields_are_hidden_in_answers_but_delivered(
    sdk: QStash, http: httpx.Client, destination: Destination
) -> None:
    """Protocol: Upstash-Redact-Fields (Python SDK ``redact=``): the body and the named headers
    read REDACTED:<sha256> in GET /v2/messages, the DLQ and the events log; the destination
    gets the original values."""
    import hashlib

    destination.script("/private", Reply(500))
    result = sdk.message.publish_json(
        url=destination.url("/private"),
        body={"ssn": "123"},
        headers={"Authorization": "Bearer secret", "X-Public": "yes"},
        redact={"body": True, "header": ["Authorization"]},
        retries=0,
        delay="1s",
    )
    shown = http.get(f"/v2/messages/{result.message_id}").json()
    assert shown["body"] == "REDACTED:" + hashlib.sha256(b'{"ssn": "123"}').hexdigest()
    assert shown["header"]["Authorization"] == ["REDACTED:" + hashlib.sha256(b"Bearer secret").hexdigest()]
    assert shown["header"]["X-Public"] == ["yes"]
    [received] = destination.wait_for("/private", timeout=5)
    assert received.body == b'{"ssn": "123"}' and received.headers["authorization"] == "Bearer secret"
    [letter] = wait_until(lambda: sdk.dlq.list().messages, 3, "the dead letter")
    assert letter.body is not None and letter.body.startswith("REDACTED:")
    events = http.get("/v2/events", params={"messageId": result.message_id}).json()["events"]
    assert all(event["body"].startswith("REDACTED:") for event in events)
    response = http.post(f"/v2/publish/{destination.url('/x')}", content=b"{}", headers={"Upstash-Redact-Fields": "cookies"})
    assert response.status_code == 400 and "Upstash-Redact-Fields" in response.json()["error"]


def _states(sdk: QStash, message_id: str) -> list[str]:
    logs = sdk.log.list(filter={"message_id": message_id}).logs
    return [log.state.value for log in reversed(logs)]


def test_events_log(sdk: QStash, destination: Destination) -> None:
    """Protocol: GET /v2/events (Python SDK ``log.list``): every state change, newest first:
    CREATED, ACTIVE, ERROR + RETRY (nextDeliveryTime), DELIVERED; FAILED for the DLQ;
    CANCELED; filters (messageId, state) and cursor paging."""
    destination.script("/logged", Reply(500, {}, b"busy"))
    delivered = sdk.message.publish_json(url=destination.url("/logged"), body={}, retries=1, retry_delay="50")
    destination.wait_for("/logged", 2)
    wait_until(lambda: _states(sdk, delivered.message_id)[-1:] == ["DELIVERED"], 3, "DELIVERED")
    assert _states(sdk, delivered.message_id) == ["CREATED", "ACTIVE", "ERROR", "RETRY", "ACTIVE", "DELIVERED"]
    logs = sdk.log.list(filter={"message_id": delivered.message_id}).logs
    error = next(log for log in logs if log.state.value == "ERROR")
    retry = next(log for log in logs if log.state.value == "RETRY")
    assert error.error == "HTTP 500" and error.response_status == 500
    assert retry.next_delivery_time is not None and retry.next_delivery_time >= retry.time
    assert logs[0].url == destination.url("/logged")

    destination.script("/fails", Reply(500))
    failed = sdk.message.publish_json(url=destination.url("/fails"), body={}, retries=0)
    wait_until(lambda: _states(sdk, failed.message_id)[-1:] == ["FAILED"], 3, "FAILED")
    cancelled = sdk.message.publish_json(url=destination.url("/never"), body={}, delay="1h")
    sdk.message.cancel(cancelled.message_id)
    assert _states(sdk, cancelled.message_id) == ["CREATED", "CANCELED"]

    from qstash.log import LogState

    failures = sdk.log.list(filter={"state": LogState.FAILED}).logs
    assert [log.message_id for log in failures] == [failed.message_id]
    first = sdk.log.list(count=2)
    assert len(first.logs) == 2 and first.cursor is not None
    second = sdk.log.list(count=2, cursor=first.cursor)
    assert second.logs[0].time <= first.logs[-1].time
    assert [(log.message_id, log.state) for log in first.logs] == [
        (cancelled.message_id, LogState.CANCELED),
        (cancelled.message_id, LogState.CREATED),
    ]
    assert (second.logs[0].message_id, second.logs[0].state) == (failed.message_id, LogState.FAILED)


def test_signing_keys_and_rotation(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Protocol: GET /v2/keys answers the keys deliveries are signed with; POST
    /v2/keys/rotate makes the next key current and a new next key, deliveries are then signed
    with the new current key (a Receiver given the old pair still verifies them via its next
    key), and the rotation survives a restart."""
    from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY
    from qstash import Receiver

    first = qstash_factory()
    sdk = sdk_factory(first)
    keys = sdk.signing_key.get()
    assert (keys.current, keys.next) == (DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
    rotated = sdk.signing_key.rotate()
    assert rotated.current == DEV_NEXT_SIGNING_KEY and rotated.next.startswith("sig_")
    assert rotated.next not in (DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY)
    sdk.message.publish_json(url=destination.url("/rotated"), body={})
    [received] = destination.wait_for("/rotated")
    assert received.signature_error is None  # the destination's Receiver tries the next key
    Receiver(rotated.current, rotated.next).verify(
        signature=received.headers["upstash-signature"], body=received.body.decode(), url=destination.url("/rotated")
    )
    first.stop()
    restarted = sdk_factory(qstash_factory())
    after = restarted.signing_key.get()
    assert (after.current, after.next) == (rotated.current, rotated.next)


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/v2/dlq/multi"), ("DELETE", "/v2/messages/bulk"),
                                              ("GET", "/v2/workflows/runs"), ("POST", "/llm/v1/chat/completions")])
def test_official_routes_without_an_implementation_answer_501(http: httpx.Client, method: str, path: str) -> None:
    """Protocol: routes of QStash's API without an implementation here answer 501, even where
    a broader implemented route (/v2/dlq/{dlqId}) would otherwise catch them."""
    response = http.request(method, path)
    assert response.status_code == 501
    assert "not supported by the local QStash server" in response.json()["error"]


def test_dlq_list_by_ids_filters_and_order(sdk: QStash, http: httpx.Client, destination: Destination) -> None:
    """Protocol: GET /v2/dlq?dlqIds= (TS SDK ``listMessages({dlqIds})``) lists exactly those;
    filters (label, fromDate) apply; order=latestFirst pages newest first; an unknown
    parameter is 400 rather than ignored."""
    destination.script("/listed", *[Reply(500)] * 3)
    for i in range(3):
        sdk.message.publish_json(url=destination.url("/listed"), body={"i": i}, retries=0, label=f"l{i}")
    letters = wait_until(lambda: len(sdk.dlq.list().messages) == 3 and sdk.dlq.list().messages, 5, "three dead letters")
    ids = [letter.dlq_id for letter in letters]
    by_ids = http.get("/v2/dlq", params=[("dlqIds", ids[0]), ("dlqIds", ids[2])]).json()["messages"]
    assert [m["dlqId"] for m in by_ids] == [ids[0], ids[2]]
    assert [m.dlq_id for m in sdk.dlq.list(filter={"label": "l1"}).messages] == [ids[1]]
    newest = http.get("/v2/dlq", params={"order": "latestFirst", "count": "2"}).json()
    assert [m["dlqId"] for m in newest["messages"]] == [ids[2], ids[1]]
    rest = http.get("/v2/dlq", params={"order": "latestFirst", "count": "2", "cursor": newest["cursor"]}).json()
    assert [m["dlqId"] for m in rest["messages"]] == [ids[0]] and "cursor" not in rest
    assert http.get("/v2/dlq", params={"stepName": "x"}).status_code == 400
