"""The compress and audio-convert steps on ffmpeg, with local-directory storage, on real media."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from handlers.errors import MediaError, PermanentError, StepCancelled
from handlers.media.probe import MediaLimits, probe
from handlers.providers.ffmpeg import CompressionOptions, FfmpegAudioConverter, FfmpegCompressor
from handlers.steps import StepContext, StepJob
from handlers.storage import artifact_key, upload_key
from handlers.storage.local import LocalStorage
from tests import mediafiles

OWNER, QUEUE = "tutor-1", "queue-1"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"


def job(step: str, *, source: str | None = None, inputs: dict[str, dict[str, object]] | None = None) -> StepJob:
    return StepJob(
        queue_id=QUEUE, owner_id=OWNER, attachment_id="attachment-1", step=step, attempt=1,
        options={"source": source} if source else {}, inputs=inputs or {},
    )


def upload(storage: LocalStorage, path: Path) -> str:
    key = upload_key(OWNER, "upload-1", path.suffix)
    storage.put_file(key, path)
    return key


def stored_files(storage: LocalStorage) -> list[str]:
    return sorted(str(p.relative_to(storage.root)) for p in storage.root.rglob("*") if p.is_file())


def recording_context() -> tuple[StepContext, list[int]]:
    seen: list[int] = []
    return StepContext(lambda percent, detail: seen.append(percent), min_interval=0), seen


def test_compress_then_audio_convert(media_dir: Path, storage: LocalStorage, workdir: Path) -> None:
    source = mediafiles.lecture_video(media_dir, 2, size="1920x1080", fps=10)
    source_key = upload(storage, source)

    context, seen = recording_context()
    compressed = FfmpegCompressor(storage, workdir=workdir).run(job("compress", source=source_key), context)

    video_key = artifact_key(OWNER, QUEUE, "compressed")
    assert compressed.provider == "ffmpeg" and compressed.model == "libx264"
    outputs = compressed.outputs
    assert outputs["video"] == video_key
    assert (outputs["width"], outputs["height"]) == (1280, 720)
    assert outputs["duration_seconds"] == pytest.approx(2.0, abs=0.15)
    assert outputs["size_bytes"] == storage.size(video_key)
    assert outputs["source_size_bytes"] == source.stat().st_size > outputs["size_bytes"]
    assert seen == sorted(set(seen)) and seen[-1] >= 95
    assert list(workdir.iterdir()) == []

    context, seen = recording_context()
    converted = FfmpegAudioConverter(storage, workdir=workdir).run(
        job("audio-convert", inputs={"compress": outputs}), context
    )
    audio_key = artifact_key(OWNER, QUEUE, "audio")
    assert converted.outputs == {
        "audio": audio_key,
        "duration_seconds": pytest.approx(2.0, abs=0.15),
        "sample_rate": 16000,
        "channels": 1,
        "codec": "opus",
        "size_bytes": storage.size(audio_key),
    }
    audio = storage.path(audio_key)
    assert probe(audio).audio_codec == "opus"
    assert mediafiles.opus_head(audio) == (1, 16000)
    assert seen and seen[-1] >= 95
    assert list(workdir.iterdir()) == []
    assert stored_files(storage) == sorted([source_key, video_key, audio_key])


def test_the_jfk_recording_goes_through_both_steps(media_dir: Path, storage: LocalStorage) -> None:
    source = mediafiles.jfk_video(media_dir)
    if source is None:
        pytest.skip(f"{mediafiles.JFK_FLAC} is absent")
    context, _ = recording_context()
    compressed = FfmpegCompressor(storage).run(job("compress", source=upload(storage, source)), context)
    converted = FfmpegAudioConverter(storage).run(job("audio-convert", inputs={"compress": compressed.outputs}), context)
    assert converted.outputs["duration_seconds"] == pytest.approx(11.0, abs=1.0)


def test_running_an_attempt_again_replaces_its_artifact(media_dir: Path, storage: LocalStorage) -> None:
    source_key = upload(storage, mediafiles.lecture_video(media_dir, 2, size="320x240", fps=10))
    compressor = FfmpegCompressor(storage)
    first = compressor.run(job("compress", source=source_key), recording_context()[0])
    second = compressor.run(job("compress", source=source_key), recording_context()[0])
    assert first.outputs["video"] == second.outputs["video"]
    assert len(stored_files(storage)) == 2


BAD_FOR = {
    # a recording without picture is played as uploaded (see test_compress_leaves_sound_without_picture_as_uploaded)
    "compress": ["empty", "truncated", "truncated-faststart", "png-renamed", "no-audio", "half-second", "oversized"],
    # a recording without picture is good audio (see test_audio_convert_takes_an_audio_only_upload)
    "audio-convert": ["empty", "truncated", "png-renamed", "no-audio", "half-second", "oversized"],
}
STEPS = {"compress": FfmpegCompressor, "audio-convert": FfmpegAudioConverter}


@pytest.mark.parametrize(("step", "name"), [(step, name) for step, names in BAD_FOR.items() for name in names])
def test_bad_media_fails_at_once_and_writes_nothing(
    media_dir: Path, storage: LocalStorage, workdir: Path, step: str, name: str
) -> None:
    (bad,) = [b for b in mediafiles.bad_media(media_dir) if b.name == name]
    limits = MediaLimits(max_size_bytes=bad.max_size_bytes) if bad.max_size_bytes else MediaLimits()
    source_key = upload(storage, bad.path)
    context, seen = recording_context()

    with pytest.raises(MediaError) as refused:
        STEPS[step](storage, limits=limits, workdir=workdir).run(job(step, source=source_key), context)

    for words in bad.reason_words:
        assert words in str(refused.value)
    assert seen == []  # refused before any work began
    assert stored_files(storage) == [source_key]
    assert not workdir.exists() or list(workdir.iterdir()) == []


def test_an_oversized_upload_is_refused_before_it_is_downloaded(
    media_dir: Path, storage: LocalStorage, workdir: Path
) -> None:
    source_key = upload(storage, mediafiles.oversized_video(media_dir))
    limits = MediaLimits(max_size_bytes=mediafiles.OVERSIZE_LIMIT_BYTES)
    with pytest.raises(MediaError, match="the limit is 32 KB"):
        FfmpegCompressor(storage, limits=limits, workdir=workdir).run(job("compress", source=source_key),
                                                                      recording_context()[0])
    assert not workdir.exists()


def test_a_missing_upload_is_a_permanent_error(storage: LocalStorage) -> None:
    with pytest.raises(PermanentError, match="could not be found"):
        FfmpegCompressor(storage).run(job("compress", source="tutor-1/uploads/gone.mp4"), recording_context()[0])
    with pytest.raises(PermanentError, match="names no uploaded file"):
        FfmpegCompressor(storage).run(job("compress"), recording_context()[0])


def test_audio_convert_without_a_source_is_a_permanent_error(storage: LocalStorage) -> None:
    with pytest.raises(PermanentError, match="names no uploaded file to take the sound from"):
        FfmpegAudioConverter(storage).run(job("audio-convert"), recording_context()[0])


def test_audio_convert_reads_the_uploaded_original(media_dir: Path, storage: LocalStorage, workdir: Path) -> None:
    """The audio step does not wait for compress: it takes the sound from the upload itself."""
    source_key = upload(storage, mediafiles.lecture_video(media_dir, 2, size="1920x1080", fps=10))
    context, seen = recording_context()
    converted = FfmpegAudioConverter(storage, workdir=workdir).run(job("audio-convert", source=source_key), context)
    audio_key = artifact_key(OWNER, QUEUE, "audio")
    assert converted.outputs["audio"] == audio_key
    assert converted.outputs["duration_seconds"] == pytest.approx(2.0, abs=0.15)
    assert mediafiles.opus_head(storage.path(audio_key)) == (1, 16000)
    assert seen and seen[-1] >= 95
    assert stored_files(storage) == sorted([source_key, audio_key])  # no compressed video needed
    assert list(workdir.iterdir()) == []


def test_audio_convert_takes_an_audio_only_upload(media_dir: Path, storage: LocalStorage) -> None:
    """A queue without compress (skip_compress) may be a recording without picture."""
    (recording,) = [b for b in mediafiles.bad_media(media_dir) if b.name == "audio-only"]
    source_key = upload(storage, recording.path)
    converted = FfmpegAudioConverter(storage).run(job("audio-convert", source=source_key), recording_context()[0])
    assert probe(storage.path(converted.outputs["audio"])).audio_codec == "opus"


@pytest.mark.parametrize("extension", [".mp4", ".webm"])
def test_compress_leaves_sound_without_picture_as_uploaded(
    media_dir: Path, storage: LocalStorage, workdir: Path, extension: str
) -> None:
    """A "video" with only sound (a voice memo saved as .mp4, a recorder's .webm) completes compress
    without a compressed file; its outputs say the original plays as uploaded, and audio-convert,
    given them, takes the sound from the original."""
    recording = mediafiles.jfk_sound_only_video(media_dir, extension)
    if recording is None:
        pytest.skip(f"{mediafiles.JFK_FLAC} is absent")
    source_key = upload(storage, recording)
    context, _ = recording_context()
    result = FfmpegCompressor(storage, workdir=workdir).run(job("compress", source=source_key), context)

    outputs = result.outputs
    assert (outputs["media"], outputs["playback"]) == ("audio", "original")
    assert "video" not in outputs
    assert outputs["duration_seconds"] == pytest.approx(11.0, abs=0.5)
    assert outputs["source_size_bytes"] == recording.stat().st_size
    assert outputs["audio_codec"] == {".mp4": "aac", ".webm": "opus"}[extension]
    assert result.provider == "ffmpeg"
    assert stored_files(storage) == [source_key]  # nothing encoded, nothing stored
    assert list(workdir.iterdir()) == []

    converted = FfmpegAudioConverter(storage).run(
        job("audio-convert", source=source_key, inputs={"compress": outputs}), recording_context()[0]
    )
    assert converted.outputs["duration_seconds"] == pytest.approx(11.0, abs=0.5)


def test_a_video_with_neither_picture_nor_sound_still_fails_compress(
    media_dir: Path, storage: LocalStorage, workdir: Path
) -> None:
    source_key = upload(storage, mediafiles.subtitles_only_mp4(media_dir))
    for step in ("compress", "audio-convert"):
        with pytest.raises(MediaError, match="neither picture nor sound"):
            STEPS[step](storage, workdir=workdir).run(job(step, source=source_key), recording_context()[0])
    assert stored_files(storage) == [source_key]


def test_a_too_short_recording_without_picture_fails_compress_with_the_reason(
    media_dir: Path, storage: LocalStorage
) -> None:
    """Sound without picture passes compress only on the audio step's own checks (here: the length)."""
    (recording,) = [b for b in mediafiles.bad_media(media_dir) if b.name == "audio-only"]  # 2 s of tone
    source_key = upload(storage, recording.path)
    with pytest.raises(MediaError, match="only 2 seconds long"):
        FfmpegCompressor(storage, limits=MediaLimits(min_duration_seconds=3)).run(
            job("compress", source=source_key), recording_context()[0]
        )
    assert stored_files(storage) == [source_key]


def test_cancelling_compression_stores_nothing_and_cleans_up(
    media_dir: Path, storage: LocalStorage, workdir: Path
) -> None:
    source_key = upload(storage, mediafiles.lecture_video(media_dir, 6, size="1920x1080", fps=10))
    context, _ = recording_context()
    threading.Timer(0.5, context.cancel).start()
    compressor = FfmpegCompressor(storage, options=CompressionOptions(preset="veryslow"), workdir=workdir)
    with pytest.raises(StepCancelled):
        compressor.run(job("compress", source=source_key), context)
    assert stored_files(storage) == [source_key]
    assert list(workdir.iterdir()) == []
