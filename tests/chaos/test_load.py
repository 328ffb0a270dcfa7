"""The reduced load scenario: 5 tutors upload 10 real videos at once while 20
clients poll their status and 5 hold SSE streams (real ffmpeg, Whisper and
embeddings, Postgres)."""

from __future__ import annotations

import pytest

from bench.chaos.__main__ import run_scenario, violations


@pytest.mark.postgres
def test_load_every_queue_completes_with_bounded_memory(postgres_available: None) -> None:
    row = run_scenario("load", reduced=True)
    details = row["details"]
    assert violations(row) == []
    assert row["queues"] == row["completed"] == details["videos"] == 10
    assert details["streams_saw_terminal"] == details["sse_streams"] == 5
    assert details["status_requests"] >= details["pollers"]
    assert 0 < details["status_p50_ms"] <= details["status_p99_ms"] <= details["status_max_ms"]
    assert set(details["peak_rss_mib"]) == {"qstash", "whisper", "embeddings", "e5", "api"}
    assert all(mib > 0 for mib in details["peak_rss_mib"].values())
    assert details["total_peak_rss_mib"] > details["peak_rss_mib"]["api"]
