"""A "video" upload that holds only sound, on SQLite and Postgres, end to end.

A phone's voice memo saved as ``.mp4`` or a recorder's ``.webm`` with only an
Opus track, uploaded as a video (named and declared so), goes down the video
path: its compress step finds sound without picture and completes without a
compressed file, saying the original plays as uploaded; audio, transcript and
embeddings complete as for any lecture, so the queue completes and the
player's link serves the original with its own Content-Type and Range. A
"video" with neither picture nor sound still fails, with that reason. Real
steps (ffmpeg, the reference Whisper and embedding servers) behind real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from api.queues import status_from_aggregate
from api.token import mint
from handlers.storage import artifact_key
from tests.api.recording_support import STATUS, assert_transcribed_and_plays_the_original, needs_jfk
from tests.conftest import Store
from tests.mediafiles import jfk_sound_only_video, media_directory, subtitles_only_mp4
from tests.test_end_to_end import RealPipeline, real_pipeline  # noqa: F401 - the fixture is used here

UPLOAD = "/api/video-processing/upload"
VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}


def _tutor(pipeline: RealPipeline) -> httpx.Client:
    token = mint(pipeline.settings, "tutor-1", "tutor")
    return httpx.Client(base_url=pipeline.api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60)


@needs_jfk
def test_a_video_with_only_sound_completes_and_plays_the_original(
    real_pipeline: Callable[..., RealPipeline], tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> None:
    media = media_directory(tmp_path_factory)
    pipeline = real_pipeline()
    with _tutor(pipeline) as http:
        sent: dict[str, tuple[str, bytes]] = {}
        for extension, content_type in VIDEO_TYPES.items():
            recording = jfk_sound_only_video(media, extension)
            assert recording is not None
            content = recording.read_bytes()
            answer = http.post(UPLOAD, files={"file": (f"voice memo{extension}", content, content_type)})
            assert answer.status_code == 202, answer.text
            sent[extension] = (answer.json()["queue_id"], content)

        for extension, (queue_id, content) in sent.items():
            row = pipeline.wait(queue_id)
            assert row["status"] == "completed", (extension, row["error"], row["steps"])
            status = http.get(f"{STATUS}/{queue_id}").json()
            assert status["status"] == "completed" and status["progress_percentage"] == 100 and not status["error"]
            assert status["media"] == "audio" and status["filename"] == f"voice memo{extension}"
            steps = {s["step"]: s for s in status["steps"]}
            assert list(steps) == ["compress", "audio-convert", "transcribe", "embed"]  # the video graph
            assert all(s["status"] == "completed" and s["retries"] == 0 for s in steps.values()), extension
            compress = steps["compress"]["outputs"]
            assert (compress["media"], compress["playback"]) == ("audio", "original") and "video" not in compress
            assert not pipeline.storage.exists(artifact_key("tutor-1", queue_id, "compressed"))

            assert_transcribed_and_plays_the_original(http, queue_id, content, VIDEO_TYPES[extension])


def test_a_video_with_neither_picture_nor_sound_still_fails_with_the_reason(
    real_pipeline: Callable[..., RealPipeline], tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> None:
    pipeline = real_pipeline()
    content = subtitles_only_mp4(media_directory(tmp_path_factory)).read_bytes()
    with _tutor(pipeline) as http:
        answer = http.post(UPLOAD, files={"file": ("captions only.mp4", content, "video/mp4")})
        assert answer.status_code == 202, answer.text
        queue_id = answer.json()["queue_id"]
        row = pipeline.wait(queue_id, timeout=60)
        assert row["status"] == "failed"
        assert "neither picture nor sound" in row["error"], row["error"]
        assert http.get(f"{STATUS}/{queue_id}").json()["media"] == "video"
        failed = [s["step"] for s in row["steps"] if s["status"] == "failed"]
        assert len(failed) == 1 and failed[0] in ("compress", "audio-convert") and row["retries"] == 0
        links = http.get(f"{STATUS}/{queue_id}/media")
        assert links.status_code == 404, links.text


def test_the_status_says_audio_once_compress_found_sound_without_picture(store: Store) -> None:
    """The status view (SQLite and Postgres) and the aggregate's stand-in for it (projection lag) agree:
    ``media`` is "video" for a video's queue until its compress step says the upload is sound only."""
    app, follower, reader = store.app, store.follower, store.reader
    qid = app.start_processing("tutor-1", "memo.mp4", {"source": "tutor-1/uploads/memo.mp4"})
    other = app.start_processing("tutor-1", "lecture.mp4", {"source": "tutor-1/uploads/lecture.mp4"})
    for queue in (qid, other):
        app.start_step(queue, "compress", 1)
    follower.catch_up()
    assert [(reader.status(str(q)) or {}).get("media") for q in (qid, other)] == ["video", "video"]

    app.complete_step(qid, "compress", 1, {"media": "audio", "playback": "original"}, "ffmpeg", None, 0.1)
    app.complete_step(other, "compress", 1, {"video": "tutor-1/q/compressed.mp4"}, "ffmpeg", "libx264", 1.0)
    follower.catch_up()
    for queue, media in ((qid, "audio"), (other, "video")):
        row = reader.status(str(queue))
        assert row is not None and row["media"] == media
        assert status_from_aggregate(app.repository.get(queue))["media"] == media
