"""``python -m local.mega``: run the fake MEGA server.

Reads ``Settings`` from the environment (``MEGA_EMAIL``, ``MEGA_PASSWORD``,
``LOCAL_MEGA_PORT``, ``LOCAL_MEGA_DATA_DIR``, ...); options override them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from local.mega.app import create_app
from local.mega.settings import Settings

log = logging.getLogger("local.mega")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m local.mega", description="Fake MEGA server (JSON-RPC /cs and transfer URLs).")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8090)")
    parser.add_argument("--data-dir", type=Path, help="where files and accounts are kept (default data/mega)")
    parser.add_argument("--email", help="account email (default MEGA_EMAIL or the dev account)")
    parser.add_argument("--password", help="account password (default MEGA_PASSWORD or the dev password)")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    options = {"host": args.host, "port": args.port, "data_dir": args.data_dir, "email": args.email, "password": args.password}
    return Settings(**{name: value for name, value in options.items() if value is not None})


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    log.info("fake MEGA listening on http://%s:%d (MEGA_API_URL)", settings.host, settings.port)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port,
        log_level=args.log_level.lower(), log_config=None, ws="none",
    )


if __name__ == "__main__":
    main()
