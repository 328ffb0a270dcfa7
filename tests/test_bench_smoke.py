"""The core benchmark still runs (tiny sizes); no timing is asserted, only that it measures."""

from __future__ import annotations

import pytest

from bench.core import measure


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_core_benchmark_measures_every_figure(kind: str) -> None:
    result = measure(kind, queues=2, lag_samples=3)
    assert result["commands"] == 2 * (1 + 5 * 4)
    assert result["events"] >= result["commands"]
    assert result["lag_samples"] == 3
    for key in ("commands_per_second", "projection_events_per_second", "lag_p50_ms", "lag_p99_ms"):
        assert result[key] > 0


def test_pipeline_benchmark_runs_a_whole_stack() -> None:
    from bench.pipeline import measure as measure_pipeline

    result = measure_pipeline("sqlite", latency_queues=2, throughput_queues=4, concurrency=2)
    assert result["latency_p99_ms"] >= result["latency_p50_ms"] > 0
    assert result["queues_per_second"] > 0
