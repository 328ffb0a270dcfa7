"""The steps benchmark still runs end to end (a 12-second lecture); no timing is asserted, only that it measures.

Starts the whole embedded default as processes (both model servers, QStash,
the API), runs the queue, then the same tools directly in this process.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.steps import STEPS, measure


def test_steps_benchmark_measures_every_figure(tmp_path: Path) -> None:
    result = measure(0.2, cache=tmp_path / "media")

    assert list(result["steps"]) == list(STEPS)
    for figures in [*result["steps"].values(), result["total"]]:
        for key in ("pipeline_seconds", "direct_seconds", "overhead_ratio"):
            assert math.isfinite(figures[key]) and figures[key] > 0, (key, figures)
    assert result["total"]["pipeline_seconds"] >= max(s["pipeline_seconds"] for s in result["steps"].values())

    transcription = result["transcription"]
    for side in ("pipeline", "direct"):
        assert transcription["audio_seconds"][side] > 0
        assert transcription["real_time_factor"][side] > 0
        wer = transcription["word_error_rate"][side]
        assert isinstance(wer, float) and 0.0 <= wer <= 1.0, wer
    assert result["embedding"]["chunks"] >= 1 and result["embedding"]["dimension"] == 384

    cpu = result["cpu_seconds"]
    if cpu["pipeline"] is not None:  # /proc is there (Linux)
        assert cpu["pipeline"]["total"] > 0 and cpu["direct"]["total"] > 0
