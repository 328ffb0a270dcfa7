"""The operator commands behind ``make replay`` and ``make rebuild-projections``, run as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from projections.database import DatabaseUrl
from projections.leadership import Elector, LedFollower, leadership_for
from tests.conftest import ROOT, open_store
from tests.support import wait_until


def vidpipe(database_url: str, *args: str, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200", **env_vars}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_replay_prints_the_timeline_with_reasons(database_url: str) -> None:
    store = open_store(database_url)
    try:
        qid = store.app.start_processing("tutor-1", "lecture-3")
        store.app.start_step(qid, "compress", 1)
        store.app.retry_step(qid, "compress", 1, "503 Whisper is loading", 45)
        store.app.start_step(qid, "compress", 2)
        store.app.fail_step(qid, "compress", 2, "not a video file")
    finally:
        store.close()
    result = vidpipe(database_url, "replay", str(qid))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "│" in line]
    events = [line.split("│")[3].strip() for line in lines]
    assert events == ["Created", "StepStarted", "StepRetried", "StepStarted", "StepFailed", "Failed"]
    assert "503 Whisper is loading" in result.stdout
    assert "delay_seconds=45.0" in result.stdout
    assert f"queue {qid}: failed" in result.stdout


def test_replay_of_an_unknown_queue_says_so(database_url: str) -> None:
    result = vidpipe(database_url, "replay", "0b0e5c4e-0000-4000-8000-000000000000")
    assert result.returncode == 2
    assert "does not exist" in result.stdout


def test_rebuild_projections_restores_the_read_model(database_url: str) -> None:
    store = open_store(database_url)
    try:
        qid = store.app.start_processing("tutor-1", "lecture-3")
        store.app.start_step(qid, "compress", 1)
        store.follower.catch_up()
        good = store.reader.table_rows()
        with store.view.session() as session:
            session.execute("DELETE FROM video_processing_steps")
        result = vidpipe(database_url, "rebuild-projections")
        assert result.returncode == 0, result.stderr
        assert "rebuilt queue_status from 2 events" in result.stdout
        assert store.reader.table_rows() == good
    finally:
        store.close()


def test_a_bad_database_url_is_a_clear_error() -> None:
    result = vidpipe("mysql://root@localhost/x", "rebuild-projections")
    assert result.returncode != 0
    assert "DATABASE_URL" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_project_runs_until_sigterm_and_keeps_the_read_model_current(database_url: str) -> None:
    import signal as signals

    from tests.support import wait_until

    store = open_store(database_url)
    env = {**os.environ, "DATABASE_URL": database_url}
    runner = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "project"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        qid = store.app.start_processing("tutor-1", "lecture")
        store.app.start_step(qid, "compress", 1)
        wait_until(lambda: (row := store.reader.status(str(qid))) and row["status"] == "processing", 20,
                   "the runner process to project the events")
    finally:
        runner.send_signal(signals.SIGTERM)
        output, _ = runner.communicate(timeout=20)
        store.close()
    assert runner.returncode == 0, output
    assert "stopped" in output


def test_search_prints_the_moments_of_one_tutors_lectures_and_rebuild_restores_the_index(database_url: str) -> None:
    """``make search``: keyword moments here (no embedding server answers, and the command says so)."""
    from handlers.embedding_store import EmbeddedChunk, EmbeddingStore
    from domain import STEPS

    store = open_store(database_url)
    try:
        queues = {}
        for owner, words in (("tutor-a", "chlorophyll turns sunlight into sugar"),
                             ("tutor-b", "chlorophyll is green in tutor b's lecture")):
            qid = store.app.start_processing(owner, f"att-{owner}", {"filename": f"{owner}-biology.mp4"})
            for step in STEPS[:-1]:
                store.app.start_step(qid, step, 1)
                store.app.complete_step(qid, step, 1)
            EmbeddingStore(store.view).replace(str(qid), [
                EmbeddedChunk(0, 0.0, 9.0, "welcome to the lecture", (1.0, 0.0), "minilm", "bge"),
                EmbeddedChunk(1, 75.0, 84.0, words, (0.0, 1.0), "minilm", "bge"),
            ])
            store.app.start_step(qid, "embed", 1)
            store.app.complete_step(qid, "embed", 1)
            queues[owner] = qid
    finally:
        store.close()
    from tests.support import reserve_port

    closed = reserve_port()  # bound, never listening: the embedding server refuses at once
    nowhere = {"BGE_HG_EMBEDDING_SERVER_API_URL": f"http://127.0.0.1:{closed.getsockname()[1]}"}
    env_url = database_url
    result = vidpipe(env_url, "search", "where is chlorophyll explained", "--user", "tutor-a", **nowhere)
    assert result.returncode == 0, result.stderr
    assert "tutor-a-biology.mp4" in result.stdout and "1:15" in result.stdout
    assert "tutor-b" not in result.stdout.replace("tutor-a", "")
    assert "keywords only" in result.stdout  # the reference embedding server is not running here
    rebuilt = vidpipe(env_url, "rebuild-projections")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt moments from" in rebuilt.stdout and "rebuilt notifications from" in rebuilt.stdout
    again = vidpipe(env_url, "search", "chlorophyll", "--user", "tutor-a", **nowhere)
    assert "tutor-a-biology.mp4" in again.stdout
    closed.close()


def test_rebuild_refuses_while_a_follower_leads_and_with_wait_rebuilds_once_it_stops(
    database_url: str, tmp_path: Path
) -> None:
    """Regression: the rebuild took no leadership lock, so it could write a projection while a
    live follower of it (``make project``, the API's) wrote the same rows."""
    store = open_store(database_url)
    running = LedFollower(store.follower, Elector(leadership_for(DatabaseUrl.parse(database_url)),
                                                  poll_interval=0.05)).start()
    waiting: subprocess.Popen[str] | None = None
    try:
        qid = store.app.start_processing("tutor-1", "lecture-3")
        store.app.start_step(qid, "compress", 1)
        wait_until(lambda: (row := store.reader.status(str(qid))) and row["status"] == "processing", 20,
                   "the led follower to apply the events")
        good = store.reader.table_rows()
        with store.view.session() as session:
            session.execute("DELETE FROM video_processing_steps")
        broken = store.reader.table_rows()

        refused = vidpipe(database_url, "rebuild-projections")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "followers of the projections are running" in refused.stdout
        assert running.key in refused.stdout and "Nothing was changed" in refused.stdout
        assert "--wait" in refused.stdout and "Traceback" not in refused.stdout + refused.stderr
        assert store.reader.table_rows() == broken

        log = tmp_path / "rebuild.log"
        with log.open("w") as out:
            waiting = subprocess.Popen(
                [sys.executable, "-m", "api.cli", "rebuild-projections", "--wait"], cwd=ROOT,
                env={**os.environ, "DATABASE_URL": database_url, "COLUMNS": "200"},
                stdout=out, stderr=subprocess.STDOUT, text=True,
            )
        wait_until(lambda: "waiting for the running followers to stop or hand over" in log.read_text(), 60,
                   "the rebuild to say it waits")
        assert running.key in log.read_text() and running.leading
        assert waiting.poll() is None and store.reader.table_rows() == broken  # it waits, writing nothing

        running.stop()  # the follower steps down: the rebuild takes the lock and runs
        assert waiting.wait(timeout=120) == 0, log.read_text()
        assert "rebuilt queue_status from 2 events" in log.read_text()
        assert store.reader.table_rows() == good
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.kill()
            waiting.wait()
        running.stop()
        store.close()
