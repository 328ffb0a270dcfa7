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


def test_a_failing_round_is_counted_logged_and_tried_again(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(len(calls))
        if len(calls) <= 2:
            raise RuntimeError("database went away")

    worker = PeriodicWorker("flaky", work, interval=0.01, log=logger, failure="%s: failed; again in %.2f s")
    with caplog.at_level(logging.ERROR, logger.name):
        worker.start()
        try:
            wait_until(lambda: len(calls) >= 4, what="rounds after the failures")
        finally:
            worker.stop()
    assert worker.errors == 2
    failures = [r for r in caplog.records if "failed; again in" in r.getMessage()]
    assert [r.getMessage() for r in failures] == ["flaky: failed; again in 0.01 s"] * 2  # no back-off by default
    assert all(r.exc_info is not None for r in failures)


def test_the_pause_after_failures_stops_doubling_at_the_ceiling(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    def work() -> None:
        calls.append(1)
        if len(calls) <= 4:
            raise RuntimeError("still down")

    worker = PeriodicWorker("down", work, interval=0.01, max_backoff=0.03, log=logger, failure="%s %.2f")
    with caplog.at_level(logging.ERROR, logger.name):
        worker.start()
        try:
            wait_until(lambda: len(calls) >= 5, what="the round after the failures")
        finally:
            worker.stop()
    assert [r.getMessage() for r in caplog.records if r.name == logger.name] == [
        "down 0.01", "down 0.02", "down 0.03", "down 0.03"]


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
