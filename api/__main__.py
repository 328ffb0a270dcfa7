"""``python -m api``: serve the vidpipe API (with its step webhooks) on ``PORT``."""

from __future__ import annotations

import logging
import sys
from types import FrameType

import uvicorn

from api.app import create_app
from api.limits import HTTP_PARSER_HEADER_BYTES
from api.settings import Settings
from domain import VidpipeError
from handlers.failpoints import armed as armed_failpoints
from handlers.step_runner import StepRunner

KEEP_ALIVE_SECONDS = 75


def main() -> int:
    try:
        settings = Settings()
        armed_failpoints()  # a malformed VIDPIPE_FAILPOINTS stops the start, not a later request
    except VidpipeError as error:
        print(f"vidpipe: configuration error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host="127.0.0.1" if settings.environment == "development" else "0.0.0.0",  # noqa: S104
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=10,
        # uvicorn's default (5 s) closes idle connections while a busy client is about to reuse them
        # ("server disconnected"); load balancers keep connections idle for 60 s, so stay above that
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        h11_max_incomplete_event_size=HTTP_PARSER_HEADER_BYTES,
    )
    StoppingServer(config, app.state.step_runner).run()
    return 0


class StoppingServer(uvicorn.Server):
    """On SIGINT/SIGTERM, stop the running steps first (their child processes die, their
    deliveries get 503 so QStash redelivers them), then shut down as uvicorn does."""

    def __init__(self, config: uvicorn.Config, runner: StepRunner) -> None:
        super().__init__(config)
        self.runner = runner

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runner.shutdown()
        super().handle_exit(sig, frame)


if __name__ == "__main__":
    sys.exit(main())
