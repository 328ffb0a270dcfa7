"""The steps benchmark still runs end to end (a 12-second 320x240 lecture); no timing is asserted, only that it
measures.

Starts the whole embedded default as processes (both model servers, QStash,
the API), uploads through the API and follows the queue there, then runs the
same tools directly in this process (both decodings).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.steps import STEPS, TRANSCRIPT_STEPS, measure, table, targets_table, transcription_table


def _positive(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.timeout(600)  # three model loads in four processes; minutes on a loaded 2-core machine
def test_steps_benchmark_measures_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an English-only Whisper server (tiny.en alone, as the direct side): the lecture is English, and detection
    # by the multilingual model has its own tests (tests/local/test_whisper_languages.py)
    monkeypatch.setenv("WHISPER_MULTILINGUAL", "false")
    result = measure(0.2, cache=tmp_path / "media", size="320x240")  # small frames: the steps, not the pixels
    assert result["lecture"]["size"] == "320x240" and result["lecture"]["seconds"] == 12

    # whatever order (or overlap) the pipeline ran its steps in, every direct step has its pipeline twin
    assert set(result["steps"]) == set(STEPS)
    for step, figures in result["steps"].items():
        assert _positive(figures["pipeline_seconds"]) and _positive(figures["direct_seconds"]), (step, figures)
        assert _positive(figures["overhead_ratio"]) and figures["attempts"] >= 1
        begin, end = figures["window"]
        assert 0 <= begin < end <= result["whole_queue"]["events_seconds"], (step, figures["window"])
    assert result["steps"]["transcribe"]["window"][0] >= result["steps"]["audio-convert"]["window"][1]
    assert result["steps"]["embed"]["window"][0] >= result["steps"]["transcribe"]["window"][1]
    assert result["idle_seconds"] >= 0 and isinstance(result["audio_from_original"], bool)

    for key, target, direct_steps in (("time_to_transcript", 0.5, list(TRANSCRIPT_STEPS)),
                                      ("whole_queue", 1.0, list(STEPS))):
        row = result[key]
        assert _positive(row["pipeline_seconds"]) and _positive(row["direct_seconds"]) and _positive(row["ratio"])
        assert row["target_ratio"] == target and row["met"] == (row["ratio"] <= target)
        assert row["direct_steps"] == direct_steps
        assert math.isclose(row["direct_seconds"], sum(result["steps"][s]["direct_seconds"] for s in direct_steps))
    # the transcript is downloadable before (or as) the queue completes, and not before its step completed
    assert result["time_to_transcript"]["pipeline_seconds"] <= result["whole_queue"]["pipeline_seconds"]
    assert result["time_to_transcript"]["events_seconds"] == result["steps"]["transcribe"]["window"][1]

    transcription = result["transcription"]
    for side in ("pipeline", "direct"):
        assert transcription["audio_seconds"][side] > 0
    assert set(transcription["direct"]) == {"sequential", "batched"}
    assert transcription["server_decoding"] in transcription["direct"]
    for figures in [transcription["pipeline"], *transcription["direct"].values()]:
        assert _positive(figures["seconds"]) and _positive(figures["real_time_factor"])
        wer = figures["word_error_rate"]
        assert isinstance(wer, float) and 0.0 <= wer <= 1.0, wer
        assert figures["segments"] >= 1
    assert result["embedding"]["chunks"] >= 1 and result["embedding"]["dimension"] == 384
    assert result["embedding"]["direct_chunks"] == result["embedding"]["chunks"]  # the same work on both sides

    cpu = result["cpu_seconds"]
    if cpu["pipeline"] is not None:  # /proc is there (Linux)
        assert cpu["pipeline"]["total"] > 0 and cpu["direct"]["total"] > 0

    for render in (targets_table, table, transcription_table):  # the printed tables render from the result
        assert render(result).row_count >= 2
