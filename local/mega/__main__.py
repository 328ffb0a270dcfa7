"""``python -m local.mega``: run the fake MEGA server.

Reads ``Settings`` from the environment (``MEGA_EMAIL``, ``MEGA_PASSWORD``,
``LOCAL_MEGA_PORT``, ``LOCAL_MEGA_DATA_DIR``, ...); options override them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from local.mega.app import create_app
from local.mega.settings import Settings
from local.serving import configure_logging, given, option_parser, serve

log = logging.getLogger("local.mega")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = option_parser("python -m local.mega", "Fake MEGA server (JSON-RPC /cs and transfer URLs).",
                           default_port=8090)
    parser.add_argument("--data-dir", type=Path, help="where files and accounts are kept (default data/mega)")
    parser.add_argument("--email", help="account email (default MEGA_EMAIL or the dev account)")
    parser.add_argument("--password", help="account password (default MEGA_PASSWORD or the dev password)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    return Settings(**given(args, host="host", port="port", data_dir="data_dir", email="email", password="password"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args)
    log.info("fake MEGA listening on http://%s:%d (MEGA_API_URL)", settings.host, settings.port)
    serve(create_app(settings), settings.host, settings.port, args.log_level)


if __name__ == "__main__":
    main()
