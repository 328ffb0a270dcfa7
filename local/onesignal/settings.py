"""Settings of the local OneSignal stand-in (``LOCAL_ONESIGNAL_*``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_APP_ID = "00000000-0000-4000-8000-000000000001"
DEV_REST_API_KEY = "local-onesignal-rest-api-key"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCAL_ONESIGNAL_", extra="ignore")

    host: str = "127.0.0.1"
    """Interface to listen on."""

    port: int = 8090
    """Port; the API root is ``http://<host>:<port>/api/v1`` (ONESIGNAL_API_URL)."""

    app_id: str = Field(default=DEV_APP_ID)
    """The one app this server knows (ONESIGNAL_APP_ID)."""

    rest_api_key: str = Field(default=DEV_REST_API_KEY)
    """The REST API key it accepts (ONESIGNAL_REST_API_KEY)."""

    fail_with_status: int | None = None
    """Answer every create with this status (simulates an outage: 500, 503, 429)."""
