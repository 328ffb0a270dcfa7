"""The ``web/`` package (``@vidpipe/react``): no drift from the API, its own tests, its types.

The committed ``web/openapi.json`` must be what the API serves at
``/openapi.json`` (and byte for byte what ``python -m api.openapi_export``
prints), and the committed ``web/src/schema.ts`` what openapi-typescript
generates from the served document: a route or schema changed without
``cd web && npm run generate`` fails here, so the client can never drift from
the API. Then the package's unit tests (``npm test``: vitest; none may fail or
be skipped) and its type check (``tsc --noEmit``) must pass. node_modules is
installed from the lockfile (``npm ci``) when missing; ``make install`` does
the same.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.openapi_export import openapi_document
from api.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
REGENERATE = "regenerate with `cd web && npm run generate` and commit web/openapi.json and web/src/schema.ts"


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        pytest.fail("npm is not installed: the web/ package's tests need node >= 20 and npm")
    return found


def ensure_node_modules() -> Path:
    """web/node_modules, installed from the committed lockfile unless already there."""
    if not (WEB / "node_modules" / ".package-lock.json").exists():
        subprocess.run([npm(), "ci", "--no-audit", "--no-fund"], cwd=WEB, check=True, timeout=300)
    return WEB / "node_modules"


@pytest.fixture(scope="module")
def node_modules() -> Path:
    return ensure_node_modules()


@pytest.fixture(scope="module")
def served_document(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The OpenAPI document as a running app serves it at ``GET /openapi.json``."""
    directory = tmp_path_factory.mktemp("openapi-app")
    settings = Settings(
        _env_file=None,
        database_url=f"sqlite:///{directory / 'app.db'}",
        storage_dir=str(directory / "storage"),
    )
    response = TestClient(create_app(settings)).get("/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def test_committed_openapi_is_what_the_api_serves(served_document: dict) -> None:
    committed = (WEB / "openapi.json").read_text(encoding="utf-8")
    assert json.loads(committed) == served_document, f"web/openapi.json differs from the served /openapi.json: {REGENERATE}"
    exported = subprocess.run(
        [sys.executable, "-m", "api.openapi_export"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert exported == committed, f"web/openapi.json is not formatted as api.openapi_export prints it: {REGENERATE}"
    assert openapi_document() == served_document


def test_committed_types_are_generated_from_the_served_document(
    served_document: dict, node_modules: Path, tmp_path: Path
) -> None:
    source = tmp_path / "openapi.json"
    source.write_text(json.dumps(served_document), encoding="utf-8")
    generated = tmp_path / "schema.ts"
    result = subprocess.run(
        [str(node_modules / ".bin" / "openapi-typescript"), str(source), "--output", str(generated)],
        cwd=WEB, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    committed = (WEB / "src" / "schema.ts").read_text(encoding="utf-8")
    assert generated.read_text(encoding="utf-8") == committed, f"web/src/schema.ts is stale: {REGENERATE}"


def test_unit_tests_pass(node_modules: Path) -> None:
    """``npm test`` (vitest run): every test passes, none skipped or todo."""
    result = subprocess.run(
        [npm(), "test", "--", "--reporter=verbose", "--no-color"], cwd=WEB, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-12000:]
    counts = re.search(r"Tests\s+(.*)\((\d+)\)", output)
    assert counts is not None, output[-4000:]
    summary, total = counts.group(1), int(counts.group(2))
    assert total > 0 and summary.strip() == f"{total} passed", output[-4000:]


def test_type_check(node_modules: Path) -> None:
    """``tsc --noEmit`` over the sources and the tests."""
    result = subprocess.run([npm(), "run", "typecheck"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-12000:]


def test_build_is_importable_by_node(node_modules: Path, tmp_path: Path) -> None:
    """``tsc -p tsconfig.build.json`` emits ESM with its declarations that plain node can import."""
    out = tmp_path / "dist"
    built = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), "-p", "tsconfig.build.json", "--outDir", str(out)],
        cwd=WEB, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, (built.stdout + built.stderr)[-8000:]
    assert (out / "index.d.ts").is_file() and (out / "schema.d.ts").is_file()
    # resolve react and @tanstack/react-query from web/node_modules, as an app's would be
    (out / "node_modules").symlink_to(node_modules, target_is_directory=True)
    script = f"const m = await import({json.dumps((out / 'index.js').as_uri())}); console.log(Object.keys(m).sort().join(' '))"
    node = shutil.which("node")
    assert node is not None, "node is not installed"
    result = subprocess.run([node, "--input-type=module", "-e", script], cwd=out, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-4000:]
    exported = set(result.stdout.split())
    assert {
        "useStartVideoProcessing", "useVideoProcessingStatus", "useCancelVideoProcessing", "useVideoProcessingQueues",
        "useQueueEvents", "useTranscript", "useLectureSearch", "VideoProcessingProgress", "VidpipeProvider",
        "createVidpipeClient",
    } <= exported, exported
