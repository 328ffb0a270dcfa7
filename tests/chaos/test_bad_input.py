"""The reduced form of ``make chaos``: every scenario on Postgres, smaller.

Real processes (local QStash server, API, model servers where the steps are
real) on loopback; each scenario ends with the shared invariant checks.
"""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_bad_input_at_scale_gets_4xx_and_harms_no_queue(postgres_available: None) -> None:
    row = run_scenario("bad-input", reduced=True)
    assert violations(row) == []
    assert row["queues"] == row["completed"] == 3
    assert set(row["details"]["answers"]) >= {"400", "401", "404", "413", "415", "422", "431"}
