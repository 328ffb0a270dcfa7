"""Steps as a graph: parallel steps, per-queue graphs, their bounds, and queues recorded before graphs.

Run on the in-memory store and, through ``store``, on SQLite and Postgres.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from domain import (
    DEFAULT_GRAPH,
    STEPS,
    InvalidGraph,
    QueueIsTerminal,
    StepOutOfOrder,
    VideoProcessing,
)
from domain.queue import linear_graph
from tests.conftest import Store


def event_names(app: VideoProcessing, qid: uuid.UUID) -> list[str]:
    return [type(e).__name__ for e in app.queue_events(qid)]


def test_audio_runs_beside_compression_and_the_queue_completes_when_all_did(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a")
    queue = app.get_queue(qid)
    assert queue.graph == DEFAULT_GRAPH
    assert queue.ready_steps() == ["compress", "audio-convert"]
    assert app.start_step(qid, "compress", 1) == "started"
    assert app.start_step(qid, "audio-convert", 1) == "started"
    queue = app.get_queue(qid)
    assert queue.running_steps == ["compress", "audio-convert"]
    assert queue.running_step == "compress"
    for step in ("audio-convert", "transcribe", "embed"):
        if step != "audio-convert":
            assert app.start_step(qid, step, 1) == "started"
        assert app.complete_step(qid, step, 1, {"artifact": step})
    queue = app.get_queue(qid)
    assert queue.status == "processing"  # compress still runs
    assert queue.running_steps == ["compress"]
    assert app.complete_step(qid, "compress", 1)
    assert app.get_queue(qid).status == "completed"
    names = event_names(app, qid)
    assert names[-2:] == ["StepCompleted", "Completed"] and names.count("Completed") == 1


def test_step_completed_names_the_steps_it_unblocks(memory_app: VideoProcessing) -> None:
    app = memory_app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "audio-convert", 1)
    app.complete_step(qid, "audio-convert", 1)
    app.start_step(qid, "compress", 1)
    app.complete_step(qid, "compress", 1)
    completed = [e for e in app.queue_events(qid) if type(e).__name__ == "StepCompleted"]
    assert [(e.step, e.unblocked) for e in completed] == [("audio-convert", ["transcribe"]), ("compress", [])]


def test_a_step_waits_for_its_own_predecessors_only(memory_app: VideoProcessing) -> None:
    app = memory_app
    qid = app.start_processing("tutor-1", "a")
    with pytest.raises(StepOutOfOrder, match="step 'audio-convert' has not completed"):
        app.start_step(qid, "transcribe", 1)
    app.start_step(qid, "audio-convert", 1)
    with pytest.raises(StepOutOfOrder, match="step 'audio-convert' has not completed"):
        app.start_step(qid, "transcribe", 1)  # running is not completed
    app.complete_step(qid, "audio-convert", 1)
    assert app.start_step(qid, "transcribe", 1) == "started"  # compress has not even started
    with pytest.raises(StepOutOfOrder, match="step 'transcribe' has not completed"):
        app.start_step(qid, "embed", 1)


def test_cancel_while_two_steps_run_marks_both(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a", max_retries=2)
    app.start_step(qid, "compress", 1)
    app.start_step(qid, "audio-convert", 1)
    app.retry_step(qid, "audio-convert", 1, "503", 5)  # retrying: cancelled too
    assert app.cancel(qid, by="tutor-1", reason="wrong video")
    queue = app.get_queue(qid)
    assert [(s.name, s.status) for s in queue.steps] == [
        ("compress", "cancelled"), ("audio-convert", "cancelled"), ("transcribe", "pending"), ("embed", "pending"),
    ]
    assert queue.running_steps == []
    cancelled = list(app.queue_events(qid))[-1]
    assert (cancelled.step, cancelled.steps) == ("compress", ["compress", "audio-convert"])
    assert vars(app.replay(qid)) == vars(queue)
    with pytest.raises(QueueIsTerminal):
        app.complete_step(qid, "compress", 1)


def test_one_failing_step_fails_the_queue_and_the_other_running_step_is_refused(memory_app: VideoProcessing) -> None:
    app = memory_app
    qid = app.start_processing("tutor-1", "a")
    app.start_step(qid, "compress", 1)
    app.start_step(qid, "audio-convert", 1)
    assert app.fail_step(qid, "audio-convert", 1, "no sound track")
    queue = app.get_queue(qid)
    assert (queue.status, queue.error) == ("failed", "no sound track")
    version = queue.version
    with pytest.raises(QueueIsTerminal):
        app.complete_step(qid, "compress", 1)
    with pytest.raises(QueueIsTerminal):
        app.report_progress(qid, "compress", 1, 50)
    assert app.get_queue(qid).version == version


def test_skip_compress_leaves_compress_out(store: Store) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "a", {"skip_compress": True})
    queue = app.get_queue(qid)
    assert queue.step_names == ["audio-convert", "transcribe", "embed"]
    assert queue.graph == {"audio-convert": [], "transcribe": ["audio-convert"], "embed": ["transcribe"]}
    for step in queue.step_names:
        app.start_step(qid, step, 1)
        app.complete_step(qid, step, 1)
    assert app.get_queue(qid).status == "completed"


@pytest.mark.parametrize("options", [{"media": "audio"}, {"media": "audio", "skip_compress": True}])
def test_an_audio_recording_has_no_compress_step(store: Store, options: dict[str, Any]) -> None:
    app = store.app
    qid = app.start_processing("tutor-1", "talk.mp3", options)
    created = list(app.queue_events(qid))[0]
    assert created.options["media"] == "audio"
    assert created.steps == ["audio-convert", "transcribe", "embed"]
    assert created.graph == {"audio-convert": [], "transcribe": ["audio-convert"], "embed": ["transcribe"]}
    video = app.get_queue(app.start_processing("tutor-1", "talk.mp4", {"media": "video"}))
    assert video.step_names[0] == "compress"


def test_a_custom_graph_is_recorded_and_kept(memory_app: VideoProcessing) -> None:
    graph = {"compress": [], "audio-convert": ["compress"], "transcribe": ["audio-convert"]}
    qid = memory_app.start_processing("tutor-1", "a", graph=graph)
    queue = memory_app.get_queue(qid)
    assert queue.step_names == ["compress", "audio-convert", "transcribe"]
    assert queue.graph == graph
    assert list(memory_app.queue_events(qid))[0].graph == graph


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"graph": {"compress": [], "transcode": []}}, "unknown step.*'transcode'"),
        ({"graph": {"audio-convert": ["transcribe"], "transcribe": ["audio-convert"]}}, "cycle"),
        ({"graph": {"compress": [], "transcribe": []}}, "'transcribe' needs 'audio-convert'"),
        ({"graph": {"audio-convert": [], "transcribe": ["audio-convert"], "embed": []}}, "'embed' needs 'transcribe'"),
        ({"graph": {"compress": ["compress"]}}, "cannot wait for 'compress'"),
        ({"graph": {"compress": ["embed"]}}, "cannot wait for 'embed'"),
        ({"graph": {"compress": "audio-convert", "audio-convert": []}}, "must be a list"),
        ({"graph": {}}, "at least one step"),
        ({"steps": ("compress", "compress")}, "listed twice"),
        ({"steps": ("transcribe", "embed")}, "'transcribe' needs 'audio-convert'"),
        ({"steps": ("compress",), "graph": {"compress": [], "audio-convert": []}}, "exactly these steps"),
        ({"options": {"skip_compress": "yes"}}, "skip_compress must be true or false"),
        ({"options": {"media": "podcast"}}, "media must be one of video, audio"),
    ],
)
def test_graphs_outside_the_safe_bounds_are_refused(
    store: Store, kwargs: dict[str, Any], message: str
) -> None:
    before = store.app.recorder.max_notification_id()
    kwargs = dict(kwargs)  # shared by the store's parameters
    options = kwargs.pop("options", None)
    with pytest.raises(InvalidGraph, match=message) as raised:
        store.app.start_processing("tutor-1", "a", options, **kwargs)
    assert str(raised.value).startswith("invalid processing pipeline: ")
    assert store.app.recorder.max_notification_id() == before


def _as_before_graphs(app: VideoProcessing, qid: uuid.UUID) -> list[Any]:
    """The queue's stored events as a version without graphs wrote them."""
    transcoder = app.mapper.transcoder
    old = []
    for stored in app.recorder.select_events(qid):
        state = transcoder.decode(stored.state)
        state.pop("class_version", None)
        state.pop("graph", None)  # Created
        state.pop("unblocked", None)  # StepCompleted
        state.pop("steps", None) if stored.topic.endswith("Cancelled") else None
        old.append(dataclasses.replace(stored, state=transcoder.encode(state)))
    return old


def test_queues_recorded_before_graphs_replay_as_the_linear_chain() -> None:
    new = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    old = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        qid = new.start_processing("tutor-1", "a")
        new.start_step(qid, "compress", 1)
        new.complete_step(qid, "compress", 1, {"video": "v.mp4"})
        new.start_step(qid, "audio-convert", 1)
        new.cancel(qid, by="tutor-1")
        events = _as_before_graphs(new, qid)
        old.recorder.insert_events(events[:3])  # Created, compress started and completed
        queue = old.get_queue(qid)
        assert queue.graph == linear_graph(STEPS)
        created = list(old.queue_events(qid))[0]
        assert created.graph == linear_graph(STEPS)
        assert list(old.queue_events(qid))[2].unblocked is None
        old.start_step(qid, "audio-convert", 1)
        with pytest.raises(StepOutOfOrder, match="'audio-convert' has not completed"):
            old.start_step(qid, "transcribe", 1)
        other = VideoProcessing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        other.recorder.insert_events(events)  # … and the old Cancelled with only `step`
        replayed = other.replay(qid)
        assert replayed.status == "cancelled"
        assert replayed.step("audio-convert").status == "cancelled"
        assert list(other.queue_events(qid))[-1].steps == ["audio-convert"]
        other.close()
    finally:
        new.close()
        old.close()


def test_a_snapshot_taken_before_graphs_gets_the_linear_graph(memory_app: VideoProcessing) -> None:
    from domain.queue import ProcessingQueue

    qid = memory_app.start_processing("tutor-1", "a")
    queue = memory_app.get_queue(qid)
    snapshot = ProcessingQueue.Snapshot.take(queue)
    state = dict(snapshot.state)
    state.pop("class_version")
    state.pop("graph")
    old = dataclasses.replace(snapshot, state=state)
    assert old.mutate(None).graph == linear_graph(STEPS)
