"""The reduced *process deaths* scenario: the API SIGKILLed by every failpoint once and by a killer thread."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations
from handlers.failpoints import NAMES


@pytest.mark.postgres
def test_process_deaths_lose_nothing_and_run_nothing_twice(postgres_available: None) -> None:
    row = run_scenario("deaths", reduced=True)
    assert violations(row) == []
    assert row["queues"] == row["completed"] == 5
    assert row["artifacts_checked"] == 5 * 6
    deaths = row["details"]["deaths_by_cause"]
    assert {name: deaths.get(name) for name in NAMES} == dict.fromkeys(NAMES, 1)  # every failpoint killed it once
    assert deaths["killer"] >= 2
    assert row["details"]["restarts"] == row["details"]["deaths"] >= len(NAMES) + 2
    assert row["details"]["upload_retries"] > 0  # the uploads that died were retried with their key
