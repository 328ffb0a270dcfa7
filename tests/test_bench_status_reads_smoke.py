"""The status-reads benchmark still runs (tiny sizes: 1 s per endpoint, 4 connections); its result's
shape is checked, never its speed. Needs Debian's wrk (.ci/run installs it)."""

from __future__ import annotations

import pytest

from bench.status_reads import TARGET_REFERENCE, TARGETS, measure


@pytest.mark.postgres
def test_status_reads_benchmark_measures_vidpipe_beside_the_minimal_endpoints(postgres_available: None) -> None:
    result = measure(seconds=1, connections=4, threads=1, rounds=1, queues=2, warmup_seconds=0)
    assert result["same_row"]["status"] == "completed"  # every endpoint answered the same row
    assert set(result["same_row"]["response_bytes"]) == set(TARGETS)
    for target in TARGETS:
        (run,) = result["runs"][target]
        assert run["requests"] > 0
        assert run["errors"] == {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
        assert run["p99_ms"] >= run["p50_ms"] > 0
        assert run["server_cpu_ms_per_request"] > 0
        assert result["median"][target]["requests_per_second"] == run["requests_per_second"]
    assert set(result["vidpipe_over"]) == set(TARGETS) - {"vidpipe"}
    assert result["vidpipe_over"][TARGET_REFERENCE]["throughput"] > 0
    assert isinstance(result["target_met"], bool)
    assert set(result["idle_cpu_percent"]) == set(TARGETS)


def test_the_minimal_endpoints_run_with_vidpipes_server_settings() -> None:
    from api.__main__ import KEEP_ALIVE_SECONDS
    from api.limits import HTTP_PARSER_HEADER_BYTES
    from bench import minimal_status

    assert minimal_status.KEEP_ALIVE_SECONDS == KEEP_ALIVE_SECONDS
    assert minimal_status.H11_MAX_INCOMPLETE_EVENT_SIZE == HTTP_PARSER_HEADER_BYTES
