"""The reduced *storage sweep* scenario: after the reduced deaths run (5 lectures; the API killed by every
failpoint once, mid-upload and after storing an upload among them, and by the killer), the sweeper removes exactly
the files those dead requests left, nothing referenced. The deaths run is the one tests/chaos/test_deaths.py
checks (``deaths_then_sweep``, tests/chaos/conftest.py)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos.__main__ import violations


@pytest.mark.postgres
def test_the_sweeper_removes_what_dead_uploads_left_and_nothing_referenced(
    deaths_then_sweep: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    _, row = deaths_then_sweep
    assert violations(row) == []  # among them: the sweeper's orphans are, file for file, what dead requests left
    details = row["details"]
    # the API died once mid-upload (a partial file) and once after storing an upload (no queue uses it)
    assert details["deaths_by_cause"]["upload.mid_upload"] == 1
    assert details["deaths_by_cause"]["upload.after_store"] == 1
    left = details["left_by_dead_requests"]
    assert left["partial_files"] >= 1 and left["unreferenced_uploads"] >= 1
    assert details["removed"]["files"] == left["partial_files"] + left["unreferenced_uploads"]
    assert details["removed"]["bytes"] == details["left_by_dead_requests_bytes"] > 0
    assert details["files_after"] == details["files_before"] - details["removed"]["files"]
    assert details["orphaned_after"] == 0
    assert details["referenced_removed_or_changed"] == 0
    assert details["referenced_files"] >= row["queues"] * 7  # each queue's upload and its six artifacts
    assert details["queue_sources_checked"] == row["queues"]
    assert row["completed"] == row["queues"] == 5
    assert row["artifacts_checked"] == 5 * 6 and row["lost_artifacts"] == 0
