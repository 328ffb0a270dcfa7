"""The search benchmark still runs (reduced sizes) and measures what the README quotes.

No timing is asserted. What is asserted is what must hold however fast the
machine is: the HNSW index agrees with exact search on a small corpus, a query's
memory does not grow with the corpus once it exceeds one scan batch, and on
the evaluation set every figure is measured for every retriever.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.search import main


@pytest.mark.postgres
def test_scale_run_measures_every_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("projections.moments.SCAN_BATCH", 256)  # so a small corpus spans several scan batches
    output = tmp_path / "search.json"
    assert main(["--only", "scale", "--reduced", "--chunks", "1000", "--output", str(output)]) == 0
    result = json.loads(output.read_text())["scale"]
    assert set(result["stores"]) == {"sqlite", "postgres", "pgvector"}
    for store, row in result["stores"].items():
        assert row["index_chunks_per_s"] > 0
        for mode in ("hybrid", "keyword", "semantic"):
            assert row[mode]["p95_ms"] >= row[mode]["p50_ms"] > 0, (store, mode)
        peaks = [m["query_peak_mib"] for m in row["memory"]]
        if store != "pgvector":
            # Exact search streams batches: a corpus 3 batches large costs a query no more than ~1 batch does.
            assert peaks[-1] < 1.5 * peaks[1] + 1, (store, row["memory"])
    assert result["stores"]["pgvector"]["hnsw_recall_at_10"] >= 0.9


@pytest.mark.slow
def test_quality_run_scores_each_retriever_on_the_evaluation_set(tmp_path: Path) -> None:
    output = tmp_path / "search.json"
    assert main(["--only", "quality", "--reduced", "--output", str(output)]) == 0
    quality = json.loads(output.read_text())["quality"]
    assert quality["lectures"] == 2 and quality["questions"] >= 20
    for store in ("sqlite", "postgres"):
        rows = {r["mode"]: r for r in quality["stores"][store]}
        assert set(rows) == {"keyword", "semantic", "hybrid", "hybrid-rrf"}
        for row in rows.values():
            assert 0 <= row["recall_at_1"] <= row["recall_at_5"] <= 1
            assert row["latency_p95_ms"] >= row["latency_p50_ms"] > 0
        # Not a quality bound (that is the benchmark's), a sanity one: search finds most answers.
        assert rows["hybrid"]["recall_at_5"] >= 0.5
    # one chunking: its row is SQLite's hybrid row, not a run of its own
    assert quality["best_chunking"] == {"max_chars": 160, "overlap_segments": 0}
    [chunking] = quality["chunking"]
    sqlite_hybrid = next(r for r in quality["stores"]["sqlite"] if r["mode"] == "hybrid")
    assert chunking == {"max_chars": 160, "overlap_segments": 0, **sqlite_hybrid}
