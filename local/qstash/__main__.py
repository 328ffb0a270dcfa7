"""``python -m local.qstash``: run the local QStash-compatible server.

Reads ``Settings`` from the environment (``QSTASH_TOKEN``,
``QSTASH_CURRENT_SIGNING_KEY``, ``QSTASH_NEXT_SIGNING_KEY``,
``LOCAL_QSTASH_HOST``, ``LOCAL_QSTASH_PORT``, ``LOCAL_QSTASH_DB``, ...);
``--host``, ``--port`` and ``--db`` override them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from local.qstash.app import create_app
from local.qstash.settings import Settings
from local.serving import configure_logging, given, option_parser, serve

log = logging.getLogger("local.qstash")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = option_parser(
        "python -m local.qstash",
        "Local QStash-compatible server (publish, queues, flow control, schedules, URL groups,"
        " DLQ, events), persisted in SQLite.",
        default_port=8080,
    )
    parser.add_argument("--db", type=Path, help="SQLite file (default data/qstash.sqlite3)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    return Settings(**given(args, host="host", port="port", db_path="db"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args)
    log.info("local QStash listening on http://%s:%d (QSTASH_URL), database %s",
             settings.host, settings.port, settings.db_path)
    serve(create_app(settings), settings.host, settings.port, args.log_level)


if __name__ == "__main__":
    main()
