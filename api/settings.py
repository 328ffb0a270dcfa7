"""Configuration, from environment variables (and a ``.env`` file if present).

Every field documents itself; ``make doctor`` and the README's configuration
table are generated from these docstrings' substance. Nothing is read at
import time: build a :class:`Settings` where the process starts.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from projections.database import DatabaseUrl


class Settings(BaseSettings):
    """vidpipe's settings; the embedded default needs none of them set."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(default="sqlite:///data/vidpipe.db", alias="DATABASE_URL")
    """Event store and read model: ``sqlite:///path.db`` (embedded default) or
    ``postgresql://user:password@host:5432/db?schema=public`` (production)."""

    snapshot_interval: int = Field(default=50, ge=1, alias="VIDPIPE_SNAPSHOT_INTERVAL")
    """Take a snapshot of a queue every N events, so loading a long-lived queue stays cheap."""

    projection_poll_seconds: float = Field(default=0.05, gt=0, alias="VIDPIPE_PROJECTION_POLL_SECONDS")
    """How often an idle projection runner looks for new events."""

    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    """Python logging level of every vidpipe process."""

    @property
    def database(self) -> DatabaseUrl:
        return DatabaseUrl.parse(self.database_url)

    def event_store_env(self) -> dict[str, str]:
        """The eventsourcing library's environment for the configured database."""
        return {
            **self.database.event_store_env(),
            "SNAPSHOT_INTERVAL": str(self.snapshot_interval),
        }
