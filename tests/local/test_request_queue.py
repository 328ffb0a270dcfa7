"""The model servers' request queue and model thread, without a model."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from local.models.errors import ModelBusy
from local.models.request_queue import RequestQueue, Ticket
from local.models.slot import ModelThread


def test_one_runs_and_max_waiting_wait_then_the_next_is_busy() -> None:
    queue = RequestQueue("tiny.en", max_waiting=2, first_estimate=7.2)
    tickets = [queue.enter() for _ in range(3)]
    tickets[0].start()
    assert queue.status().running == 1 and queue.status().waiting == 2
    with pytest.raises(ModelBusy) as caught:
        queue.enter()
    assert caught.value.status_code == 503
    assert caught.value.headers() == {"Retry-After": "8"}
    assert "2 wait" in caught.value.message and "WHISPER_MAX_QUEUED" in caught.value.message
    tickets[0].release()
    tickets[0].release()  # twice: still one place given back
    assert queue.status().waiting == 2 and queue.status().running == 0
    queue.enter()
    with pytest.raises(ModelBusy):
        queue.enter()


def test_retry_after_follows_how_long_requests_take() -> None:
    queue = RequestQueue("m", max_waiting=0, first_estimate=100.0)
    ticket = queue.enter()
    ticket.start()
    ticket.release()  # took ~0 s: the estimate falls
    queue.enter()
    with pytest.raises(ModelBusy) as caught:
        queue.enter()
    assert int(caught.value.headers()["Retry-After"]) < 100


@given(st.lists(st.tuples(st.sampled_from(["enter", "start", "release"]), st.integers(0, 9)), max_size=60),
       st.integers(0, 3))
def test_the_queue_never_admits_more_than_its_places(steps: list[tuple[str, int]], max_waiting: int) -> None:
    queue = RequestQueue("m", max_waiting)
    held: list[Ticket] = []
    released: set[int] = set()
    for action, pick in steps:
        if action == "enter":
            try:
                held.append(queue.enter())
            except ModelBusy:
                assert len(held) - len(released) == 1 + max_waiting
        elif held:
            index = pick % len(held)
            if action == "start":
                held[index].start()
            else:
                held[index].release()
                released.add(index)
        status = queue.status()
        assert 0 <= status.running <= status.running + status.waiting == len(held) - len(released)
        assert status.running + status.waiting <= 1 + max_waiting


def test_model_thread_runs_calls_in_order_on_one_thread() -> None:
    worker = ModelThread("model-test")
    seen: list[tuple[int, str]] = []

    def call(number: int) -> int:
        time.sleep(0.01 * (5 - number))  # earlier calls take longer: order must still hold
        seen.append((number, threading.current_thread().name))
        return number * 10

    futures = [worker.submit(lambda n=n: call(n)) for n in range(5)]
    assert [future.result(5) for future in futures] == [0, 10, 20, 30, 40]
    assert seen == [(n, "model-test") for n in range(5)]
    failing = worker.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(5)
    assert worker.submit(lambda: "still serving").result(5) == "still serving"
    worker.close()
    assert worker.join(5)
