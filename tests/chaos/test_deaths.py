"""The reduced *process deaths* scenario: the API SIGKILLed by every failpoint once and by a killer thread.

The run is shared with tests/chaos/test_storage_sweep.py (``deaths_then_sweep``, tests/chaos/conftest.py): the
sweep reads storage only after this row was taken."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos.__main__ import violations
from handlers.failpoints import NAMES


@pytest.mark.postgres
def test_process_deaths_lose_nothing_and_run_nothing_twice(
    deaths_then_sweep: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    row, _ = deaths_then_sweep
    assert violations(row) == []
    assert row["queues"] == row["completed"] == 5
    assert row["artifacts_checked"] == 5 * 6
    deaths = row["details"]["deaths_by_cause"]
    assert {name: deaths.get(name) for name in NAMES} == dict.fromkeys(NAMES, 1)  # every failpoint killed it once
    assert deaths["killer"] >= 2
    assert row["details"]["restarts"] == row["details"]["deaths"] >= len(NAMES) + 2
    assert row["details"]["upload_retries"] > 0  # the uploads that died were retried with their key
