"""Configuration of the local QStash-compatible server.

Keys and token default to the official QStash dev server's test user, so
Upstash's own docs and the SDK work unchanged against ``http://127.0.0.1:8080``.
Nothing is read at import time: build ``Settings()`` (reads the environment)
or pass fields explicitly, then hand it to ``create_app(settings)``.

Environment: ``QSTASH_TOKEN``, ``QSTASH_CURRENT_SIGNING_KEY``,
``QSTASH_NEXT_SIGNING_KEY`` (the names the SDK and the app use),
``LOCAL_QSTASH_DB`` for the database file, and ``LOCAL_QSTASH_<FIELD>`` for
every other field (``LOCAL_QSTASH_PORT``, ``LOCAL_QSTASH_HOST``,
``LOCAL_QSTASH_CONCURRENCY``, ``LOCAL_QSTASH_MAX_MESSAGE_BYTES``, ...).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_TOKEN = "eyJVc2VySUQiOiJkZWZhdWx0VXNlciIsIlBhc3N3b3JkIjoiZGVmYXVsdFBhc3N3b3JkIn0="
DEV_CURRENT_SIGNING_KEY = "sig_7kYjw48mhY7kAjqNGcy6cr29RJ6r"
DEV_NEXT_SIGNING_KEY = "sig_5ZB6DVzB1wjE8S6rZ7eenA8Pdnhs"


class Settings(BaseSettings):
    """Everything the server needs; every limit of the protocol is a field."""

    model_config = SettingsConfigDict(
        env_prefix="LOCAL_QSTASH_", populate_by_name=True, frozen=True, extra="ignore"
    )

    host: str = "127.0.0.1"
    """Interface to listen on (loopback by default)."""

    port: int = 8080
    """Port to listen on; 8080 like the official dev server."""

    db_path: Path = Field(Path("data/qstash.sqlite3"), validation_alias="LOCAL_QSTASH_DB")
    """SQLite file holding messages, dead letters and deduplication ids."""

    token: SecretStr = Field(SecretStr(DEV_TOKEN), validation_alias="QSTASH_TOKEN")
    """Bearer token publishers must present."""

    current_signing_key: SecretStr = Field(
        SecretStr(DEV_CURRENT_SIGNING_KEY),
        validation_alias="QSTASH_CURRENT_SIGNING_KEY",
    )
    """Key that signs every delivery (``Upstash-Signature``)."""

    next_signing_key: SecretStr = Field(
        SecretStr(DEV_NEXT_SIGNING_KEY),
        validation_alias="QSTASH_NEXT_SIGNING_KEY",
    )
    """Next key: receivers try it second; ``POST /v2/keys/rotate`` makes it current (the
    rotated pair is kept in the database until this pair of settings changes)."""

    concurrency: int = Field(16, ge=1)
    """Deliveries that may be in flight at once."""

    default_timeout_s: float = Field(900.0, gt=0)
    """Delivery timeout when the message has no ``Upstash-Timeout`` (free plan: 15 min)."""

    max_timeout_s: float = Field(7200.0, gt=0)
    """Largest ``Upstash-Timeout`` accepted (paid plans: 2 h)."""

    max_message_bytes: int = Field(1_000_000, ge=1)
    """Largest body accepted by publish (free plan: 1 MB); larger is 413."""

    max_batch_messages: int = Field(100, ge=1)
    """Most messages one ``POST /v2/batch`` may hold."""

    max_batch_bytes: int = Field(10_000_000, ge=1)
    """Largest ``POST /v2/batch`` body accepted; larger is 413."""

    max_delay_s: float = Field(7 * 86400.0, gt=0)
    """Furthest ``Upstash-Delay`` / ``Upstash-Not-Before`` in the future (free plan: 7 days)."""

    default_retries: int = Field(3, ge=0)
    """Retries when ``Upstash-Retries`` is absent (attempts = 1 + retries)."""

    max_retries: int = Field(100, ge=0)
    """Largest ``Upstash-Retries`` accepted."""

    dedup_window_s: float = Field(600.0, gt=0)
    """How long a deduplication id (or content hash) is remembered: 10 minutes."""

    events_retention_s: float = Field(7 * 86400.0, gt=0)
    """How long the events log (``GET /v2/events``) keeps an entry; pruned at start."""

    backoff_scale: float = Field(1.0, gt=0)
    """Multiplier on the default backoff; tests shrink it, production keeps 1."""

    max_response_bytes: int = Field(256_000, ge=0)
    """Most of a destination's response body kept for the DLQ and callbacks."""

    poll_interval_s: float = Field(1.0, gt=0)
    """Longest the delivery worker sleeps before re-reading the store."""

    shutdown_grace_s: float = Field(10.0, ge=0)
    """On a clean stop, how long deliveries in flight may take to finish (and be recorded)
    before they are abandoned and delivered again after the restart."""
