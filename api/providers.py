"""Choosing the real implementation of each capability, by configuration only.

| capability | production (when configured)          | embedded default                       |
|------------|---------------------------------------|----------------------------------------|
| storage    | MEGA (``MEGA_EMAIL``/``MEGA_PASSWORD``) | local directory ``VIDPIPE_STORAGE_DIR`` |
| compress   | Cloudinary (``CLOUDINARY_URL``)        | ffmpeg                                 |
| audio      | Cloudinary audio derivative            | ffmpeg: mono 16 kHz Opus               |
| transcribe | Whisper server at ``WHISPER_HG_...``   | the reference server (``make run``)    |
| embed      | BGE, falling back to E5                | the reference server as BGE            |

The code path is the same either way: the local pieces are servers and
directories behind the same HTTP contracts and interfaces.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from functools import partial
from pathlib import Path

from api.settings import Settings
from domain import STEPS
from handlers.embedding_store import EmbeddingStore
from handlers.media.ffmpeg import split_at_silences
from handlers.media.probe import MediaLimits
from handlers.providers.embeddings import EmbeddingClient, Embedder
from handlers.providers.ffmpeg import CompressionOptions, FfmpegAudioConverter, FfmpegCompressor
from handlers.providers.simulated import SimulatedProvider
from handlers.providers.transcription import WhisperClient, WhisperTranscriber
from handlers.steps import StepProvider
from handlers.storage import Storage
from handlers.storage.local import LocalStorage
from projections.views import ReadModelView

logger = logging.getLogger(__name__)


def build_storage(settings: Settings) -> Storage:
    """MEGA when its credentials are set, else the local directory."""
    if settings.mega_email and settings.mega_password:
        from handlers.storage.mega import MegaStorage

        logger.info("storage: MEGA as %s", settings.mega_email)
        return MegaStorage(
            settings.mega_email,
            settings.mega_password.get_secret_value(),
            api_url=settings.mega_api_url,
        )
    return LocalStorage(Path(settings.storage_dir))


def media_limits(settings: Settings) -> MediaLimits:
    return MediaLimits(
        max_duration_seconds=settings.max_video_seconds,
        max_size_bytes=settings.max_upload_bytes,
        min_duration_seconds=settings.min_video_seconds,
    )


def _work_dir(settings: Settings) -> Path:
    base = Path(settings.work_dir) if settings.work_dir else Path(tempfile.gettempdir()) / "vidpipe"
    base.mkdir(parents=True, exist_ok=True)
    return base


def _wake(client: object) -> None:
    """Ping a server in the background so a sleeping one starts waking now."""
    ping = getattr(client, "ping", None)
    if ping is not None:
        threading.Thread(target=ping, daemon=True, name="wake-next-server").start()


class StepProviders(dict[str, StepProvider]):
    """The providers by step, and the clients they share (closed with :meth:`close`)."""

    def __init__(self, providers: dict[str, StepProvider], clients: list[object]) -> None:
        super().__init__(providers)
        self.clients = clients

    def close(self) -> None:
        for client in self.clients:
            close = getattr(client, "close", None)
            if callable(close):
                close()


def build_step_providers(settings: Settings, storage: Storage, view: ReadModelView) -> StepProviders:
    """The four steps' providers named by ``VIDPIPE_STEP_PROVIDERS``."""
    if settings.step_providers == "simulated":
        return StepProviders(
            {
                step: SimulatedProvider(
                    seconds=settings.simulated_step_seconds,
                    failing_attempts=settings.simulated_transient_failures,
                )
                for step in STEPS
            },
            [],
        )

    whisper = WhisperClient(
        settings.whisper_url,
        api_key=settings.whisper_api_key.get_secret_value() if settings.whisper_api_key else None,
        timeout=settings.model_request_timeout_seconds,
    )
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    bge = EmbeddingClient(
        settings.bge_url, label="bge", name="BGE embedding server", api_key=token,
        timeout=settings.model_request_timeout_seconds, url_env="BGE_HG_EMBEDDING_SERVER_API_URL",
    )
    e5 = (
        EmbeddingClient(
            settings.e5_url, label="e5", name="E5 embedding server", api_key=token,
            timeout=settings.model_request_timeout_seconds, url_env="E5_HG_EMBEDDING_SERVER_API_URL",
            query_prefix=settings.e5_query_prefix, passage_prefix=settings.e5_passage_prefix,
        )
        if settings.e5_url
        else None
    )
    work = _work_dir(settings)
    splitter = partial(split_at_silences, max_piece_seconds=settings.transcribe_piece_seconds)
    transcriber = WhisperTranscriber(
        whisper, storage, splitter, work / "transcripts", wake_next=lambda: _wake(bge),
    )
    embedder = Embedder(
        bge, storage, EmbeddingStore(view), fallback=e5,
        max_chars=settings.chunk_max_chars, overlap_segments=settings.chunk_overlap_segments,
    )

    if settings.cloudinary_url:
        from handlers.providers.cloudinary import CloudinaryAudioConverter, CloudinaryCompressor, CloudinaryConfig

        overrides = {"delivery_base": settings.cloudinary_delivery_url} if settings.cloudinary_delivery_url else {}
        config = CloudinaryConfig.from_url(settings.cloudinary_url.get_secret_value(), **overrides)
        compressor: StepProvider = CloudinaryCompressor(storage, config)
        audio: StepProvider = CloudinaryAudioConverter(storage, config)
    else:
        compressor = FfmpegCompressor(
            storage,
            limits=media_limits(settings),
            options=CompressionOptions(max_height=settings.compress_max_height, crf=settings.compress_crf),
            workdir=work,
        )
        audio = FfmpegAudioConverter(storage, workdir=work, limits=media_limits(settings))
    return StepProviders(
        {
            "compress": _waking(compressor, whisper),
            "audio-convert": audio,
            "transcribe": transcriber,
            "embed": embedder,
        },
        [whisper, bge, e5],
    )


class _WakingProvider:
    """A provider that pings the server a later step needs when it starts."""

    def __init__(self, inner: StepProvider, server: object) -> None:
        self.inner = inner
        self.server = server
        self.name = inner.name

    def run(self, job, context):  # type: ignore[no-untyped-def]
        _wake(self.server)
        return self.inner.run(job, context)


def _waking(provider: StepProvider, server: object) -> StepProvider:
    return _WakingProvider(provider, server)
