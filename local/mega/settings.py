"""Configuration of the fake MEGA server.

Nothing is read at import time: build ``Settings()`` (reads the environment)
or pass fields, then hand it to ``create_app(settings)``. The account to
create comes from ``MEGA_EMAIL``/``MEGA_PASSWORD`` (the names the service
uses, so one ``.env`` configures both sides); every other field from
``LOCAL_MEGA_<FIELD>`` (``LOCAL_MEGA_PORT``, ``LOCAL_MEGA_DATA_DIR``, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_EMAIL = "vidpipe@localhost.localdomain"
DEV_PASSWORD = "vidpipe-local-mega"


class Settings(BaseSettings):
    """Everything the fake server needs."""

    model_config = SettingsConfigDict(env_prefix="LOCAL_MEGA_", populate_by_name=True, frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    """Interface to listen on (loopback by default)."""

    port: int = 8090
    """Port to listen on; clients use ``MEGA_API_URL=http://127.0.0.1:8090``."""

    data_dir: Path = Path("data/mega")
    """Where encrypted file contents (``blobs/``), ``nodes.json`` and ``accounts.json`` live."""

    email: str = Field(DEV_EMAIL, validation_alias="MEGA_EMAIL")
    """Email of the account the server creates at start."""

    password: SecretStr = Field(SecretStr(DEV_PASSWORD), validation_alias="MEGA_PASSWORD")
    """Its password (only the derived key and user hash are kept, as MEGA does)."""

    extra_accounts: dict[str, SecretStr] = Field(default_factory=dict)
    """More accounts, email to password."""

    key_version: Literal[1, 2] = 2
    """Password derivation: 2 (PBKDF2 with a salt, today's accounts) or 1 (legacy AES rounds, slow)."""

    session: Literal["csid", "tsid"] = "csid"
    """Session answer to ``us``: ``csid`` (RSA-encrypted, full accounts) or ``tsid`` (ephemeral accounts)."""

    rsa_bits: int = Field(2048, ge=1024)
    """Size of each account's RSA key (MEGA uses 2048)."""

    quota_bytes: int | None = Field(None, ge=0)
    """Storage quota per account; an upload beyond it gets ``-17`` EOVERQUOTA. None: unlimited."""
