"""Run a model server as a program: ``python -m local.models.<server> --port N``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from fastapi import FastAPI

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def serve(
    build: Callable[[], tuple[FastAPI, str]],
    *,
    program: str,
    description: str,
    default_port: int,
    argv: Sequence[str] | None = None,
) -> None:
    """Parse ``--host/--port/--log-level``, configure logging, build the app, serve it.

    ``build`` reads the settings (from the environment) and returns the app and
    the configured log level; it runs after argument parsing, so ``--help`` is quick.
    """
    import uvicorn

    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback)")
    parser.add_argument("--port", type=int, default=default_port, help=f"port (default: {default_port})")
    parser.add_argument("--log-level", default=None, help="logging level (default: MODEL_SERVER_LOG_LEVEL or INFO)")
    args = parser.parse_args(argv)
    app, configured_level = build()
    level = (args.log_level or configured_level).upper()
    logging.basicConfig(level=level, format=LOG_FORMAT)
    uvicorn.run(app, host=args.host, port=args.port, log_level=level.lower(), log_config=None)
