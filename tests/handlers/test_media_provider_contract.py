"""One contract, both implementations: the compress and audio-convert providers of
production (Cloudinary, through the official SDK against the local Cloudinary
server) and of the embedded default (ffmpeg) must behave the same way for the
pipeline: same inputs, same artifact keys, same kind of output, same errors.

Cloudinary API parts exercised: signed chunked upload with eager transformations,
delivery of the derived video and audio, 400 for an undecodable upload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from handlers.errors import MediaError, PermanentError
from handlers.providers.cloudinary import CloudinaryAudioConverter, CloudinaryCompressor
from handlers.providers.ffmpeg import FfmpegAudioConverter, FfmpegCompressor
from handlers.steps import StepContext, StepJob, StepProvider
from handlers.storage import artifact_key, upload_key
from handlers.storage.local import LocalStorage
from local.cloudinary.threaded import ThreadedCloudinary
from tests.handlers.test_cloudinary_providers import config_for
from tests.local.cloudinary_support import make_png, make_video, server_settings, streams

OWNER, QUEUE = "tutor-1", "queue-1"


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("media") / "lecture.mp4", size="1920x1080", seconds=2)


@pytest.fixture(params=["ffmpeg", "cloudinary"])
def providers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[StepProvider, StepProvider, LocalStorage]]:
    storage = LocalStorage(tmp_path / "storage")
    if request.param == "ffmpeg":
        yield FfmpegCompressor(storage, workdir=tmp_path / "work"), FfmpegAudioConverter(storage, workdir=tmp_path / "work"), storage
        return
    with ThreadedCloudinary(server_settings(tmp_path / "cloudinary")) as server:
        config = config_for(server)
        yield CloudinaryCompressor(storage, config), CloudinaryAudioConverter(storage, config), storage


def job(storage: LocalStorage, source: Path, step: str, inputs: dict | None = None) -> StepJob:
    key = upload_key(OWNER, "upload-1", source.suffix)
    if not storage.exists(key):
        storage.put_file(key, source)
    return StepJob(QUEUE, OWNER, "attachment-1", step, 1, {"source": key}, inputs or {})


def test_compress_then_audio_give_the_same_kind_of_artifacts(providers, video: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    compressor, audio_converter, storage = providers
    seen: list[int] = []
    context = StepContext(lambda percent, _: seen.append(percent), min_interval=0)

    compressed = compressor.run(job(storage, video, "compress"), context)
    assert compressed.outputs["video"] == artifact_key(OWNER, QUEUE, "compressed")
    local = storage.download(compressed.outputs["video"], tmp_path / "compressed.mp4")
    found = streams(local)
    assert found["video"]["codec_name"] == "h264" and found["audio"]["codec_name"] == "aac"
    assert int(found["video"]["height"]) == 720 and compressed.outputs["height"] == 720
    assert seen and seen == sorted(seen)

    converted = audio_converter.run(job(storage, video, "audio-convert", {"compress": compressed.outputs}), context)
    assert converted.outputs["audio"] == artifact_key(OWNER, QUEUE, "audio")
    audio = storage.download(converted.outputs["audio"], tmp_path / "audio.ogg")
    found = streams(audio)
    assert "video" not in found and found["audio"]["codec_name"] in ("opus", "vorbis")
    assert int(found["audio"]["channels"]) == 1


def test_a_png_renamed_mp4_is_a_media_error_for_both(providers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    compressor, _, storage = providers
    png = make_png(tmp_path / "slide.png").rename(tmp_path / "lecture.mp4")
    with pytest.raises(MediaError):
        compressor.run(job(storage, png, "compress"), StepContext(lambda *_: None))
    assert not storage.exists(artifact_key(OWNER, QUEUE, "compressed"))


def test_a_missing_original_is_permanent_for_both(providers) -> None:  # type: ignore[no-untyped-def]
    compressor, _, storage = providers
    missing = StepJob(QUEUE, OWNER, "attachment-1", "compress", 1, {"source": upload_key(OWNER, "nope", ".mp4")}, {})
    with pytest.raises(PermanentError):
        compressor.run(missing, StepContext(lambda *_: None))
