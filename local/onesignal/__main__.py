"""``python -m local.onesignal``: run the local OneSignal stand-in (port 8090)."""

from __future__ import annotations

import logging

import uvicorn

from local.onesignal.app import create_app
from local.onesignal.settings import Settings


def main() -> None:
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    logging.getLogger("local.onesignal").info(
        "local OneSignal on http://%s:%d/api/v1 (ONESIGNAL_API_URL), app id %s",
        settings.host, settings.port, settings.app_id,
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
