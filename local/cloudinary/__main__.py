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

from local.cloudinary.app import create_app
from local.cloudinary.settings import Settings
from local.serving import configure_logging, given, option_parser, serve

log = logging.getLogger("local.cloudinary")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = option_parser(
        "python -m local.cloudinary",
        "Local Cloudinary-compatible server (video upload API, eager transformations, delivery).",
        default_port=8090,
    )
    parser.add_argument("--data-dir", type=Path, help="where assets are kept (default data/cloudinary)")
    parser.add_argument("--outage", type=int, help="answer the first N requests with 503")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by whichever options were given."""
    return Settings(**given(args, host="host", port="port", data_dir="data_dir", outage_requests="outage"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    settings = settings_from(args)
    log.info("local Cloudinary listening on http://%s:%d, cloud %s, api key %s",
             settings.host, settings.port, settings.cloud_name, settings.api_key)
    serve(create_app(settings), settings.host, settings.port, args.log_level)


if __name__ == "__main__":
    main()
