"""Configuration of the local Cloudinary-compatible server.

Nothing is read at import time: build ``Settings()`` (reads the environment)
or pass fields explicitly, then hand it to ``create_app(settings)``.

Environment: ``CLOUDINARY_URL`` (``cloudinary://<api_key>:<api_secret>@<cloud_name>``,
the variable the SDK and the service read) sets the account the server
accepts, so one variable configures both sides; ``LOCAL_CLOUDINARY_<FIELD>``
sets every field (``LOCAL_CLOUDINARY_PORT``, ``LOCAL_CLOUDINARY_DATA_DIR``,
``LOCAL_CLOUDINARY_OUTAGE_REQUESTS``, ...), and wins over ``CLOUDINARY_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_CLOUD_NAME = "vidpipe-local"
DEV_API_KEY = "111111111111111"
DEV_API_SECRET = "local-cloudinary-dev-secret"


class Settings(BaseSettings):
    """The account the server accepts, where it keeps files, and its limits."""

    model_config = SettingsConfigDict(
        env_prefix="LOCAL_CLOUDINARY_", populate_by_name=True, frozen=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    """Interface to listen on (loopback by default)."""

    port: int = 8090
    """Port to listen on."""

    cloud_name: str = DEV_CLOUD_NAME
    """The one cloud (account) this server hosts; other clouds answer 404."""

    api_key: str = DEV_API_KEY
    """The account's API key; requests naming another key get 401 ``Unknown API key``."""

    api_secret: SecretStr = SecretStr(DEV_API_SECRET)
    """Secret that request signatures are checked against (SHA-1 or SHA-256, as the SDK sends)."""

    cloudinary_url: str | None = Field(None, validation_alias="CLOUDINARY_URL", exclude=True)
    """``cloudinary://key:secret@cloud``: fills cloud name, key and secret unless given separately."""

    data_dir: Path = Path("data/cloudinary")
    """Originals, derived files and asset metadata live here (survive restarts)."""

    public_url: str | None = None
    """Base of the URLs in responses (``secure_url``, eager URLs); default: the request's own base."""

    outage_requests: int = Field(0, ge=0)
    """Answer the next N requests with 503, as during a Cloudinary incident (tests: the outage switch)."""

    outage_retry_after: int = Field(5, ge=0)
    """``Retry-After`` seconds sent with outage 503s."""

    max_sync_transform_bytes: int = Field(40 * 1024 * 1024, ge=0)
    """Largest original transformed on the fly at delivery (Cloudinary's free-plan limit is 40 MB);
    larger ones need an eager transformation with ``eager_async``."""

    timestamp_tolerance_s: int = Field(3600, ge=1)
    """Signed requests older than this are refused as stale (Cloudinary: one hour)."""

    transform_workers: int = Field(2, ge=1)
    """Eager transformations (``eager_async``) that run at once."""

    ffmpeg: str | None = None
    """ffmpeg binary that performs transformations; unset: the one ``handlers.media.tools`` resolves
    (``VIDPIPE_FFMPEG``, the packaged one, ``PATH``)."""

    ffprobe: str | None = None
    """ffprobe binary that inspects uploads; unset: the one ``handlers.media.tools`` resolves."""

    x264_preset: str = "veryfast"
    """libx264 preset of derived videos (speed over size; the CRF sets quality)."""

    @model_validator(mode="before")
    @classmethod
    def _account_from_url(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        url = data.get("cloudinary_url") or data.get("CLOUDINARY_URL")
        if not url:
            return data
        parsed = urlparse(url)
        if parsed.scheme != "cloudinary" or not parsed.hostname:
            raise ValueError("CLOUDINARY_URL must look like cloudinary://<api_key>:<api_secret>@<cloud_name>")
        filled = dict(data)
        for name, value in (
            ("cloud_name", parsed.hostname),
            ("api_key", parsed.username),
            ("api_secret", parsed.password),
        ):
            if value and name not in data:
                filled[name] = value
        return filled
