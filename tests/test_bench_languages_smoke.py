"""The languages benchmark still measures (the Spanish lecture, one run); no figure is asserted but its shape."""

from __future__ import annotations

from bench.languages import measure


def test_languages_benchmark_measures_detection_wer_and_rtf() -> None:
    result = measure(["es"], repeats=1)
    assert result["models"] == {"en": "tiny.en", "other": "base"}
    by_language = {row["language"]: row for row in result["lectures"]}
    assert set(by_language) == {"es"}
    for code, row in by_language.items():
        assert row["detected"] == code and row["detection_correct"]
        for run in (row["no_hint"], row["hint"]):
            assert run["outcome"] == "transcribed" and run["rtf"] > 0 and 0 <= run["wer"] < 1
        assert row["hint"]["model"] == row["no_hint"]["model"] == "base"
    assert result["detection_accuracy"] == 1.0
