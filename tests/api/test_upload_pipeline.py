"""The upload's ``skip_compress`` option chooses the queue's step graph, on SQLite and Postgres."""

from __future__ import annotations

from collections.abc import Callable

from tests.api.conftest import Client, fake_video
from tests.handlers.conftest import Pipeline

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
UPLOAD = "/api/video-processing/upload"


def test_skip_compress_leaves_the_compress_step_out(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    original = fake_video(2001)
    queue_id = tutor.upload(original, params={"skip_compress": "true"}).json()["queue_id"]
    created = pipeline.events(queue_id)[0]
    assert created.steps == ["audio-convert", "transcribe", "embed"]
    assert created.graph == {"audio-convert": [], "transcribe": ["audio-convert"], "embed": ["transcribe"]}
    row = pipeline.wait_for_status(queue_id)
    assert row["status"] == "completed"
    status = tutor.request("GET", f"/api/video-processing/status/{queue_id}").json()
    assert [s["step"] for s in status["steps"]] == ["audio-convert", "transcribe", "embed"]
    assert status["running_steps"] == [] and status["progress_percentage"] == 100
    # nothing was compressed: the player gets the original upload
    links = tutor.request("GET", f"/api/video-processing/status/{queue_id}/media")
    assert links.status_code == 200, links.text
    played = tutor.request("GET", links.json()["video_url"])
    assert played.status_code == 200 and played.content == original

    default = tutor.upload(fake_video(2002)).json()["queue_id"]
    assert pipeline.events(default)[0].graph == {
        "compress": [], "audio-convert": [], "transcribe": ["audio-convert"], "embed": ["transcribe"],
    }


def test_a_malformed_skip_compress_is_refused_before_anything_is_stored(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = tutor.upload(fake_video(2003), params={"skip_compress": "maybe"})
    assert response.status_code == 422 and "skip_compress" in response.json()["error"]
    assert pipeline.store.app.recorder.max_notification_id() in (None, 0)
    assert tutor.upload(fake_video(2003)).status_code == 202
