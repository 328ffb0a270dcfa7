"""The API read-path benchmark still runs (tiny sizes); no timing is asserted, only that it measures."""

from __future__ import annotations

from bench.api import measure


def test_api_benchmark_measures_polling_and_fan_out() -> None:
    result = measure("sqlite", pollers=4, seconds=1.0, subscribers=4, step_seconds=0.2, queues=2)
    polling, fan = result["status_polling"], result["sse_fan_out"]
    assert polling["requests"] > 0 and polling["errors"] == 0
    assert polling["p99_ms"] >= polling["p50_ms"] > 0
    assert fan["subscribers_with_every_event_in_order"] == 4
    assert fan["events_per_subscriber"] > 10
