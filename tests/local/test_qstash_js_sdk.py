"""The local QStash server through the official TypeScript client (``@upstash/qstash`` 2.x).

Starts the server on a free loopback port and runs the node test suite in
``tests/local/qstash_js`` (``node --test``) against it; every delivery there is
verified by the SDK's own ``Receiver``. Covers, through that client: publish
and its headers, retries with ``retryDelay``, callbacks, deduplication,
``batchJSON``, message get/cancel (single, by ids in the query, by filter,
all with count), the DLQ (list, filter, paging, delete single/ids/all, retry
ids/all), and 501 answers for calls without an implementation. node_modules
is installed from the lockfile (``npm ci``) when missing; ``make install``
does the same.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.local.qstash_support import TOKEN, ThreadedServer
from local.qstash.settings import DEV_CURRENT_SIGNING_KEY, DEV_NEXT_SIGNING_KEY

JS_DIR = Path(__file__).parent / "qstash_js"


def node_modules() -> None:
    """``npm ci`` from the committed lockfile unless node_modules is already installed."""
    if (JS_DIR / "node_modules" / ".package-lock.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not installed: the TypeScript SDK contract tests need node >= 20 and npm")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True, timeout=300)


def test_typescript_sdk_contract(qstash_factory: Callable[..., ThreadedServer]) -> None:
    """Every node test passes (none skipped) against a fresh local server."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the TypeScript SDK contract tests need node >= 20")
    node_modules()
    server = qstash_factory(poll_interval_s=0.05)
    env = {
        **os.environ,
        "QSTASH_URL": server.url,
        "QSTASH_TOKEN": TOKEN,
        "QSTASH_CURRENT_SIGNING_KEY": DEV_CURRENT_SIGNING_KEY,
        "QSTASH_NEXT_SIGNING_KEY": DEV_NEXT_SIGNING_KEY,
        "QSTASH_DEV": "false",
    }
    files = sorted(path.name for path in JS_DIR.glob("*.test.mjs"))
    assert files, "no node test files found"
    result = subprocess.run(
        [node, "--test", "--test-concurrency=1", "--test-reporter=spec", *files],
        cwd=JS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    counts = {name: int(value) for name, value in re.findall(r"ℹ (tests|pass|fail|skipped|todo|cancelled) (\d+)", output)}
    assert counts.get("tests", 0) > 0 and counts.get("pass") == counts["tests"], output[-4000:]
    assert counts.get("skipped", 0) == counts.get("todo", 0) == counts.get("cancelled", 0) == 0, output[-4000:]
