"""The reduced *follower failover* scenario: two projection runners and two dispatchers on Postgres;
the active one of each SIGKILLed once, then its lock connection cut once (the process lives), while queues run."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_a_standby_takes_over_and_nothing_is_applied_or_published_twice(postgres_available: None) -> None:
    row = run_scenario("follower-failover", reduced=True)
    assert violations(row) == []
    details = row["details"]
    assert row["queues"] == row["completed"] == 5
    assert details["kills"] == {"dispatch": {"sigkill": 1, "cut": 1}, "project": {"sigkill": 1, "cut": 1}}
    assert all(entry["takeover_seconds"] <= 5.0 for entry in details["kill_log"])
    assert details["published_under_two_ids"] == 0 and details["batches_lost_to_another_runner"] == 0
    assert details["qstash_messages"] == details["messages_published"] == details["step_started_events"] == 5 * 4
    assert details["message_states"] == {"delivered": 5 * 4}
    assert details["events_not_applied"] == {}
    assert details["other_projections_mismatches"] == {"notifications": 0, "moments": 0}
