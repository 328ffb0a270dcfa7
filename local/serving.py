"""What the stand-in servers share as programs (``python -m local.<stand-in>``): options, logging, uvicorn.

Each stand-in's ``__main__`` adds its own options to :func:`option_parser`,
turns the ones given into settings overrides with :func:`given`, and hands its
app to :func:`serve`; what is left in it is its own protocol's settings.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def option_parser(program: str, description: str, *, default_port: int) -> argparse.ArgumentParser:
    """``--host``, ``--port`` and ``--log-level``; the stand-in adds its own options."""
    parser = argparse.ArgumentParser(prog=program, description=description)
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help=f"port to listen on (default {default_port})")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")
    return parser


def given(args: argparse.Namespace, **fields: str) -> dict[str, Any]:
    """Settings overrides: each ``field=option`` (``host="host"``, ``db_path="db"``) whose option was given."""
    return {field: getattr(args, option) for field, option in fields.items() if getattr(args, option) is not None}


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def serve(app: ASGIApp, host: str, port: int, log_level: str = "info") -> None:
    """Serve ``app`` in the foreground until interrupted (uvicorn logging through ours; no websockets)."""
    uvicorn.run(app, host=host, port=port, log_level=log_level.lower(), log_config=None, ws="none")
