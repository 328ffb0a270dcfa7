"""``make storage-report`` (``python -m api.storage_report``) and the doctor's storage line."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import pytest

from api.settings import Settings
from api.storage_report import build_sweeper, check_storage_hygiene, main
from api.wiring import build_core, build_storage

OLD = time.time() - 7200


@pytest.fixture
def configured(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    storage = tmp_path / "storage"
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("VIDPIPE_STORAGE_DIR", str(storage))
    monkeypatch.setenv("VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS", "3600")
    settings = Settings()
    core = build_core(settings)
    try:
        queue = core.app.start_processing("tutor-1", "a.mp4", {"source": "tutor-1/uploads/a.mp4"})
    finally:
        core.close()
    for key, size in (("tutor-1/uploads/a.mp4", 1000), (f"tutor-1/{queue}/compressed.mp4", 500),
                      ("tutor-1/uploads/dead.mp4", 300), ("tutor-1/uploads/.incoming-abc", 200)):
        path = storage / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (OLD, OLD))
    return storage


def run(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def test_report_then_sweep(configured: Path) -> None:
    code, text = run()
    assert code == 0, text
    assert "referenced" in text and "orphaned: partial uploads" in text
    code, text = run("--json")
    report = json.loads(text)
    assert report["referenced"] == {"files": 2, "bytes": 1500}
    assert report["orphaned"] == {"files": 2, "bytes": 500}
    assert (configured / "tutor-1/uploads/dead.mp4").is_file()  # a report removes nothing

    code, text = run("--sweep")
    assert code == 0, text
    assert "removed 2 files" in text
    assert not (configured / "tutor-1/uploads/dead.mp4").exists()
    assert not (configured / "tutor-1/uploads/.incoming-abc").exists()
    assert (configured / "tutor-1/uploads/a.mp4").is_file()
    assert json.loads(run("--json")[1])["orphaned"] == {"files": 0, "bytes": 0}


def test_doctor_line_warns_about_orphans(configured: Path) -> None:
    settings = Settings()
    core = build_core(settings)
    try:
        sweeper = build_sweeper(settings, core, build_storage(settings))
        result = check_storage_hygiene(sweeper)
        assert not result.ok and not result.required  # a warning, never a failure
        assert "orphaned 2 files (500 B)" in result.detail and "referenced 2 files" in result.detail
        assert "SWEEP=1" in result.fix
        sweeper.sweep()
        assert check_storage_hygiene(sweeper).ok
    finally:
        core.close()


def test_make_doctor_prints_the_storage_use_line(configured: Path) -> None:
    from api import doctor

    result = doctor._storage_use(Settings())  # noqa: SLF001 - the line run_checks records
    assert doctor.line(result).startswith("warn  storage use")
    assert "orphaned 2 files" in result.detail


def test_the_projection_runner_process_sweeps_periodically(configured: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.support import wait_until

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "VIDPIPE_STORAGE_SWEEP_INTERVAL_SECONDS": "0.2"}
    runner = subprocess.Popen([sys.executable, "-m", "api.cli", "project"], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: not (configured / "tutor-1/uploads/.incoming-abc").exists(), 30,
                   "the runner process to sweep the partial upload")
    finally:
        runner.send_signal(signal.SIGTERM)
        output, _ = runner.communicate(timeout=30)
    assert runner.returncode == 0, output
    assert "storage sweeper: every 0.2 s" in output
    assert not (configured / "tutor-1/uploads/dead.mp4").exists()
    assert (configured / "tutor-1/uploads/a.mp4").is_file()


def test_the_api_process_running_the_followers_sweeps_periodically(served, clients) -> None:  # noqa: ANN001
    from tests.api.conftest import fake_video
    from tests.support import wait_until

    pipeline = served(VIDPIPE_STORAGE_SWEEP_INTERVAL_SECONDS=0.2, VIDPIPE_STORAGE_SWEEP_GRACE_SECONDS=3600)
    tutor = clients(pipeline, "tutor-sweep")
    accepted = tutor.upload(fake_video(seed=5))
    assert accepted.status_code == 202, accepted.text
    tutor.wait_for(accepted.json()["queue_id"], ("completed",))
    storage = Path(pipeline.settings.storage_dir)
    orphan = storage / "tutor-sweep/uploads/.incoming-dead"
    orphan.write_bytes(b"x" * 10)
    os.utime(orphan, (OLD, OLD))
    kept = sorted(p for p in storage.rglob("*") if p.is_file() and p != orphan)
    assert kept  # the upload's original is there
    wait_until(lambda: not orphan.exists(), 30, "the API process to sweep the partial upload")
    assert sorted(p for p in storage.rglob("*") if p.is_file()) == kept


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/nowhere")
    monkeypatch.setenv("VIDPIPE_STORAGE_DIR", str(tmp_path / "storage"))
    code, text = run()
    assert code == 1
    assert text.startswith("storage report failed: OperationalError") and "DATABASE_URL" in text
    assert "Traceback" not in text
