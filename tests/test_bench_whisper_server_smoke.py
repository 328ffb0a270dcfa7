"""The Whisper server benchmark still measures (seconds of espeak-ng speech); no timing is asserted, only its shape.

Runs all three measurements of :mod:`bench.whisper_server` on tiny lectures:
decoding in process (both modes), the server process's CPU against that, and
four short clips sent to one server at once after one after another.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from rich.console import Console

from bench.search_eval.corpus import Lecture, build_lecture
from bench.whisper_server import MODES, STARVED_FACTOR, Clip, measure, queue_clips, report

pytestmark = pytest.mark.timeout(600)  # two server starts on a loaded 2-core machine

SENTENCES = (
    ("Plants take light from the sun.", "They turn it into sugar."),
    ("The king lost his head in the end.", "The people took the palace."),
    ("A list can be sorted by merging halves.", "Quick sort picks a pivot."),
    ("The plates of the earth move slowly.", "Mountains rise where they meet."),
)


def test_whisper_server_benchmark_measures_every_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # English-only servers (tiny.en alone, as decoded in process): the clips are English, and detection by the
    # multilingual model has its own tests (tests/local/test_whisper_languages.py)
    monkeypatch.setenv("WHISPER_MULTILINGUAL", "false")
    built = [build_lecture(Lecture(f"tiny-{n}", sentences), tmp_path / "cache") for n, sentences in
             enumerate(SENTENCES)]
    first = built[0]
    parity = Clip("lecture tiny-0", first.audio, first.lecture.text, first.duration)
    queued = queue_clips(built, 3.0, tmp_path)
    assert [clip.seconds for clip in queued] == [3.0] * 4 and all(clip.path.is_file() for clip in queued)

    result = measure([parity], parity, queued, tmp_path, Console(quiet=True), repeats=1)  # one timed run each

    for mode in MODES:
        row = result["in_process"][parity.name][mode]
        assert row["audio_seconds"] > 0 and row["rtf"] > 0 and row["cpu_seconds"] >= 0 and row["segments"] >= 1
        assert 0.0 <= row["wer"] <= 1.0
        parity_row = result["cpu_parity"][mode]
        assert parity_row["server_cpu_seconds"] > 0 and parity_row["server_wall_seconds"] > 0
        assert 0.0 <= parity_row["server_wer"] <= 1.0

    q = result["queue"]
    assert q["requests"] == 4 and len(q["per_request"]) == 4 and sorted(q["served_order"]) == [0, 1, 2, 3]
    assert q["concurrent_total_seconds"] > 0 and q["sequential_total_seconds"] > 0
    assert math.isclose(q["concurrent_vs_sequential"],
                        q["concurrent_total_seconds"] / q["sequential_total_seconds"], rel_tol=0.01)
    assert q["fair_share_seconds"] == pytest.approx(sum(r["alone_seconds"] for r in q["per_request"]), abs=0.05)
    assert q["starved_factor"] == STARVED_FACTOR
    for row in q["per_request"]:
        assert row["status"] == 200, row  # every request finished (503s are retried after Retry-After)
        assert row["alone_seconds"] > 0 and row["concurrent_seconds"] > 0 and row["waited_seconds"] >= 0
        assert row["share_of_fair"] == pytest.approx(row["concurrent_seconds"] / q["fair_share_seconds"], abs=0.01)
        assert row["wer_alone"] is not None and row["wer_concurrent"] is not None
    assert q["starved"] == [r["clip"] for r in q["per_request"] if r["share_of_fair"] > STARVED_FACTOR]
    assert q["max_wait_seconds"] == max(r["waited_seconds"] for r in q["per_request"])

    report(result, Console(quiet=True))  # the printed tables render from the result
