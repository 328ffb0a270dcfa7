"""``DELETE /api/lectures/{id}`` over real HTTP, on SQLite and Postgres.

A lecture goes through the served pipeline with scripted compress/transcribe
steps and the real embed step (see ``search_support``), so it has a stored
original, a compressed video, transcripts in every format, embeddings, search
moments and notifications; deleting it must leave none of them, in storage,
in the read models or in search, and a rebuild of every projection from event
0 must not bring it back. The event log keeps the tombstone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from handlers.providers.simulated import SimulatedProvider
from handlers.storage import upload_key
from local.demo import server_sent_events
from projections.follower import EventFollower
from projections.moments import MomentsProjection
from projections.notifications import NotificationsProjection
from projections.queue_status import QueueStatusProjection
from tests.api.conftest import Client, fake_video
from tests.api.test_search import embedding_url, lectures, search  # noqa: F401 - fixtures
from tests.handlers.conftest import Pipeline
from tests.support import wait_until

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
LECTURE = "/api/lectures/{}"
READ_MODEL = {
    "video_processing_queue": "id", "video_processing_steps": "queue_id", "notifications": "queue_id",
    "notification_queues": "queue_id", "search_lectures": "queue_id", "search_moments": "queue_id",
    "video_embeddings": "queue_id", "video_processing_uploads": "queue_id", "video_processing_idempotency": "queue_id",
    "video_processing_batch_items": "queue_id", "notification_deliveries": "queue_id",
}


def rows_of(pipeline: Pipeline, queue_id: str) -> dict[str, int]:
    """How many rows of each read-model table name the queue (only tables with some)."""
    counts = {}
    for table, column in READ_MODEL.items():
        row = pipeline.store.view.fetchone(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = :id", {"id": queue_id})
        if row and int(row["n"]):
            counts[table] = int(row["n"])
    return counts


def files_of(pipeline: Pipeline, owner: str, queue_id: str, attachment_id: str) -> list[str]:
    root = Path(pipeline.settings.storage_dir)
    folder = [str(p.relative_to(root)) for p in (root / owner / queue_id).rglob("*")] if (root / owner / queue_id).exists() else []
    original = root / upload_key(owner, attachment_id)
    return sorted(folder + ([str(original.relative_to(root))] if original.exists() else []))


def rebuild_every_projection(pipeline: Pipeline) -> None:
    store = pipeline.store
    for projection in (QueueStatusProjection(), NotificationsProjection(), MomentsProjection()):
        EventFollower(store.app, store.view, projection).rebuild()


def test_deleting_a_lecture_leaves_nothing_of_it_and_a_rebuild_does_not_bring_it_back(
    lectures: Callable[..., Any],  # noqa: F811
) -> None:
    pipeline, tutors, queues = lectures({"a": ["photosynthesis.mp4", "french-revolution.mp4"], "b": []})
    owner, other = tutors["a"], tutors["b"]
    doomed, kept = queues["a:photosynthesis.mp4"], queues["a:french-revolution.mp4"]
    attachment = owner.status(doomed)["attachment_id"]
    kept_attachment = owner.status(kept)["attachment_id"]
    before = files_of(pipeline, "tutor-a", doomed, attachment)
    assert len(before) >= 6, before  # original, compressed video, transcripts in four formats
    assert {"video_embeddings", "search_moments", "notifications"} <= set(rows_of(pipeline, doomed))
    kept_files, kept_rows = files_of(pipeline, "tutor-a", kept, kept_attachment), rows_of(pipeline, kept)

    refused = other.delete(LECTURE.format(doomed))
    assert refused.status_code == 404, "another tutor's delete is 404"
    assert files_of(pipeline, "tutor-a", doomed, attachment) == before

    response = owner.delete(LECTURE.format(doomed))
    assert response.status_code == 204, response.text

    assert files_of(pipeline, "tutor-a", doomed, attachment) == [], "nothing of the lecture left in storage"
    wait_until(lambda: rows_of(pipeline, doomed) == {}, 10, "the projections to drop the lecture")
    assert owner.get(f"/api/video-processing/status/{doomed}").status_code == 404
    assert doomed not in [q["queue_id"] for q in owner.get("/api/video-processing/queue").json()["items"]]
    assert not [n for n in owner.get("/api/notifications").json()["items"] if n["queue_id"] == doomed]
    assert all(m["queue_id"] != doomed for m in search(owner, "chlorophyll absorbs sunlight")["moments"])
    assert owner.get(f"/api/video-processing/status/{doomed}/transcript").status_code == 404
    assert owner.delete(LECTURE.format(doomed)).status_code == 404, "a second delete is 404: it is gone"

    tombstone = pipeline.events(doomed)[-1]
    assert (type(tombstone).__name__, tombstone.by) == ("Deleted", "tutor-a")

    rebuild_every_projection(pipeline)
    assert rows_of(pipeline, doomed) == {}, "a rebuild from event 0 respects the tombstone"
    assert owner.get(f"/api/video-processing/status/{doomed}").status_code == 404
    assert files_of(pipeline, "tutor-a", kept, kept_attachment) == kept_files
    assert rows_of(pipeline, kept) == kept_rows, "the other lecture is untouched, before and after the rebuild"
    assert any(m["queue_id"] == kept for m in search(owner, "stormed the Bastille prison")["moments"])


def test_deleting_a_running_lecture_cancels_it_first(served: Served, clients: Clients) -> None:
    slow = SimulatedProvider(seconds=60, ticks=600)
    pipeline = served({"compress": slow})
    owner = clients(pipeline, "tutor-a")
    video = fake_video(seed=7)
    upload = owner.upload(video, filename="running.mp4").json()
    queue_id, attachment = upload["queue_id"], upload["attachment_id"]
    owner.wait_for(queue_id, ("processing",))
    wait_until(lambda: owner.status(queue_id)["steps"][0]["progress"] > 0, 10, "compress to report progress")

    assert owner.delete(LECTURE.format(queue_id)).status_code == 204

    names = pipeline.event_names(queue_id)
    assert names[-2:] == ["Cancelled", "Deleted"], names
    assert pipeline.events(queue_id)[-2].reason == "deleted by the tutor"
    assert files_of(pipeline, "tutor-a", queue_id, attachment) == []
    wait_until(lambda: rows_of(pipeline, queue_id) == {}, 10, "the projections to drop the lecture")
    wait_until(lambda: slow.calls and pipeline.event_names(queue_id) == names, 5, "the step to stop")
    assert "StepCompleted" not in names[names.index("Cancelled"):]
    assert not [n for n in owner.get("/api/notifications").json()["items"] if n["queue_id"] == queue_id]

    again = owner.upload(video, filename="running.mp4").json()
    assert again["queue_id"] != queue_id and again["reused"] is False, "the same bytes start a new queue"


def test_deleting_in_a_batch_leaves_the_batch(served: Served, clients: Clients) -> None:
    pipeline = served()
    owner = clients(pipeline, "tutor-a")
    body = owner.request("POST", "/api/batches", files=[
        ("file", ("one.mp4", fake_video(seed=1), "video/mp4")), ("file", ("two.mp4", fake_video(seed=2), "video/mp4")),
    ]).json()
    first, second = (f["queue_id"] for f in body["files"])
    owner.wait_for(first)
    assert owner.delete(LECTURE.format(first)).status_code == 204
    batch = owner.get(f"/api/batches/{body['batch_id']}").json()
    assert [f["queue_id"] for f in batch["files"]] == [second]


def test_an_idempotency_key_whose_lecture_was_deleted_answers_404_and_stores_nothing(
    served: Served, clients: Clients,
) -> None:
    pipeline = served()
    owner = clients(pipeline, "tutor-a")
    video = fake_video(seed=11)
    first = owner.upload(video, headers={"Idempotency-Key": "week-3"}).json()
    owner.wait_for(first["queue_id"])
    assert owner.delete(LECTURE.format(first["queue_id"])).status_code == 204
    wait_until(lambda: owner.get(f"/api/video-processing/status/{first['queue_id']}").status_code == 404, 10,
               "the status projection to drop the lecture")

    retried = owner.upload(video, headers={"Idempotency-Key": "week-3"})
    assert retried.status_code == 404 and "does not exist" in retried.json()["error"]
    uploads = Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads"
    assert not uploads.exists() or list(uploads.iterdir()) == []
    fresh = owner.upload(video, headers={"Idempotency-Key": "week-3 again"})
    assert fresh.status_code == 202 and fresh.json()["queue_id"] != first["queue_id"]


def test_a_live_stream_of_a_deleted_lecture_ends(served: Served, clients: Clients) -> None:
    pipeline = served({"compress": SimulatedProvider(seconds=60, ticks=600)})
    owner = clients(pipeline, "tutor-a")
    queue_id = owner.upload(fake_video(seed=13)).json()["queue_id"]
    owner.wait_for(queue_id, ("processing",))
    received: list[str] = []

    def follow() -> None:
        with httpx.Client(base_url=pipeline.api.url, timeout=60) as http, http.stream(
            "GET", f"/api/video-processing/status/{queue_id}/stream", headers=owner.headers(),
        ) as response:
            for event, _, _ in server_sent_events(response.iter_lines()):
                received.append(event)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_until(lambda: "status" in received, 10, "the stream's first status")

    assert owner.delete(LECTURE.format(queue_id)).status_code == 204

    reader.join(15)
    assert not reader.is_alive(), "the stream ends once its lecture is deleted"
    assert owner.get(f"/api/video-processing/status/{queue_id}/stream").status_code == 404
