"""The embedded default for the compress and audio-convert steps: ffmpeg on this machine.

Each provider downloads its input from storage into a temporary work
directory, runs ffmpeg on files (never holding a video in memory), uploads
the result under the queue's artifact key and removes the work directory.
Re-running an attempt overwrites the same key, so redelivery is harmless.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from handlers.errors import MediaError, PermanentError, TransientError
from handlers.media.ffmpeg import compress, extract_audio
from handlers.media.probe import MediaInfo, MediaLimits, check_size, probe, validate_upload
from handlers.providers.recordings import played_as_recorded, sound_without_picture
from handlers.steps import StepContext, StepJob, StepResult
from handlers.storage import ArtifactNotFound, Storage, StorageError, StoredObject, artifact_key

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompressionOptions:
    """How the compress step encodes; see :func:`handlers.media.ffmpeg.compress` for the reasons."""

    max_height: int = 720
    crf: int = 28
    preset: str = "veryfast"
    max_bitrate: str | None = "2M"
    max_fps: float | None = 30
    audio_bitrate: str = "96k"


@dataclass
class FfmpegCompressor:
    """Step ``compress``: the upload at ``job.options["source"]`` → a 720p H.264/AAC MP4.

    The upload is checked before any work: its size before it is downloaded,
    then what ffprobe finds (see :func:`validate_upload`); an unusable file
    fails at once with a :class:`MediaError` and nothing is written. A file
    with sound but no picture (a voice memo saved as ``.mp4``) is an audio
    recording: it passes the audio step's checks, nothing is encoded or
    stored, and the step completes with outputs that say the original plays
    as uploaded (:func:`~handlers.providers.recordings.played_as_recorded`).
    """

    storage: Storage
    limits: MediaLimits = field(default_factory=MediaLimits)
    options: CompressionOptions = field(default_factory=CompressionOptions)
    workdir: Path | None = None
    """Parent of the temporary work directories (default: the system's temp dir)."""
    ffmpeg: str | None = None
    """``None``: the one :mod:`handlers.media.tools` resolves (``VIDPIPE_FFMPEG``, packaged, ``PATH``)."""
    ffprobe: str | None = None
    """``None``: the one :mod:`handlers.media.tools` resolves."""
    name: str = "ffmpeg"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        source_key = job.options.get("source")
        if not isinstance(source_key, str) or not source_key:
            raise PermanentError("The queue names no uploaded file to compress.")
        check_size(_stored_size(self.storage, source_key), self.limits)
        with _work_directory(self.workdir, "compress") as work:
            source = _download(self.storage, source_key, work / ("source" + _suffix(source_key)))
            context.check()
            info = probe(source, ffprobe=self.ffprobe)
            if sound_without_picture(info):
                _validate_sound_source(info, self.limits)
                logger.info("queue %s: the upload has sound but no picture; it plays as uploaded", job.queue_id)
                return StepResult(outputs=played_as_recorded(info), provider=self.name)
            validate_upload(info, self.limits)
            context.report(2, "compressing")
            target = work / "compressed.mp4"
            opts = self.options
            compress(
                source, target, context, info.duration,
                max_height=opts.max_height, crf=opts.crf, preset=opts.preset,
                max_bitrate=opts.max_bitrate, max_fps=opts.max_fps, audio_bitrate=opts.audio_bitrate,
                span=(2.0, 97.0), ffmpeg=self.ffmpeg,
            )
            result = _readable_output(target, self.ffprobe, "compressed video")
            context.check()
            context.report(98, "storing")
            key = artifact_key(job.owner_id, job.queue_id, "compressed")
            stored = _upload(self.storage, key, target)
        logger.info(
            "queue %s: compressed %d → %d bytes (%sx%s)",
            job.queue_id, info.size_bytes, stored.size, result.width, result.height,
        )
        return StepResult(
            outputs={
                "video": key,
                "duration_seconds": result.duration,
                "width": result.width,
                "height": result.height,
                "size_bytes": stored.size,
                "source_size_bytes": info.size_bytes,
            },
            provider=self.name,
            model="libx264",
        )


@dataclass
class FfmpegAudioConverter:
    """Step ``audio-convert``: the uploaded original → mono 16 kHz Opus speech audio in Ogg.

    Reads the upload at ``job.options["source"]`` (so it runs beside the compress
    step, not after it) and checks it as compress does before any work: the size
    before the download, then what ffprobe finds. A queue without compress
    (``skip_compress``) may have an audio-only upload; it needs sound either way.
    Only a queue without a stored source (none today) reads the compressed video.
    """

    storage: Storage
    bitrate: str = "24k"
    workdir: Path | None = None
    ffmpeg: str | None = None
    """``None``: the one :mod:`handlers.media.tools` resolves (``VIDPIPE_FFMPEG``, packaged, ``PATH``)."""
    ffprobe: str | None = None
    """``None``: the one :mod:`handlers.media.tools` resolves."""
    limits: MediaLimits = field(default_factory=MediaLimits)
    name: str = "ffmpeg"

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        source_key = job.options.get("source")
        from_original = isinstance(source_key, str) and bool(source_key)
        if not from_original:
            source_key = (job.inputs.get("compress") or {}).get("video")
            if not isinstance(source_key, str) or not source_key:
                raise PermanentError("The queue names no uploaded file to take the sound from.")
        if from_original:
            check_size(_stored_size(self.storage, source_key), self.limits)
        with _work_directory(self.workdir, "audio") as work:
            video = _download(self.storage, source_key, work / ("source" + _suffix(source_key)))
            context.check()
            info = probe(video, ffprobe=self.ffprobe)
            if from_original:
                _validate_sound_source(info, self.limits)
            if not info.has_audio:
                raise MediaError("The video has no sound track, so it cannot be transcribed.")
            context.report(2, "extracting audio")
            target = work / "audio.ogg"
            extract_audio(
                video, target, context, info.duration, bitrate=self.bitrate, span=(2.0, 97.0), ffmpeg=self.ffmpeg,
            )
            result = _readable_output(target, self.ffprobe, "sound track")
            context.check()
            context.report(98, "storing")
            key = artifact_key(job.owner_id, job.queue_id, "audio")
            stored = _upload(self.storage, key, target)
        return StepResult(
            outputs={
                "audio": key,
                "duration_seconds": result.duration,
                "sample_rate": 16000,
                "channels": 1,
                "codec": "opus",
                "size_bytes": stored.size,
            },
            provider=self.name,
            model="libopus",
        )


# ------------------------------------------------------------------ helpers
def _validate_sound_source(info: MediaInfo, limits: MediaLimits) -> None:
    """The upload's checks for the audio step: those of compress, but a recording without picture passes."""
    if info.has_audio and not info.has_video:
        info = dataclasses.replace(info, has_video=True)  # audio-only: the picture is not needed here
    validate_upload(info, limits)


@contextmanager
def _work_directory(parent: Path | None, step: str) -> Iterator[Path]:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"vidpipe-{step}-", dir=parent) as name:
        yield Path(name)


def _suffix(key: str) -> str:
    """The key's extension when it looks like one (a hint for ffprobe; content decides)."""
    suffix = PurePosixPath(key).suffix.lower()
    return suffix if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else ""


def _stored_size(storage: Storage, key: str) -> int:
    try:
        return storage.size(key)
    except ArtifactNotFound:
        raise PermanentError("The uploaded file could not be found in storage; please upload it again.") from None
    except StorageError as error:
        raise TransientError(f"storage ({storage.name}) failed: {error}") from error


def _download(storage: Storage, key: str, destination: Path) -> Path:
    try:
        return storage.download(key, destination)
    except ArtifactNotFound:
        raise PermanentError(f"The file {key} could not be found in storage.") from None
    except StorageError as error:
        raise TransientError(f"storage ({storage.name}) failed: {error}") from error


def _upload(storage: Storage, key: str, source: Path) -> StoredObject:
    try:
        return storage.put_file(key, source)
    except StorageError as error:
        raise TransientError(f"storage ({storage.name}) failed: {error}") from error


def _readable_output(path: Path, ffprobe: str | None, what: str) -> MediaInfo:
    """Probe what ffmpeg wrote; an unreadable result is our failure, not the tutor's."""
    try:
        return probe(path, ffprobe=ffprobe)
    except MediaError as error:
        raise PermanentError(f"ffmpeg wrote an unreadable {what}: {error}") from error
