"""Audio-only uploads (a podcast-style lecture, a voice recording), on SQLite and Postgres.

An audio file is recognised by name or declared type, confirmed by ffprobe on
the stored file, and gets the graph without compress (audio-convert →
transcribe → embed), recorded in ``Created`` as ``media: "audio"``. The first
test runs the real steps (ffmpeg, the reference Whisper and embedding servers)
behind real HTTP; the others need only the upload's checks, so their steps are
simulated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.token import mint
from tests.api.conftest import Client, fake_video
from tests.api.recording_support import assert_transcribed_and_plays_the_original, needs_jfk
from tests.handlers.conftest import Pipeline
from tests.mediafiles import JFK_FLAC, ffmpeg, jfk_audio, media_directory, subtitles_only, video_without_audio
from tests.support import wait_until
from tests.test_end_to_end import RealPipeline, real_pipeline  # noqa: F401 - the fixture is used here

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
UPLOAD = "/api/video-processing/upload"
AUDIO_STEPS = ["audio-convert", "transcribe", "embed"]
AUDIO_GRAPH = {"audio-convert": [], "transcribe": ["audio-convert"], "embed": ["transcribe"]}
CONTENT_TYPES = {".flac": "audio/flac", ".mp3": "audio/mpeg", ".m4a": "audio/mp4", ".ogg": "audio/ogg",
                 ".wav": "audio/wav"}


def _uploads(storage_dir: Path | str, owner: str) -> list[str]:
    folder = Path(storage_dir) / owner / "uploads"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return media_directory(tmp_path_factory)


def _jfk(media: Path, extension: str) -> Path:
    path = jfk_audio(media, extension)
    assert path is not None
    return path


@needs_jfk
def test_audio_recordings_are_transcribed_captioned_and_searchable_without_a_compress_step(
    real_pipeline: Callable[..., RealPipeline], media: Path  # noqa: F811
) -> None:
    pipeline = real_pipeline()
    token = mint(pipeline.settings, "tutor-1", "tutor")
    with httpx.Client(base_url=pipeline.api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        sent: dict[str, tuple[str, bytes]] = {}
        for extension in (".flac", ".mp3", ".m4a"):
            content = _jfk(media, extension).read_bytes()
            answer = http.post(UPLOAD, files={"file": (f"lecture{extension}", content, CONTENT_TYPES[extension])})
            assert answer.status_code == 202, answer.text
            sent[extension] = (answer.json()["queue_id"], content)

        for extension, (queue_id, content) in sent.items():
            assert pipeline.wait(queue_id)["status"] == "completed", extension
            status = http.get(f"/api/video-processing/status/{queue_id}").json()
            assert status["media"] == "audio" and status["filename"] == f"lecture{extension}"
            assert [s["step"] for s in status["steps"]] == AUDIO_STEPS
            assert status["progress_percentage"] == 100
            created, *rest = pipeline.store.app.queue_events(queue_id)
            assert created.options["media"] == "audio"
            assert (created.steps, created.graph) == (AUDIO_STEPS, AUDIO_GRAPH)
            assert all(getattr(event, "step", None) != "compress" for event in rest)
            timeline = http.get(f"/api/video-processing/status/{queue_id}/events").json()["events"]
            assert "compress" not in {entry["step"] for entry in timeline}

            assert_transcribed_and_plays_the_original(http, queue_id, content, CONTENT_TYPES[extension])

        flac_queue = sent[".flac"][0]
        found = wait_until(
            lambda: (hits := http.get("/api/search", params={"q": "ask what you can do for your country",
                                                             "queue_id": flac_queue}).json()["moments"]) and hits,
            30, "the recording's moments to be searchable",
        )
        assert found[0]["queue_id"] == flac_queue and found[0]["filename"] == "lecture.flac"


@needs_jfk
def test_skip_compress_on_an_audio_recording_is_harmless(served: Served, clients: Clients, media: Path) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    answer = tutor.upload(_jfk(media, ".mp3").read_bytes(), filename="talk.mp3", content_type="audio/mpeg",
                          params={"skip_compress": "true"})
    assert answer.status_code == 202, answer.text
    created = pipeline.events(answer.json()["queue_id"])[0]
    assert created.options["media"] == "audio" and created.options["skip_compress"] is True
    assert (created.steps, created.graph) == (AUDIO_STEPS, AUDIO_GRAPH)
    assert tutor.wait_for(answer.json()["queue_id"])["status"] == "completed"


@needs_jfk
def test_audio_is_told_by_probing_not_by_name_alone(served: Served, clients: Clients, media: Path) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    # WebM audio as a browser's recorder sends it: a container videos use too, declared audio/webm
    webm = media / "jfk-recorder.webm"
    if not webm.exists():
        ffmpeg("-i", str(JFK_FLAC), "-c:a", "libopus", "-f", "webm", str(webm))
    recorded = tutor.upload(webm.read_bytes(), filename="recording.webm", content_type="audio/webm")
    assert recorded.status_code == 202, recorded.text
    assert pipeline.events(recorded.json()["queue_id"])[0].options["media"] == "audio"
    # a video in an audio container (sound and picture) is processed as the video it is
    video = tutor.upload(fake_video(seed=9), filename="lecture.mp4", content_type="video/mp4")
    assert "media" not in pipeline.events(video.json()["queue_id"])[0].options
    status = tutor.status(video.json()["queue_id"])
    assert status["media"] == "video" and status["steps"][0]["step"] == "compress"


@needs_jfk
def test_broken_and_soundless_audio_files_are_refused_and_nothing_is_kept(
    served: Served, clients: Clients, media: Path
) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    flac = JFK_FLAC.read_bytes()
    refused: dict[str, tuple[httpx.Response, int, tuple[str, ...]]] = {
        "text renamed .mp3": (tutor.upload(b"These are my lecture notes, not a recording.\n" * 20,
                                           filename="notes.mp3", content_type="audio/mpeg"),
                              415, ("does not look like an audio recording",)),
        "broken flac": (tutor.upload(flac[:4] + bytes(range(256)) * 40, filename="broken.flac",
                                     content_type="audio/flac"),
                        422, ("could not be read as an audio recording", "nothing was kept")),
        "neither sound nor picture": (tutor.upload(subtitles_only(media).read_bytes(), filename="empty-talk.mka",
                                                   content_type="audio/x-matroska"),
                                      422, ("has no sound",)),
        "a silent video named .m4a": (tutor.upload(video_without_audio(media).read_bytes(), filename="silent.m4a",
                                                   content_type="audio/mp4"),
                                      422, ("has no sound",)),
        "empty": (tutor.upload(b"", filename="voice.wav", content_type="audio/wav"), 415, ("is empty",)),
        "a document declared as audio": (tutor.upload(b"%PDF-1.7" * 100, filename="slides.pdf",
                                                      content_type="audio/mpeg"),
                                         415, ("upload a video", "or an audio recording")),
    }
    for why, (response, code, words) in refused.items():
        assert response.status_code == code, (why, response.text)
        error = response.json()["error"]
        assert all(word in error for word in words), (why, error)
    assert _uploads(pipeline.settings.storage_dir, "tutor-a") == []
    assert tutor.get("/api/video-processing/queue").json()["items"] == []
    assert pipeline.store.app.recorder.max_notification_id() in (None, 0)
    # the same recording, whole, goes through
    assert tutor.upload(flac, filename="whole.flac", content_type="audio/flac").status_code == 202


@needs_jfk
def test_an_attachment_already_stored_is_probed_and_kept_when_refused(
    served: Served, clients: Clients, media: Path
) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    uploads = Path(pipeline.settings.storage_dir) / "tutor-a" / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "talk.m4a").write_bytes(_jfk(media, ".m4a").read_bytes())
    (uploads / "garbled.ogg").write_bytes(b"OggS" + b"\x00" * 500)
    good = tutor.request("POST", UPLOAD, json={"attachment_id": "talk.m4a"})
    assert good.status_code == 202, good.text
    created = pipeline.events(good.json()["queue_id"])[0]
    assert created.options["media"] == "audio" and created.steps == AUDIO_STEPS
    bad = tutor.request("POST", UPLOAD, json={"attachment_id": "garbled.ogg"})
    assert bad.status_code == 422 and "the attachment is left as it was" in bad.json()["error"], bad.text
    assert (uploads / "garbled.ogg").exists()


@needs_jfk
def test_a_batch_mixes_videos_and_audio_recordings(served: Served, clients: Clients, media: Path) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    files: list[tuple[str, tuple[str, bytes, str]]] = [
        ("file", ("week 1.mp4", fake_video(120_000, seed=1), "video/mp4")),
        ("file", ("week 1 q&a.mp3", _jfk(media, ".mp3").read_bytes(), "audio/mpeg")),
        ("file", ("broken.flac", b"fLaC" + b"\x7f" * 3000, "audio/flac")),
        ("file", ("week 2.wav", _jfk(media, ".wav").read_bytes(), "audio/wav")),
    ]
    response = tutor.request("POST", "/api/batches", files=files)
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    assert (body["accepted"], body["refused"]) == (3, 1)
    video, mp3, broken, wav = body["files"]
    assert "could not be read as an audio recording" in broken["error"] and broken["queue_id"] is None
    assert "compress" in pipeline.events(video["queue_id"])[0].steps
    for item in (mp3, wav):
        created = pipeline.events(item["queue_id"])[0]
        assert created.options["media"] == "audio" and created.options["batch_id"] == body["batch_id"]
        assert created.steps == AUDIO_STEPS
    assert len(_uploads(pipeline.settings.storage_dir, "tutor-a")) == 3, "nothing of the broken file is stored"
    done = wait_until(lambda: (s := tutor.get(f"/api/batches/{body['batch_id']}").json())["done"] and s, 30, "batch")
    assert done["counts"] == {"completed": 3}
    assert [f["status"]["media"] for f in done["files"] if f["status"]] == ["video", "audio", "audio"]
