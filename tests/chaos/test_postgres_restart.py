"""The reduced Postgres-restart scenario: a private cluster crashes and stays down while queues run."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_postgres_outage_answers_503_and_every_queue_recovers(postgres_available: None) -> None:
    row = run_scenario("postgres-restart", reduced=True)
    assert violations(row) == []
    assert row["queues"] == row["completed"] >= 6
    details = row["details"]
    # the outage was seen: public requests got 503 + Retry-After, /readyz said not ready
    assert details["unavailable_with_retry_after"] >= 1
    assert details["readyz_503_during_outages"] >= 1
    assert not any(status.startswith("5") and status != "503"
                   for answers in details["answers"].values() for status in answers)
    (round_,) = details["rounds"]
    assert round_["first_status_200_seconds"] is not None and round_["all_terminal_seconds"] is not None
