"""The reduced *storage sweep* scenario: after the reduced process-deaths run, 0 orphaned files, no referenced one removed."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_the_sweeper_removes_what_dead_uploads_left_and_nothing_referenced(postgres_available: None) -> None:
    row = run_scenario("storage-sweep", reduced=True)
    assert violations(row) == []
    details = row["details"]
    left = details["left_by_dead_requests"]
    # the reduced deaths run kills one upload mid-stream and one after storing: both leave a file
    assert left["partial_files"] >= 1 and left["unreferenced_uploads"] >= 1
    assert details["removed"]["files"] == left["partial_files"] + left["unreferenced_uploads"]
    assert details["orphaned_after"] == 0
    assert details["referenced_removed_or_changed"] == 0
    assert details["referenced_files"] >= row["queues"] * 7  # each queue's upload and its six artifacts
    assert row["lost_artifacts"] == 0 and row["completed"] == row["queues"] == 5
