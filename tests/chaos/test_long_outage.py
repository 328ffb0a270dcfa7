"""The reduced *long outage* scenario: a private Postgres down 12 s; every request answered 503 + Retry-After.

The 6 s bound on every answer is the full run's promise (``make chaos ONLY=long-outage``);
the reduced form reports the times and checks the behaviour: no hang, no 5xx
but 503 with ``Retry-After``, and recovery without a restart.
"""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_requests_during_a_long_outage_get_503_with_retry_after_and_every_queue_recovers(
    postgres_available: None,
) -> None:
    row = run_scenario("long-outage", reduced=True)
    assert violations(row) == []
    details = row["details"]
    answered = details["answers_during_outage"]
    for kind in ("status", "list", "events"):  # the read model and the event store both refused, none hung
        assert answered.get(f"{kind} 503", 0) >= 1, answered
    assert not [key for key in answered if not key.endswith(" 503")], answered
    assert row["queues"] == row["completed"] + row["cancelled"] >= 4
    assert details["first_status_200_after_start_seconds"] is not None
