"""FIFO queues and flow control of the local QStash server, through the official Python SDK.

Covers ``/v2/enqueue/{queue}/{destination}``, ``/v2/queues`` (upsert, get, list,
pause, resume, delete), batch entries with a queue, and
``Upstash-Flow-Control-Key``/``-Value`` (parallelism, rate, period) with
``GET /v2/flowControl/{key}``; deliveries verified by ``qstash.Receiver``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest
from qstash import QStash
from qstash.errors import QStashError

from tests.local.qstash_support import Destination, Received, Reply, ThreadedServer, wait_until

SDK = Callable[[ThreadedServer | str], QStash]


def _in_order(destination: Destination, path: str, count: int) -> list[int]:
    return [json.loads(r.body)["n"] for r in destination.wait_for(path, count, timeout=10)]


def test_enqueue_delivers_in_fifo_order_one_at_a_time(sdk: QStash, destination: Destination) -> None:
    """Protocol: a queue (created by enqueue, parallelism 1) delivers in enqueue order and
    starts the next message only after the previous one finished, including its retries."""
    destination.script("/fifo", Reply(500), Reply(200, delay=0.2))
    for n in range(4):
        sdk.message.enqueue_json(queue="lectures", url=destination.url("/fifo"), body={"n": n}, retries=2,
                                 retry_delay="50")
    received = destination.wait_for("/fifo", 5, timeout=10)
    assert [json.loads(r.body)["n"] for r in received] == [0, 0, 1, 2, 3]
    assert all(r.signature_error is None for r in received)
    assert received[2].at - received[1].at >= 0.19  # n=1 waited for n=0's slow retry
    queue = sdk.queue.get("lectures")
    assert queue.parallelism == 1 and queue.paused is False
    wait_until(lambda: sdk.queue.get("lectures").lag == 0, 3, "the queue to drain")


def test_queue_parallelism_bounds_concurrent_deliveries(sdk: QStash, destination: Destination) -> None:
    """Protocol: a queue with parallelism 2 keeps at most 2 deliveries in flight."""
    sdk.queue.upsert("wide", parallelism=2)
    destination.script("/wide", *[Reply(200, delay=0.3)] * 6)
    for n in range(6):
        sdk.message.enqueue_json(queue="wide", url=destination.url("/wide"), body={"n": n})
    received = destination.wait_for("/wide", 6, timeout=10)
    starts = sorted(r.at for r in received)
    # with 2 at a time and 0.3 s each, the 3rd starts only after the 1st ended
    assert starts[2] - starts[0] >= 0.25
    assert starts[1] - starts[0] < 0.25
    assert sdk.queue.get("wide").parallelism == 2


def test_paused_queue_holds_messages_until_resumed(sdk: QStash, destination: Destination) -> None:
    """Protocol: POST /v2/queues/{name}/pause stops deliveries; resume releases them in order."""
    sdk.queue.upsert("held", parallelism=1, paused=True)
    for n in range(2):
        sdk.message.enqueue_json(queue="held", url=destination.url("/held"), body={"n": n})
    time.sleep(0.4)
    assert destination.requests_to("/held") == []
    assert sdk.queue.get("held").paused is True and sdk.queue.get("held").lag == 2
    sdk.queue.resume("held")
    assert _in_order(destination, "/held", 2) == [0, 1]
    assert [q.name for q in sdk.queue.list()] == ["held"]


def test_queue_delete(sdk: QStash, destination: Destination) -> None:
    """Protocol: DELETE /v2/queues/{name} removes an empty queue (404 after); one that still
    holds messages answers 501 (QStash's treatment of them is undocumented)."""
    sdk.queue.upsert("busy", paused=True)
    message = sdk.message.enqueue_json(queue="busy", url=destination.url("/busy"), body={})
    with pytest.raises(QStashError, match="501"):
        sdk.queue.delete("busy")
    assert sdk.message.get(message.message_id).message_id == message.message_id
    sdk.message.cancel(message.message_id)
    sdk.queue.delete("busy")
    with pytest.raises(QStashError, match="404"):
        sdk.queue.get("busy")


def test_batch_entries_with_a_queue(sdk: QStash, destination: Destination) -> None:
    """Protocol: a batch entry with "queue" is enqueued there (FIFO with the others)."""
    sdk.message.batch_json(
        [{"queue": "batched", "url": destination.url("/batched"), "body": {"n": n}} for n in range(3)]
    )
    assert _in_order(destination, "/batched", 3) == [0, 1, 2]


def test_queue_survives_a_restart(
    qstash_factory: Callable[..., ThreadedServer], sdk_factory: SDK, destination: Destination
) -> None:
    """Persistence: a paused queue and its messages survive a restart; resumed, they are
    delivered in order."""
    first = qstash_factory()
    sdk = sdk_factory(first)
    sdk.queue.upsert("durable", parallelism=1, paused=True)
    for n in range(2):
        sdk.message.enqueue_json(queue="durable", url=destination.url("/durable"), body={"n": n})
    first.stop()
    second = sdk_factory(qstash_factory())
    queue = second.queue.get("durable")
    assert queue.paused is True and queue.lag == 2
    second.queue.resume("durable")
    assert _in_order(destination, "/durable", 2) == [0, 1]


def test_flow_control_parallelism_bounds_deliveries_per_key(
    sdk: QStash, destination: Destination, http: httpx.Client
) -> None:
    """Protocol: Upstash-Flow-Control-Key with parallelism=2: at most two deliveries of the key
    in flight across destinations; the rest wait (waitlist) and all are delivered; another
    key is not held up."""
    for path in ("/transcribe/0", "/transcribe/1", "/transcribe/2"):
        destination.script(path, *[Reply(200, delay=0.3)] * 2)
    for n in range(6):
        sdk.message.publish_json(
            url=destination.url(f"/transcribe/{n % 3}"),
            body={"n": n},
            flow_control={"key": "whisper", "parallelism": 2},
        )
    info = http.get("/v2/flowControl/whisper").json()
    assert info["parallelismMax"] == 2 and info["flowControlKey"] == "whisper"
    sdk.message.publish_json(url=destination.url("/other"), body={}, flow_control={"key": "embed", "parallelism": 1})
    destination.wait_for("/other", timeout=0.25)  # another key is not held up behind "whisper"

    def transcriptions() -> list[Received]:
        return [r for r in destination.received if r.path.startswith("/transcribe/")]

    wait_until(lambda: len(transcriptions()) == 6, 10, "six transcription deliveries")
    received = sorted(transcriptions(), key=lambda r: r.at)
    in_flight = [sum(1 for other in received if other.at <= r.at < other.at + 0.3) for r in received]
    assert max(in_flight) == 2
    assert all(r.signature_error is None for r in received)
    info = sdk.flow_control.get("whisper")
    assert info.parallelism_max == 2 and info.wait_list_size == 0


def test_flow_control_rate_per_period(sdk: QStash, destination: Destination) -> None:
    """Protocol: rate=2, period=1s: at most two deliveries of the key start per second."""
    started = time.time()
    for n in range(5):
        sdk.message.publish_json(
            url=destination.url("/rated"), body={"n": n}, flow_control={"key": "rated", "rate": 2, "period": "1s"}
        )
    received = destination.wait_for("/rated", 5, timeout=10)
    offsets = sorted(r.at - started for r in received)
    assert offsets[1] < 0.9  # two at once
    assert offsets[2] >= 0.9  # the third in the next period
    assert offsets[4] >= 1.9


@pytest.mark.parametrize(
    ("headers", "mentions"),
    [
        ({"Upstash-Flow-Control-Key": "k"}, "Upstash-Flow-Control-Value"),
        ({"Upstash-Flow-Control-Value": "parallelism=1"}, "Upstash-Flow-Control-Key"),
        ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "parallelism=0"}, "parallelism"),
        ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "burst=3"}, "Upstash-Flow-Control-Value"),
        ({"Upstash-Flow-Control-Key": "k", "Upstash-Flow-Control-Value": "rate=1, period=soon"}, "period"),
    ],
)
def test_bad_flow_control_is_400(http: httpx.Client, destination: Destination, headers: dict[str, str], mentions: str) -> None:
    """Protocol: malformed flow-control headers are 400 naming the problem."""
    response = http.post(f"/v2/publish/{destination.url('/fc')}", content=b"{}", headers=headers)
    assert response.status_code == 400
    assert mentions in response.json()["error"]


def test_flow_control_management(sdk: QStash, destination: Destination, http: httpx.Client) -> None:
    """Protocol: flowControl pause holds the key's messages (waitlist) until resume; pin makes
    its values win over later publishes until unpin; resetRate starts a new period; list and
    globalParallelism report use."""
    sdk.message.publish_json(url=destination.url("/managed"), body={"n": 0}, flow_control={"key": "m", "parallelism": 1})
    destination.wait_for("/managed")
    sdk.flow_control.pause("m")
    sdk.message.publish_json(url=destination.url("/managed"), body={"n": 1}, flow_control={"key": "m", "parallelism": 1})
    time.sleep(0.3)
    assert len(destination.requests_to("/managed")) == 1
    info = sdk.flow_control.get("m")
    assert info.is_paused is True and info.wait_list_size == 1
    sdk.flow_control.resume("m")
    destination.wait_for("/managed", 2)

    sdk.flow_control.pin("m", {"parallelism": 3, "rate": 5, "period": 10})
    sdk.message.publish_json(url=destination.url("/managed"), body={}, flow_control={"key": "m", "parallelism": 1})
    pinned = sdk.flow_control.get("m")
    assert (pinned.parallelism_max, pinned.rate_max, pinned.rate_period) == (3, 5, 10)
    assert pinned.is_pinned_parallelism and pinned.is_pinned_rate
    destination.wait_for("/managed", 3)
    assert sdk.flow_control.get("m").rate_count >= 1
    sdk.flow_control.reset_rate("m")
    assert sdk.flow_control.get("m").rate_count == 0
    sdk.flow_control.unpin("m", {"parallelism": True, "rate": True})
    unpinned = sdk.flow_control.get("m")
    assert unpinned.parallelism_max == 1 and not unpinned.is_pinned_parallelism and not unpinned.is_pinned_rate
    assert [item["flowControlKey"] for item in http.get("/v2/flowControl").json()] == ["m"]
    assert sdk.flow_control.get_global_parallelism().parallelism_max == 16
    with pytest.raises(QStashError, match="404"):
        sdk.flow_control.pause("unknown")


def test_a_retried_dead_letter_joins_the_end_of_its_queue(sdk: QStash, destination: Destination, http: httpx.Client) -> None:
    """Protocol: a queued message retried from the DLQ is enqueued again behind the messages
    already waiting in its queue (FIFO), not ahead of them."""
    sdk.queue.upsert("redo", paused=True)
    destination.script("/redo", Reply(500))
    first = sdk.message.enqueue_json(queue="redo", url=destination.url("/redo"), body={"n": 0}, retries=0)
    sdk.queue.resume("redo")
    [letter] = wait_until(lambda: sdk.dlq.list().messages, 5, "the dead letter")
    assert letter.message_id == first.message_id
    sdk.queue.pause("redo")
    sdk.message.enqueue_json(queue="redo", url=destination.url("/redo"), body={"n": 1})
    assert http.post(f"/v2/dlq/retry/{letter.dlq_id}").status_code == 201
    sdk.queue.resume("redo")
    assert _in_order(destination, "/redo", 3) == [0, 1, 0]
