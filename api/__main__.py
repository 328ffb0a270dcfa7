"""``python -m api``: serve the vidpipe API (with its step webhooks) on ``PORT``."""

from __future__ import annotations

import logging
import sys

import uvicorn

from api.app import create_app
from api.settings import Settings
from domain import VidpipeError


def main() -> int:
    try:
        settings = Settings()
    except VidpipeError as error:
        print(f"vidpipe: configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host="127.0.0.1" if settings.environment == "development" else "0.0.0.0",  # noqa: S104
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
