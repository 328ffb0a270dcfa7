"""``python -m api.openapi_export``: print the API's OpenAPI document as JSON.

The same document ``GET /openapi.json`` serves, built from a throwaway app
(SQLite and storage in a temporary directory, the development defaults, no
``.env``) so that it depends on the code only, never on the machine it runs
on. ``web/`` generates its TypeScript types from it (``npm run generate``) and
the test suite fails when the committed ``web/openapi.json`` or the types
generated from it differ from what this prints: the API and its client cannot
drift apart.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from api.app import create_app
from api.settings import Settings


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app built with the development defaults."""
    with tempfile.TemporaryDirectory(prefix="vidpipe-openapi-") as directory:
        settings = Settings(
            _env_file=None,
            database_url=f"sqlite:///{Path(directory) / 'openapi.db'}",
            storage_dir=str(Path(directory) / "storage"),
        )
        return create_app(settings).openapi()


def main() -> int:
    json.dump(openapi_document(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
