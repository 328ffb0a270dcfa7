"""The batched-vs-sequential Whisper grid still measures (11 s of real speech); no timing is asserted, only its shape.

Decodes ``jfk.flac`` with sequential decoding and the context-prompted batched
pipeline of :mod:`bench.whisper_batched`, then reads both back from the cache
without a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from bench.whisper_batched import CONFIGS, Decoder, clips, measure

pytestmark = pytest.mark.timeout(300)


def test_whisper_batched_grid_measures_and_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISPER_CPU_THREADS", "2")
    [jfk] = clips(["jfk"])
    decoder = Decoder()
    log = Console(quiet=True)
    rows = {name: measure(jfk, name, CONFIGS[name], decoder, False, log, cache=tmp_path)
            for name in ("sequential", "batched-context-guard")}
    for row in rows.values():
        assert row["seconds"] > 0 and row["rtf"] > 0 and row["cpu_seconds"] > 0 and row["segments"] >= 1
        assert row["wer"] <= 0.1, row["text"]  # the speech is clear: both decodings get (nearly) every word
        assert 0 < row["longest_segment"] <= 11.1
    assert len(list(tmp_path.glob("jfk-*.json"))) == 2

    # Read back from the cache: no model needed, same figures.
    again = measure(jfk, "batched-context-guard", CONFIGS["batched-context-guard"], None, False, log, cache=tmp_path)
    assert again == rows["batched-context-guard"]
    with pytest.raises(RuntimeError, match="not cached"):
        measure(jfk, "batched-beam1", CONFIGS["batched-beam1"], None, False, log, cache=tmp_path)
