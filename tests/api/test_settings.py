"""Settings: seed variable names, the callback base URL, and refusing development secrets in production."""

from __future__ import annotations

import pytest

from api.settings import DEV_QSTASH_TOKEN, Settings
from projections.database import ConfigurationError

REAL = {
    "QSTASH_TOKEN": "real-token",
    "QSTASH_CURRENT_SIGNING_KEY": "sig_current_from_the_console_xx",
    "QSTASH_NEXT_SIGNING_KEY": "sig_next_from_the_console_xxxxx",
    "VIDPIPE_JWT_SECRET": "a-real-secret-from-the-auth-provider-0123456789",
}


def test_the_embedded_default_needs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "QSTASH_URL", "QSTASH_TOKEN", "NEXTAUTH_URL", "VERCEL_URL", "PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.database_url == "sqlite:///data/vidpipe.db"
    assert settings.qstash_url == "http://127.0.0.1:8080"
    assert settings.qstash_token.get_secret_value() == DEV_QSTASH_TOKEN
    assert settings.public_base_url == "http://127.0.0.1:8000"
    assert (settings.retry_base_seconds, settings.max_retries) == (60, 3)


def test_seed_variable_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_STEP_RETRY_BASE_SECONDS", "5")
    monkeypatch.setenv("VIDEO_STEP_MAX_RETRIES", "7")
    monkeypatch.setenv("VERCEL_URL", "vidpipe-git-main.vercel.app")
    monkeypatch.delenv("NEXTAUTH_URL", raising=False)
    settings = Settings()
    assert (settings.retry_base_seconds, settings.max_retries) == (5, 7)
    assert settings.public_base_url == "https://vidpipe-git-main.vercel.app"
    monkeypatch.setenv("NEXTAUTH_URL", "https://learn.example.com/")
    assert Settings().public_base_url == "https://learn.example.com"


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ConfigurationError, match="QSTASH_TOKEN, QSTASH_CURRENT_SIGNING_KEY"):
        Settings(VIDPIPE_ENV="production", NEXTAUTH_URL="https://learn.example.com")
    with pytest.raises(ConfigurationError, match="NEXTAUTH_URL"):
        Settings(VIDPIPE_ENV="production", **REAL)
    assert Settings(VIDPIPE_ENV="production", NEXTAUTH_URL="https://x.example", **REAL).environment == "production"


def test_a_missing_or_bad_value_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="VIDEO_STEP_MAX_RETRIES"):
        Settings(VIDEO_STEP_MAX_RETRIES=-1)


def test_production_refuses_the_development_jwt_secret_unless_jwks() -> None:
    real = {k: v for k, v in REAL.items() if k != "VIDPIPE_JWT_SECRET"}
    with pytest.raises(ConfigurationError, match="VIDPIPE_JWT_SECRET"):
        Settings(VIDPIPE_ENV="production", NEXTAUTH_URL="https://x.example", **real)
    jwks = Settings(
        VIDPIPE_ENV="production", NEXTAUTH_URL="https://x.example",
        VIDPIPE_JWT_JWKS_URL="https://auth.example/.well-known/jwks.json",
        VIDPIPE_MEDIA_SIGNING_KEY="a media key of the deployment", **real,
    )
    assert jwks.jwt_jwks_url is not None
    assert jwks.media_key == b"a media key of the deployment"


def test_production_with_jwks_needs_a_media_signing_key() -> None:
    """With JWKS the JWT secret is the public development default: media links must not derive from it."""
    real = {k: v for k, v in REAL.items() if k != "VIDPIPE_JWT_SECRET"}
    with pytest.raises(ConfigurationError, match="VIDPIPE_MEDIA_SIGNING_KEY"):
        Settings(
            VIDPIPE_ENV="production", NEXTAUTH_URL="https://x.example",
            VIDPIPE_JWT_JWKS_URL="https://auth.example/.well-known/jwks.json", **real,
        )
    assert Settings(**REAL).media_key != Settings().media_key  # derived from each JWT secret


def test_onesignal_needs_both_the_key_and_the_app_id() -> None:
    assert not Settings().push_enabled
    with pytest.raises(ConfigurationError, match="ONESIGNAL_APP_ID"):
        Settings(ONESIGNAL_REST_API_KEY="key")
    assert Settings(ONESIGNAL_REST_API_KEY="key", ONESIGNAL_APP_ID="app").push_enabled
