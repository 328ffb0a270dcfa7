"""The retry policy is a pure function: exponential from the base, at least the server's hint, capped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from handlers.retry import RetryPolicy


def test_delays_double_from_the_base() -> None:
    policy = RetryPolicy(base_seconds=60, max_seconds=3600)
    assert [policy.delay(attempt) for attempt in (1, 2, 3, 4)] == [60, 120, 240, 480]


def test_the_server_hint_is_a_minimum() -> None:
    policy = RetryPolicy(base_seconds=60, max_seconds=3600)
    assert policy.delay(1, hint=20.0) == 60  # Hugging Face: "estimated_time": 20
    assert policy.delay(1, hint=300.0) == 300
    assert policy.delay(3, hint=300.0) == 300


def test_the_cap_bounds_backoff_and_hints() -> None:
    policy = RetryPolicy(base_seconds=60, max_seconds=600)
    assert policy.delay(10) == 600
    assert policy.delay(1, hint=7 * 86400) == 600


@given(
    base=st.floats(0.1, 1000), cap=st.floats(1, 100000), attempt=st.integers(1, 30),
    hint=st.none() | st.floats(0, 1e6),
)
def test_delay_is_within_bounds_and_grows_with_the_attempt(
    base: float, cap: float, attempt: int, hint: float | None
) -> None:
    policy = RetryPolicy(base_seconds=base, max_seconds=cap)
    delay = policy.delay(attempt, hint)
    assert 0 < delay <= cap
    assert delay >= min(cap, hint or 0, cap)
    assert policy.delay(attempt + 1, hint) >= delay
