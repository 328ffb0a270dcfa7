"""The local QStash server as its own process (``python -m local.qstash``):
at-least-once delivery across a SIGKILL."""

from __future__ import annotations

import time
from collections.abc import Callable

from qstash import QStash
from qstash.errors import QStashError
from tests.local.qstash_support import Destination, ProcessServer, Reply, ThreadedServer, wait_until


def test_delivery_in_flight_when_killed_is_redelivered_after_restart(
    process_factory: Callable[..., ProcessServer],
    sdk_factory: Callable[[ThreadedServer | str], QStash],
    destination: Destination,
) -> None:
    """Persistence, at-least-once: a delivery in flight when the server process is
    SIGKILLed is delivered again (same message id, freshly signed) by the next
    process on the same database, and then never again."""
    destination.script("/in-flight", Reply(200, delay=1.0))
    first = process_factory()
    result = sdk_factory(first.url).message.publish_json(url=destination.url("/in-flight"), body={"step": "transcribe"})
    destination.wait_for("/in-flight", timeout=5)
    first.kill()

    second = process_factory()
    attempts = destination.wait_for("/in-flight", 2, timeout=10)
    assert [a.headers["upstash-message-id"] for a in attempts] == [result.message_id] * 2
    assert all(a.signature_error is None for a in attempts)
    assert attempts[1].body == attempts[0].body == b'{"step": "transcribe"}'

    sdk = sdk_factory(second.url)

    def delivered() -> bool:
        try:
            sdk.message.get(result.message_id)
        except QStashError as error:
            return "404" in str(error)
        return False

    wait_until(delivered, 5, "the redelivery to be recorded")
    time.sleep(0.3)
    assert len(destination.requests_to("/in-flight")) == 2


def test_a_clean_stop_lets_deliveries_in_flight_finish_so_none_is_delivered_again(
    process_factory: Callable[..., ProcessServer],
    sdk_factory: Callable[[ThreadedServer | str], QStash],
    destination: Destination,
) -> None:
    """A SIGTERM (clean stop) waits for the deliveries in flight (within the grace period)
    and records their outcome, so the next process on the same database does not deliver
    them again; a destination whose work was done is not called twice."""
    destination.script("/in-flight", Reply(200, delay=1.0))
    first = process_factory()
    sdk_factory(first.url).message.publish_json(url=destination.url("/in-flight"), body={"step": "embed"})
    destination.wait_for("/in-flight", timeout=5)
    first.terminate()

    process_factory()
    time.sleep(1.5)  # a redelivery would be claimed at once by the new process
    assert len(destination.requests_to("/in-flight")) == 1
