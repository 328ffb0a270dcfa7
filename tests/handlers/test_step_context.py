"""StepContext's progress throttle: at most one report per interval, the newest held-back value sent late,
nothing after the step ended."""

from __future__ import annotations

import threading

from handlers.steps import StepContext


class Recorder:
    def __init__(self) -> None:
        self.values: list[int] = []
        self.sent = threading.Event()

    def __call__(self, percent: int, detail: str | None) -> None:
        self.values.append(percent)
        self.sent.set()


def test_values_inside_the_interval_are_held_and_only_the_newest_is_sent_when_it_is_up() -> None:
    seen = Recorder()
    context = StepContext(seen, min_interval=0.3)
    context.report(10)
    context.report(20)
    context.report(35)  # 20 and 35 arrive inside the interval: held, and 35 replaces 20
    assert seen.values == [10]
    seen.sent.clear()
    assert seen.sent.wait(5), "the held-back value was never sent"
    assert seen.values == [10, 35]
    context.close()


def test_lower_or_equal_values_are_never_sent() -> None:
    seen = Recorder()
    context = StepContext(seen, min_interval=0)
    for value in (5, 5, 3, 7, 7.9, 6, 100, 150):
        context.report(value)
    assert seen.values == [5, 7, 100]
    context.close()


def test_a_value_held_when_the_step_ends_is_dropped() -> None:
    seen = Recorder()
    context = StepContext(seen, min_interval=0.2)
    context.report(10)
    context.report(60)  # held
    context.close()  # the step completed: a progress event after its result would be out of place
    seen.sent.clear()
    assert not seen.sent.wait(0.6)
    assert seen.values == [10]
    context.report(90)
    assert seen.values == [10]
