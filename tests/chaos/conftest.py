"""One reduced process-deaths run for two tests: the deaths test reads its row, the storage sweep test the sweep
after it (the sweep's reduced form is the sweeper over what the reduced deaths run left)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bench.chaos import storage_sweep
from bench.core import database


@pytest.fixture(scope="session")
def deaths_then_sweep(postgres_available: None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the reduced deaths scenario's row, the storage sweep's row after it), on a fresh Postgres schema."""
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-chaos-"))
    try:
        with database("postgres") as url:
            return storage_sweep.run_with_deaths(url, workdir, reduced=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
