"""The Cloudinary compress and audio-convert providers, through the official SDK,
against the local Cloudinary-compatible server on loopback (``local.cloudinary``)
with LocalStorage in a temporary directory.

Parts of Cloudinary's API the local server covers for these tests: signed
chunked video uploads to ``/v1_1/<cloud>/video/upload`` (``X-Unique-Upload-Id``
+ ``Content-Range``, as ``upload_large`` sends), eager transformations done with
ffmpeg (``c_limit,h_720``, ``vc_h264``, ``ac_aac``, ``q_auto`` → mp4;
``ac_vorbis,af_16000`` → ogg), inline or ``eager_async`` (delivery answers 423
until ready), delivery URLs ``/<cloud>/video/upload/<transformation>/v<version>/<id>.<fmt>``
as ``cloudinary_url`` builds them, Cloudinary's 401 JSON for bad signatures,
keys and cloud names, 400 ``Invalid video file`` for undecodable uploads, and
503 + ``Retry-After`` while the outage switch is on.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudinary
import pytest
from tests.local.cloudinary_support import API_KEY, API_SECRET, CLOUD, make_png, make_video, server_settings, streams

from handlers.errors import MediaError, PermanentError, StepCancelled, TransientError
from handlers.providers.cloudinary import (
    CloudinaryAudioConverter,
    CloudinaryCompressor,
    CloudinaryConfig,
    classify,
)
from handlers.steps import StepContext, StepJob
from handlers.storage import artifact_key, upload_key
from handlers.storage.local import LocalStorage
from local.cloudinary.threaded import ThreadedCloudinary
from tests import mediafiles

OWNER, QUEUE = "tutor-1", "queue-1"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "lecture.mp4")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadedCloudinary]:
    with ThreadedCloudinary(server_settings(tmp_path / "cloudinary")) as running:
        yield running


def config_for(server: ThreadedCloudinary, **overrides: Any) -> CloudinaryConfig:
    fields: dict[str, Any] = {
        "cloud_name": CLOUD,
        "api_key": API_KEY,
        "api_secret": API_SECRET,
        "upload_prefix": server.url,
        "delivery_base": server.url,
        "chunk_size": 256 * 1024,
        "request_timeout_s": 30,
        "derive_timeout_s": 30,
        "poll_interval_s": 0.05,
    }
    return CloudinaryConfig(**{**fields, **overrides})


def job_for(storage: LocalStorage, source: Path, step: str = "compress", **inputs: dict[str, Any]) -> StepJob:
    key = upload_key(OWNER, "upload-1", source.suffix)
    storage.put_file(key, source)
    return StepJob(QUEUE, OWNER, "attachment-1", step, 1, {"source": key}, dict(inputs))


class Progress:
    def __init__(self) -> None:
        self.reports: list[tuple[int, str | None]] = []
        self.context = StepContext(lambda percent, detail: self.reports.append((percent, detail)), min_interval=0)

    @property
    def percents(self) -> list[int]:
        return [percent for percent, _ in self.reports]


@pytest.mark.parametrize("eager_async", [True, False], ids=["eager-async", "eager-inline"])
def test_compress_then_audio_convert(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path, tmp_path: Path, eager_async: bool
) -> None:
    config = config_for(server, eager_async=eager_async)
    progress = Progress()
    global_config = dict(vars(cloudinary.config()))
    result = CloudinaryCompressor(storage, config).run(job_for(storage, video), progress.context)
    assert dict(vars(cloudinary.config())) == global_config, "the SDK's global config is never written"

    outputs = result.outputs
    assert result.provider == "cloudinary"
    assert outputs["video"] == artifact_key(OWNER, QUEUE, "compressed")
    assert (outputs["width"], outputs["height"]) == (1280, 720)
    assert outputs["duration_seconds"] == pytest.approx(2, abs=0.1)
    assert outputs["size_bytes"] == storage.size(outputs["video"]) > 0
    assert outputs["source_size_bytes"] == video.stat().st_size
    assert outputs["cloudinary_public_id"] == f"vidpipe/{OWNER}/{QUEUE}"
    compressed = streams(storage.download(outputs["video"], tmp_path / "compressed.mp4"))
    assert compressed["video"]["codec_name"] == "h264" and compressed["video"]["height"] <= 720
    assert compressed["audio"]["codec_name"] == "aac"
    assert progress.percents == sorted(progress.percents) and progress.percents[-1] == 100
    uploads = [percent for percent, detail in progress.reports if detail == "uploading to Cloudinary"]
    assert len(uploads) >= 3, "progress follows the uploaded chunks"

    audio_job = StepJob(QUEUE, OWNER, "attachment-1", "audio-convert", 1, {}, {"compress": outputs})
    audio = CloudinaryAudioConverter(storage, config).run(audio_job, Progress().context).outputs
    assert audio["audio"] == artifact_key(OWNER, QUEUE, "audio")
    assert audio["cloudinary_public_id"] == outputs["cloudinary_public_id"]
    probed = streams(storage.download(audio["audio"], tmp_path / "audio.ogg"))
    assert "video" not in probed
    assert (probed["audio"]["codec_name"], probed["audio"]["sample_rate"], probed["audio"]["channels"]) == (
        "vorbis",
        "16000",
        1,
    )
    assert audio["size_bytes"] == storage.size(audio["audio"])


def test_audio_convert_uploads_the_original_when_compress_ran_elsewhere(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path, tmp_path: Path
) -> None:
    job = job_for(storage, video, "audio-convert", compress={"video": "elsewhere.mp4"})
    outputs = CloudinaryAudioConverter(storage, config_for(server)).run(job, Progress().context).outputs
    assert outputs["duration_seconds"] == pytest.approx(2, abs=0.1)
    assert streams(storage.download(outputs["audio"], tmp_path / "a.ogg"))["audio"]["sample_rate"] == "16000"
    # its own asset: compress, running beside it, uploads to the queue's public id
    assert outputs["cloudinary_public_id"] == f"vidpipe/{OWNER}/{QUEUE}-audio"


def test_audio_convert_beside_compress_uploads_its_own_asset(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path, tmp_path: Path
) -> None:
    """Steps as a graph: audio-convert starts before compress completed, from the original."""
    audio = CloudinaryAudioConverter(storage, config_for(server)).run(
        job_for(storage, video, "audio-convert"), Progress().context).outputs
    compressed = CloudinaryCompressor(storage, config_for(server)).run(job_for(storage, video), Progress().context).outputs
    assert audio["cloudinary_public_id"] != compressed["cloudinary_public_id"]
    assert storage.exists(audio["audio"]) and storage.exists(compressed["video"])


@pytest.mark.parametrize("extension", [".mp4", ".webm"])
def test_sound_without_picture_is_not_sent_to_be_a_video_and_its_sound_is_converted(
    server: ThreadedCloudinary, storage: LocalStorage, tmp_path: Path, extension: str
) -> None:
    """compress probes the original first: a "video" with only sound completes without an upload or
    a compressed file, saying the original plays as uploaded; audio-convert uploads it for its sound."""
    recording = mediafiles.jfk_sound_only_video(tmp_path, extension)
    if recording is None:
        pytest.skip(f"{mediafiles.JFK_FLAC} is absent")
    config = config_for(server)
    job = job_for(storage, recording)
    result = CloudinaryCompressor(storage, config).run(job, Progress().context)

    outputs = result.outputs
    assert result.provider == "cloudinary"
    assert (outputs["media"], outputs["playback"]) == ("audio", "original")
    assert "video" not in outputs and "cloudinary_public_id" not in outputs
    assert outputs["duration_seconds"] == pytest.approx(11.0, abs=0.5)
    assert outputs["source_size_bytes"] == recording.stat().st_size
    assert server.app.state.store.get(f"vidpipe/{OWNER}/{QUEUE}") is None, "nothing was uploaded"
    assert not storage.exists(artifact_key(OWNER, QUEUE, "compressed"))

    audio_job = StepJob(QUEUE, OWNER, "attachment-1", "audio-convert", 1, job.options, {"compress": outputs})
    audio = CloudinaryAudioConverter(storage, config).run(audio_job, Progress().context).outputs
    assert audio["cloudinary_public_id"] == f"vidpipe/{OWNER}/{QUEUE}-audio"
    probed = streams(storage.download(audio["audio"], tmp_path / "audio.ogg"))
    assert "video" not in probed and probed["audio"]["sample_rate"] == "16000"
    assert audio["duration_seconds"] == pytest.approx(11.0, abs=0.5)


def test_a_video_with_neither_picture_nor_sound_is_still_a_media_error(
    server: ThreadedCloudinary, storage: LocalStorage, tmp_path: Path
) -> None:
    with pytest.raises(MediaError, match="neither picture nor sound"):
        CloudinaryCompressor(storage, config_for(server)).run(
            job_for(storage, mediafiles.subtitles_only_mp4(tmp_path)), Progress().context
        )
    assert not storage.exists(artifact_key(OWNER, QUEUE, "compressed"))
    assert server.app.state.store.get(f"vidpipe/{OWNER}/{QUEUE}") is None, "refused before the upload"


@pytest.mark.parametrize(
    "overrides", [{"api_secret": "wrong"}, {"api_key": "000"}, {"cloud_name": "not-ours"}], ids=str
)
def test_bad_credentials_are_permanent_and_name_cloudinary_url(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path, overrides: dict[str, Any]
) -> None:
    with pytest.raises(PermanentError, match="CLOUDINARY_URL") as raised:
        CloudinaryCompressor(storage, config_for(server, **overrides)).run(job_for(storage, video), Progress().context)
    assert not raised.value.transient and "401" in str(raised.value)


def test_outage_during_upload_is_transient(server: ThreadedCloudinary, storage: LocalStorage, video: Path) -> None:
    server.outage.set(1)
    with pytest.raises(TransientError, match="503"):
        CloudinaryCompressor(storage, config_for(server)).run(job_for(storage, video), Progress().context)


def test_outage_during_delivery_is_transient_with_the_servers_hint(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path
) -> None:
    config = config_for(server)
    outputs = CloudinaryCompressor(storage, config).run(job_for(storage, video), Progress().context).outputs
    server.outage.set(1)
    audio_job = StepJob(QUEUE, OWNER, "attachment-1", "audio-convert", 1, {}, {"compress": outputs})
    with pytest.raises(TransientError, match="503") as raised:
        CloudinaryAudioConverter(storage, config).run(audio_job, Progress().context)
    assert raised.value.retry_after == 5


def test_unreachable_cloudinary_is_transient(storage: LocalStorage, video: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = CloudinaryConfig(CLOUD, API_KEY, API_SECRET, upload_prefix=closed, delivery_base=closed)
    with pytest.raises(TransientError, match="could not be reached"):
        CloudinaryCompressor(storage, config).run(job_for(storage, video), Progress().context)


def test_a_png_renamed_mp4_is_a_media_error(server: ThreadedCloudinary, storage: LocalStorage, tmp_path: Path) -> None:
    fake = make_png(tmp_path / "slide.png").rename(tmp_path / "slide.mp4")
    with pytest.raises(MediaError, match="could not be read as a video") as raised:
        CloudinaryCompressor(storage, config_for(server)).run(job_for(storage, fake), Progress().context)
    assert "Invalid video file" in str(raised.value)


def test_an_empty_file_is_a_media_error(server: ThreadedCloudinary, storage: LocalStorage, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        CloudinaryCompressor(storage, config_for(server)).run(job_for(storage, empty), Progress().context)


def test_a_missing_original_is_permanent(server: ThreadedCloudinary, storage: LocalStorage) -> None:
    job = StepJob(QUEUE, OWNER, "attachment-1", "compress", 1, {"source": "tutor-1/uploads/gone.mp4"}, {})
    with pytest.raises(PermanentError, match="no longer in storage"):
        CloudinaryCompressor(storage, config_for(server)).run(job, Progress().context)


def test_cancellation_stops_the_upload_between_chunks(
    server: ThreadedCloudinary, storage: LocalStorage, video: Path
) -> None:
    progress = Progress()

    def cancel_after_first_chunk(percent: int, detail: str | None) -> None:
        progress.reports.append((percent, detail))
        if detail == "uploading to Cloudinary":
            context.cancel()

    context = StepContext(cancel_after_first_chunk, min_interval=0)
    with pytest.raises(StepCancelled):
        CloudinaryCompressor(storage, config_for(server)).run(job_for(storage, video), context)
    assert [d for _, d in progress.reports].count("uploading to Cloudinary") == 1
    assert not storage.exists(artifact_key(OWNER, QUEUE, "compressed"))


def test_config_from_cloudinary_url() -> None:
    plain = CloudinaryConfig.from_url("cloudinary://key:secret@lectures")
    assert (plain.cloud_name, plain.api_key, plain.api_secret) == ("lectures", "key", "secret")
    assert plain.upload_prefix == "https://api.cloudinary.com"
    assert "secret" not in repr(plain)
    assert plain.delivery_url("vidpipe/t/q", 17, {"crop": "limit", "height": 720}, "mp4") == (
        "https://res.cloudinary.com/lectures/video/upload/c_limit,h_720/v17/vidpipe/t/q.mp4"
    )
    local = CloudinaryConfig.from_url(
        "cloudinary://key:secret@lectures?upload_prefix=http://127.0.0.1:9000",
        delivery_base="http://127.0.0.1:9000",
    )
    assert local.upload_prefix == "http://127.0.0.1:9000"
    assert local.delivery_url("a", 1, {}, "ogg") == "http://127.0.0.1:9000/lectures/video/upload/v1/a.ogg"
    private = CloudinaryConfig.from_url("cloudinary://key:secret@lectures/media.example.org")
    assert private.delivery_url("a", 1, {}, "mp4") == "https://media.example.org/video/upload/v1/a.mp4"
    with pytest.raises(ValueError, match="cloudinary://"):
        CloudinaryConfig.from_url("https://key:secret@lectures")


@pytest.mark.parametrize(
    ("status", "message", "kind", "transient"),
    [
        (420, "Rate Limit Exceeded", TransientError, True),
        (429, "Too Many Requests", TransientError, True),
        (500, "General Error", TransientError, True),
        (502, "<html>Bad Gateway</html>", TransientError, True),
        (401, "Invalid Signature", PermanentError, False),
        (403, "Forbidden", PermanentError, False),
        (400, "Invalid video file", MediaError, False),
        (400, "File size too large. Got 2000000000. Maximum is 104857600.", MediaError, False),
        (400, "Invalid transformation component - e_sepia", PermanentError, False),
    ],
)
def test_classification(status: int, message: str, kind: type[Exception], transient: bool) -> None:
    error = classify(status, message, retry_after=7)
    assert type(error) is kind and error.transient is transient
    if transient:
        assert error.retry_after == 7
