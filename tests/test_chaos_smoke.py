"""The reduced form of ``make chaos`` (fewer requests): bad input at scale on Postgres.

Real processes (local QStash server, API) on loopback; every hostile request must
get a 4xx with a message, never a 5xx, and the tutors' queues must complete with
every invariant holding.
"""

from __future__ import annotations

import pytest

from bench.chaos import run


@pytest.mark.postgres
def test_bad_input_at_scale_gets_4xx_and_harms_no_queue(postgres_available: None) -> None:
    (row,) = run(requests=42, tutors=3)
    assert row["server_errors"] == 0, row["answers"]
    assert row["not_4xx_with_message"] == 0, row["examples"]
    assert row["queues"] == row["completed"] == 3
    assert row["duplicates"] == row["projection_mismatches"] == row["unfinished_or_unexplained"] == 0
    assert row["orphan_ffmpeg"] == 0
    assert set(row["answers"]) >= {"400", "401", "404", "413", "415", "422", "431"}
