"""Steps as a graph through the real dispatcher, QStash server and step webhooks (SQLite and Postgres).

Simulated providers stand in for the media work, so the order of events is
what the graph makes it: compress and audio-convert are published together at
creation, transcribe when audio-convert completes, embed when transcribe does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from handlers.providers.simulated import SimulatedProvider
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

Factory = Callable[..., Pipeline]


def timeline(pipeline: Pipeline, qid: str) -> list[tuple[str, Any]]:
    return [(type(e).__name__, getattr(e, "step", None)) for e in pipeline.events(qid)]


def pending_deliveries(pipeline: Pipeline) -> int:
    """Step messages the local QStash still holds or is delivering (a handler still working)."""
    with sqlite3.connect(pipeline.qstash.settings.db_path) as conn:
        return conn.execute("SELECT COUNT(*) FROM messages WHERE state IN ('pending', 'delivering')").fetchone()[0]


def messages(pipeline: Pipeline, qid: str) -> list[tuple[str, int]]:
    return sorted(
        (m["step"], m["attempt"]) for m in pipeline.store.view.fetchall(
            "SELECT step, attempt FROM video_processing_messages WHERE queue_id = :id", {"id": qid})
    )


def test_audio_transcribe_and_embed_finish_while_compress_runs(pipeline_factory: Factory) -> None:
    slow = SimulatedProvider(seconds=4, ticks=40)
    pipeline = pipeline_factory({"compress": slow})
    qid = pipeline.start()

    def embedded() -> dict[str, Any] | None:
        row = pipeline.status(qid)
        return row if {s["step"]: s["status"] for s in row["steps"]}["embed"] == "completed" else None

    row = wait_until(embedded, 30, "embed to complete")
    events = timeline(pipeline, qid)
    assert ("StepCompleted", "compress") not in events  # still compressing
    assert (row["status"], row["running_steps"], row["current_step"]) == ("processing", ["compress"], "compress")
    row = pipeline.wait_for_status(qid)
    assert row["status"] == "completed"
    events = timeline(pipeline, qid)
    done = events.index(("StepCompleted", "compress"))
    assert events.index(("StepStarted", "audio-convert")) < done
    assert events.index(("StepCompleted", "embed")) < done
    assert events[-2:] == [("StepCompleted", "compress"), ("Completed", None)]
    # one message per step, both roots published at creation; nothing published twice
    wait_until(lambda: messages(pipeline, qid) == sorted((s, 1) for s in
               ("compress", "audio-convert", "transcribe", "embed")), 5, "the four messages recorded")
    assert [n for n, _ in events].count("StepStarted") == 4


def test_cancel_while_compress_and_audio_run_stops_both(pipeline_factory: Factory) -> None:
    compress, audio = SimulatedProvider(seconds=60, ticks=60), SimulatedProvider(seconds=60, ticks=60)
    pipeline = pipeline_factory({"compress": compress, "audio-convert": audio})
    qid = pipeline.start()
    wait_until(lambda: pipeline.status(qid)["running_steps"] == ["compress", "audio-convert"], 15, "both to run")
    pipeline.store.app.cancel(qid, by="tutor-1")
    row = pipeline.wait_for_status(qid)
    assert row["status"] == "cancelled"
    assert [s["status"] for s in row["steps"]] == ["cancelled", "cancelled", "pending", "pending"]
    cancelled = pipeline.events(qid)[-1]
    assert cancelled.steps == ["compress", "audio-convert"]
    # both handlers stop their work and answer; nothing completes afterwards
    wait_until(lambda: not pending_deliveries(pipeline), 10, "both handlers to return")
    assert "StepCompleted" not in [n for n, _ in timeline(pipeline, qid)]


def test_a_failing_step_fails_the_queue_and_stops_the_step_beside_it(pipeline_factory: Factory) -> None:
    compress = SimulatedProvider(seconds=60, ticks=60)
    broken = SimulatedProvider(seconds=0.5, permanent_failure="The video has no sound track")
    pipeline = pipeline_factory({"compress": compress, "audio-convert": broken})
    qid = pipeline.start()
    row = pipeline.wait_for_status(qid)
    assert (row["status"], row["error"], row["current_step"]) == ("failed", "The video has no sound track", "audio-convert")
    wait_until(lambda: not pending_deliveries(pipeline), 10, "the compress handler to stop")
    names = [n for n, _ in timeline(pipeline, qid)]
    assert names[-2:] == ["StepFailed", "Failed"] and "StepCompleted" not in names


def test_a_queue_without_compress_runs_three_steps(pipeline_factory: Factory) -> None:
    compress = SimulatedProvider()
    pipeline = pipeline_factory({"compress": compress})
    qid = str(pipeline.store.app.start_processing("tutor-1", "a", {"skip_compress": True}))
    row = pipeline.wait_for_status(qid)
    assert row["status"] == "completed" and row["progress_percentage"] == 100
    assert [s["step"] for s in row["steps"]] == ["audio-convert", "transcribe", "embed"]
    assert compress.calls == 0
    wait_until(lambda: messages(pipeline, qid) == [("audio-convert", 1), ("embed", 1), ("transcribe", 1)],
               5, "three messages recorded")
