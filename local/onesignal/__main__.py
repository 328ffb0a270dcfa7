"""``python -m local.onesignal``: run the local OneSignal stand-in (port 8090)."""

from __future__ import annotations

import logging

from local.onesignal.app import create_app
from local.onesignal.settings import Settings
from local.serving import configure_logging, serve


def main() -> None:
    configure_logging("info")
    settings = Settings()
    logging.getLogger("local.onesignal").info(
        "local OneSignal on http://%s:%d/api/v1 (ONESIGNAL_API_URL), app id %s",
        settings.host, settings.port, settings.app_id,
    )
    serve(create_app(settings), settings.host, settings.port)


if __name__ == "__main__":
    main()
