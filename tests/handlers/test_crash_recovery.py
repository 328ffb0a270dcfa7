"""A handler process SIGKILLed in the middle of a step: QStash redelivers the
message to the restarted process, the step runs again, and the queue completes
with exactly one ``StepCompleted`` per step.

Protocol covered: a delivery whose connection dies is retried by the local
QStash server using the ``Upstash-Retry-Delay`` the dispatcher published with.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from domain import STEPS
from tests.conftest import ROOT, open_store
from tests.local.qstash_support import ThreadedServer, local_qstash
from tests.support import reserve_port, wait_until


class ApiProcess:
    """``python -m api`` as a child process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "api"], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        wait_until(self._healthy, 30, "the API process to answer /healthz")

    def _healthy(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(f"http://127.0.0.1:{self.env['PORT']}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@pytest.fixture
def qstash(tmp_path: Path) -> Iterator[ThreadedServer]:
    server = local_qstash(tmp_path / "qstash.sqlite3")
    yield server
    server.stop()


def test_a_killed_handler_is_redelivered_and_the_queue_completes(
    database_url: str, qstash: ThreadedServer, tmp_path: Path
) -> None:
    sock = reserve_port()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "QSTASH_URL": qstash.url,
        "VIDPIPE_STEP_PROVIDERS": "simulated",
        "VIDPIPE_SIMULATED_STEP_SECONDS": "2",
        "VIDPIPE_QSTASH_RETRIES": "40",
        "VIDPIPE_QSTASH_RETRY_DELAY": "500",
        "VIDPIPE_PROJECTION_POLL_SECONDS": "0.02",
    }
    api = ApiProcess(env, tmp_path / "api.log")
    store = open_store(database_url)
    try:
        api.start()
        qid = str(store.app.start_processing("tutor-1", "lecture"))
        first = wait_until(
            lambda: next((e.step for e in store.app.queue_events(qid) if type(e).__name__ == "StepStarted"), None),
            15, "a first step to start",
        )  # compress or audio-convert: the two start side by side
        api.kill()  # mid-step: each simulated step takes 2 s
        assert store.app.get_queue(qid).step(first).status == "running"
        api.start()
        wait_until(lambda: store.app.get_queue(qid).status == "completed", 60, "the queue to complete")
        events = list(store.app.queue_events(qid))
        completed = Counter(e.step for e in events if type(e).__name__ == "StepCompleted")
        assert completed == Counter(STEPS)
        killed = store.app.get_queue(qid).step(first)
        assert killed.attempt == 1 and killed.retries == 0  # redelivered, not retried
        assert "redelivered while running" in (tmp_path / "api.log").read_text()
    finally:
        api.stop()
        store.close()
