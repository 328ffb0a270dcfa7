"""The periodic worker that runs the followers, the elector and the storage sweeper."""

from __future__ import annotations

import logging
import threading

import pytest

from projections.worker import PeriodicWorker
from tests.support import wait_until

logger = logging.getLogger(__name__)
LONG = 3600.0
"""An interval no test waits out: a round that comes anyway did not wait for it."""


@pytest.mark.parametrize(("max_backoff", "pauses"), [
    pytest.param(None, ["0.01", "0.01"], id="no-back-off-by-default"),
    pytest.param(0.03, ["0.01", "0.02", "0.03", "0.03"], id="doubling-up-to-the-ceiling"),
])
def test_a_failing_round_is_counted_logged_and_tried_again(
    max_backoff: float | None, pauses: list[str], caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(len(calls))
        if len(calls) <= len(pauses):
            raise RuntimeError("database went away")

    worker = PeriodicWorker("flaky", work, interval=0.01, max_backoff=max_backoff, log=logger,
                            failure="%s: failed; again in %.2f s")
    with caplog.at_level(logging.ERROR, logger.name):
        worker.start()
        try:
            wait_until(lambda: len(calls) > len(pauses) + 1, what="rounds after the failures")
        finally:
            worker.stop()
    assert worker.errors == len(pauses)
    failures = [r for r in caplog.records if r.name == logger.name]
    assert [r.getMessage() for r in failures] == [f"flaky: failed; again in {pause} s" for pause in pauses]
    assert all(r.exc_info is not None for r in failures)


def test_a_round_with_more_waiting_is_followed_at_once() -> None:
    calls: list[int] = []

    def work() -> bool:
        calls.append(1)
        return len(calls) < 3

    worker = PeriodicWorker("busy", work, interval=LONG, log=logger)
    worker.start()
    try:
        wait_until(lambda: len(calls) == 3, what="three rounds without the interval between them")
    finally:
        worker.stop()
    assert len(calls) == 3  # the third said nothing more was waiting: the worker pauses


def test_wait_first_runs_no_round_before_the_first_interval() -> None:
    calls: list[int] = []
    worker = PeriodicWorker("later", lambda: calls.append(1), interval=LONG, wait_first=True, log=logger)
    worker.start()
    assert worker.running
    worker.stop()
    assert not worker.running
    assert calls == []


def test_a_thread_ending_its_last_round_stops_though_the_worker_started_again() -> None:
    entered, release = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def work() -> None:
        threads.append(threading.current_thread())
        if len(threads) == 1:
            entered.set()
            release.wait(10)

    worker = PeriodicWorker("restarted", work, interval=LONG, log=logger)
    worker.start()
    assert entered.wait(10)
    old = worker.halt()
    assert old is not None
    worker.start()  # while the old thread is still in its round
    wait_until(lambda: len(threads) == 2, what="the new thread's first round")
    release.set()
    old.join(10)
    try:
        assert not old.is_alive()
    finally:
        worker.stop()
    assert threads[0] is not threads[1]
