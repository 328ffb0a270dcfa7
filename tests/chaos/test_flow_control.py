"""The reduced flow-control scenario: 10 lectures uploaded at once to two API
replicas behind a load balancer; QStash flow control holds concurrent
transcriptions at their parallelism (simulated steps, Postgres)."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations
from bench.chaos.flow_control import PARALLELISM, max_concurrent


def test_max_concurrent_counts_overlaps_not_touching_intervals() -> None:
    assert max_concurrent([]) == 0
    assert max_concurrent([(0, 1), (1, 2), (2, 3)]) == 1  # each starts as the one before ends
    assert max_concurrent([(0, 3), (1, 2), (1.5, 4), (3.5, 5)]) == 3


@pytest.mark.postgres
def test_flow_control_holds_transcriptions_at_their_parallelism_across_two_replicas(postgres_available: None) -> None:
    row = run_scenario("flow-control", reduced=True)
    assert violations(row) == []
    details = row["details"]
    assert row["queues"] == row["completed"] == details["lectures"] == 10
    assert details["max_concurrent"]["transcribe"] == PARALLELISM == details["parallelism"]["transcribe"]
    assert all(details["max_concurrent"][s] <= details["parallelism"][s] for s in details["parallelism"])
    assert details["transcribe_waitlist_peak"] > 0
    assert details["attempts_measured"]["transcribe"] == details["transcribe_messages"] == 10
    assert details["qstash_retries_of_transcribe_messages"] == details["step_retries"] == 0
    assert all(sum(counts.values()) > 0 for counts in details["step_deliveries_by_replica"].values())
