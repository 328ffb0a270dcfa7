"""The reduced QStash restart scenario: the local QStash server crashes (SIGKILL,
restarted at once) and stops cleanly (SIGTERM, down for seconds) while step
messages are pending, in flight and delayed."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_qstash_restarts_lose_nothing_and_run_no_step_twice(postgres_available: None) -> None:
    row = run_scenario("qstash-restart", reduced=True)
    assert violations(row) == []
    details = row["details"]
    assert row["queues"] == row["completed"] == 8
    assert [k["signal"] for k in details["kills"]] == ["SIGKILL", "SIGTERM"]
    assert all(delayed > 0 for delayed in details["delayed_messages_at_kills"])  # delayed retries were waiting
    assert details["messages_lost"] == 0 and details["message_states"] == {"delivered": details["messages_published"]}
    assert details["step_work_ran_twice"] == 0
    assert details["step_work_runs"] == details["step_started_events"]
    clean_stop = details["kills"][1]
    assert sum(clean_stop["delivered_again"].values()) == 0  # a SIGTERM lets deliveries in flight finish
