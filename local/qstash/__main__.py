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

import uvicorn

from local.qstash.app import create_app
from local.qstash.settings import Settings

log = logging.getLogger("local.qstash")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.qstash",
        description="Local QStash-compatible server (publish, queues, flow control, schedules, URL groups,"
        " DLQ, events), persisted in SQLite.",
    )
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8080)")
    parser.add_argument("--db", type=Path, help="SQLite file (default data/qstash.sqlite3)")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    overrides = {
        name: value
        for name, value in (("host", args.host), ("port", args.port), ("db_path", args.db))
        if value is not None
    }
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = settings_from(args)
    log.info(
        "local QStash listening on http://%s:%d (QSTASH_URL), database %s",
        settings.host,
        settings.port,
        settings.db_path,
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        log_config=None,
        ws="none",
    )


if __name__ == "__main__":
    main()
