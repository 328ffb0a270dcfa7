"""Deleting a queue: the tombstone event, on the in-memory store (the event log's shape is the same on every store)."""

from __future__ import annotations

import pytest

from domain import QueueIsTerminal, VideoProcessing
from domain.queue import DELETED_REASON
from tests.domain.test_queue import event_names, run_all_steps


def test_deleting_a_running_queue_cancels_it_then_leaves_a_tombstone(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "attachment")
    memory_app.start_step(qid, "compress", 1)

    assert memory_app.delete(qid, by="tutor-1") is True

    assert event_names(memory_app, qid)[-2:] == ["Cancelled", "Deleted"]
    events = list(memory_app.queue_events(qid))
    assert events[-2].reason == DELETED_REASON
    tombstone = events[-1]
    assert {k for k in vars(tombstone) if not k.startswith("originator")} == {"by", "timestamp"}
    assert tombstone.by == "tutor-1"
    queue = memory_app.get_queue(qid)
    assert queue.is_deleted and queue.status == "cancelled"
    assert memory_app.replay(qid).is_deleted, "a replay of the events alone rebuilds the deletion"
    with pytest.raises(QueueIsTerminal):
        memory_app.complete_step(qid, "compress", 1)
    trail = memory_app.timeline(qid)[-1]
    assert (trail.event, trail.detail) == ("Deleted", "by=tutor-1")


def test_deleting_an_ended_queue_records_only_the_tombstone_and_twice_is_a_no_op(memory_app: VideoProcessing) -> None:
    qid = memory_app.start_processing("tutor-1", "attachment")
    run_all_steps(memory_app, qid)
    before = event_names(memory_app, qid)

    assert memory_app.delete(qid, by="tutor-1") is True
    assert memory_app.delete(qid, by="tutor-1") is False

    assert event_names(memory_app, qid) == [*before, "Deleted"]
    assert memory_app.get_queue(qid).status == "completed" and memory_app.get_queue(qid).is_deleted
