"""``python -m local.cloudinary``: run the local Cloudinary-compatible server.

Reads ``Settings`` from the environment (``CLOUDINARY_URL`` for the account,
``LOCAL_CLOUDINARY_<FIELD>`` for the rest); ``--host``, ``--port``,
``--data-dir`` and ``--outage`` override them. Point vidpipe at it with
``CLOUDINARY_URL=cloudinary://<key>:<secret>@<cloud>?upload_prefix=http://127.0.0.1:<port>``
and ``CLOUDINARY_DELIVERY_URL=http://127.0.0.1:<port>``.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from local.cloudinary.app import create_app
from local.cloudinary.settings import Settings

log = logging.getLogger("local.cloudinary")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.cloudinary",
        description="Local Cloudinary-compatible server (video upload API, eager transformations, delivery).",
    )
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to listen on (default 8090)")
    parser.add_argument("--data-dir", type=Path, help="where assets are kept (default data/cloudinary)")
    parser.add_argument("--outage", type=int, help="answer the first N requests with 503")
    parser.add_argument("--log-level", default="info", help="logging level (default info)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    overrides = {
        name: value
        for name, value in (
            ("host", args.host),
            ("port", args.port),
            ("data_dir", args.data_dir),
            ("outage_requests", args.outage),
        )
        if value is not None
    }
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    log.info(
        "local Cloudinary listening on http://%s:%d, cloud %s, api key %s",
        settings.host,
        settings.port,
        settings.cloud_name,
        settings.api_key,
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
