"""What every chaos scenario shares: the stack as killable processes, uploads
over HTTP, waiting for queues, peak memory, and the invariant checks.

:class:`ChaosStack` starts the same processes ``make run`` starts
(:mod:`local.stack`: the local QStash server, the reference Whisper and
embedding servers when the steps are real, the API with its step webhooks,
dispatcher and projection runner) on free ports, against the scenario's
Postgres database, with their logs in ``<workdir>/stack.log``. A scenario can
SIGKILL any of them and start it again, as a crashed container is restarted.

:func:`check_invariants` is how every scenario ends: read from the event log,
the read model and storage, never from the processes under test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from api.settings import Settings
from api.token import mint
from domain import VideoProcessing
from handlers.media import tools
from handlers.storage.local import LocalStorage
from local.demo import speech_over_test_pattern
from local.stack import Service, Stack, plan
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.queue_status import QueueStatusProjection, QueueStatusReader
from projections.views import open_view

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT_OUTPUTS = ("video", "audio", "transcript_json", "transcript_srt", "transcript_vtt", "transcript_txt")
UPLOAD_PATH = "/api/video-processing/upload"
STATUS_PATH = "/api/video-processing/status/{queue_id}"
TERMINAL = ("completed", "failed", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ChaosStack:
    """The embedded stack as processes a scenario can kill and restart.

    ``steps="simulated"`` runs the four steps as timed no-ops (the pipeline's
    own machinery only; no model servers are started); ``steps="pipeline"``
    runs them for real: ffmpeg, the reference Whisper and embedding servers,
    artifacts on local disk. ``env`` goes to every process; ``service_env``
    to one (``{"whisper": {"MODEL_SERVER_SLEEP_REQUESTS": "3"}}``).
    ``extra_services`` (say a second embedding server playing E5) start
    after the model servers and before the API, and can be killed and
    restarted by name like the others.
    """

    def __init__(
        self,
        database_url: str,
        workdir: Path,
        *,
        steps: str = "simulated",
        env: dict[str, str] | None = None,
        service_env: dict[str, dict[str, str]] | None = None,
        extra_services: Iterable[Service] = (),
    ) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.storage_dir = workdir / "storage"
        base = {
            **os.environ,
            "DATABASE_URL": database_url,
            "VIDPIPE_DATA_DIR": str(workdir),
            "VIDPIPE_STORAGE_DIR": str(self.storage_dir),
            "PORT": str(free_port()),
            "LOCAL_QSTASH_PORT": str(free_port()),
            "WHISPER_PORT": str(free_port()),
            "EMBEDDING_PORT": str(free_port()),
            "E5_EMBEDDING_PORT": str(free_port()),
            "VIDPIPE_STEP_PROVIDERS": steps,
            "VIDPIPE_PROJECTION_POLL_SECONDS": "0.05",
            # retries measured in seconds, not the production minutes, so a scenario ends within minutes
            "VIDEO_STEP_RETRY_BASE_SECONDS": "1",
            "VIDEO_STEP_RETRY_MAX_SECONDS": "8",
            "LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        if steps == "simulated":  # no model server is needed: plan() starts none when a URL is given
            base.setdefault("WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL", "http://127.0.0.1:9")
            base.setdefault("BGE_HG_EMBEDDING_SERVER_API_URL", "http://127.0.0.1:9")
            base.setdefault("E5_HG_EMBEDDING_SERVER_API_URL", "http://127.0.0.1:9")
        services, api_env = plan(base)
        services[-1:-1] = extra_services  # the API (last) starts once they answer
        for service in services:
            service.env.update((service_env or {}).get(service.name, {}))
        self.api_env = api_env
        self.base_env = base
        self._log = (workdir / "stack.log").open("a", buffering=1)
        self._log_lock = threading.Lock()
        self.stack = Stack(services, base, out=self._write_log)
        self.peak_rss_kib: Counter[str] = Counter()
        self.deaths: Counter[str] = Counter()

    # ------------------------------------------------------------ processes
    def _write_log(self, line: str) -> None:
        with self._log_lock:
            self._log.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    def log(self, message: str) -> None:
        self._write_log(f"[chaos] {message}")

    @property
    def api(self) -> str:
        return self.stack.service("api").url

    @property
    def qstash(self) -> str:
        return self.api_env["QSTASH_URL"]

    def start(self) -> ChaosStack:
        self.stack.start()
        return self

    def pid(self, name: str) -> int | None:
        process = self.stack.service(name).process
        return process.pid if process is not None and process.poll() is None else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one service (SIGKILL by default: no cleanup, no goodbye)."""
        self._sample_rss()
        self.log(f"killing {name} with {signal.Signals(sig).name}")
        self.stack.kill(name, sig)
        self.deaths[name] += 1

    def restart(self, name: str) -> float:
        """Start a dead service again; returns the seconds it took to answer."""
        started = time.monotonic()
        self.stack.restart(name)
        self.log(f"{name} is back")
        return time.monotonic() - started

    def wait_models_ready(
        self,
        timeout: float = 180.0,
        names: Iterable[str] = ("whisper", "embeddings"),
        states: Iterable[str] = ("ready",),
    ) -> None:
        """Wait until each named model server's ``/health`` reports one of ``states``.

        ``ready``: the model is loaded and the next request succeeds; ``asleep``:
        loaded, not awake yet (a sleep knob is set). ``/health`` spends no model request.
        """
        wanted = set(states)
        deadline = time.monotonic() + timeout
        for name in names:
            url = self.stack.service(name).url + "/health"
            while True:
                try:
                    if httpx.get(url, timeout=2).json().get("status") in wanted:
                        break
                except (httpx.HTTPError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not become {'/'.join(sorted(wanted))} within {timeout:.0f}s")
                time.sleep(0.3)

    def alive(self, name: str) -> bool:
        return self.pid(name) is not None

    def stop(self) -> None:
        self._sample_rss()
        self.stack.stop()
        self._log.close()

    def __enter__(self) -> ChaosStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ memory
    def _sample_rss(self) -> None:
        """Remember each service's peak resident memory (VmHWM) across its restarts."""
        for service in self.stack.services:
            pid = self.pid(service.name)
            if pid is None:
                continue
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        kib = int(line.split()[1])
                        self.peak_rss_kib[service.name] = max(self.peak_rss_kib[service.name], kib)
            except OSError:
                continue

    def peak_rss_mib(self) -> dict[str, float]:
        self._sample_rss()
        return {name: round(kib / 1024, 1) for name, kib in sorted(self.peak_rss_kib.items())}

    # ------------------------------------------------------------ the public API
    def token(self, user: str, role: str = "tutor") -> str:
        return mint(Settings(), user=user, role=role)

    def upload(self, client: httpx.Client, user: str, video: Path, *, key: str | None = None) -> httpx.Response:
        """A tutor's multipart upload, as the page sends it."""
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        if key:
            headers["Idempotency-Key"] = key
        with video.open("rb") as handle:
            return client.post(self.api + UPLOAD_PATH, headers=headers,
                               files={"file": (video.name, handle, "video/mp4")})

    def status(self, client: httpx.Client, user: str, queue_id: str) -> httpx.Response:
        return client.get(self.api + STATUS_PATH.format(queue_id=queue_id),
                          headers={"Authorization": f"Bearer {self.token(user)}"})

    # ------------------------------------------------------------ the truth
    def open_app(self) -> VideoProcessing:
        return VideoProcessing(env=DatabaseUrl.parse(self.database_url).event_store_env())

    def wait_terminal(self, queue_ids: Iterable[str], timeout: float) -> bool:
        """Wait until every queue is completed, failed or cancelled (read from the event log)."""
        return wait_terminal(self.database_url, queue_ids, timeout)

    def check(self, started_after: float) -> dict[str, Any]:
        return check_invariants(self.database_url, self.storage_dir, started_after)


def wait_terminal(database_url: str, queue_ids: Iterable[str], timeout: float) -> bool:
    pending = set(queue_ids)
    deadline = time.monotonic() + timeout
    app = None
    try:
        while pending and time.monotonic() < deadline:
            try:
                app = app or VideoProcessing(env=DatabaseUrl.parse(database_url).event_store_env())
                pending = {q for q in pending if not app.get_queue(q).is_terminal}
            except Exception:  # noqa: BLE001 - the database may be restarting; ask again
                if app is not None:
                    app.close()
                app = None
            if pending:
                time.sleep(0.25)
    finally:
        if app is not None:
            app.close()
    return not pending


def check_invariants(url: str, storage_dir: Path, started_after: float) -> dict[str, Any]:
    """The checks every scenario ends with, read from the database and storage.

    - every queue is ``completed``, ``failed`` with a reason, or ``cancelled``;
    - no step has more than one ``StepCompleted`` (duplicates);
    - no artifact a step of a completed queue recorded is missing from storage;
    - the projections equal a rebuild from event 0, row for row;
    - no ffmpeg started since ``started_after`` is still alive.
    """
    env = DatabaseUrl.parse(url).event_store_env()
    app, view = VideoProcessing(env=env), open_view(env)
    storage = LocalStorage(storage_dir)
    try:
        reader = QueueStatusReader(view)
        follower = EventFollower(app, view, QueueStatusProjection())
        follower.catch_up()
        rows = view.fetchall("SELECT id, status, error FROM video_processing_queue")
        outcomes: Counter[str] = Counter()
        duplicates = lost = checked = 0
        for row in rows:
            status = row["status"]
            outcomes[status if status != "failed" or row["error"] else "failed without a reason"] += 1
            completions = Counter(e.step for e in app.queue_events(row["id"]) if type(e).__name__ == "StepCompleted")
            duplicates += sum(n - 1 for n in completions.values() if n > 1)
            for step in app.get_queue(row["id"]).steps:
                for name, key in step.outputs.items():
                    if name in ARTIFACT_OUTPUTS and status == "completed":
                        checked += 1
                        lost += not storage.exists(key)
        live = reader.table_rows()
        follower.rebuild()
        rebuilt = reader.table_rows()
        mismatches = sum(
            1 for table in live for a, b in zip(live[table], rebuilt[table], strict=False) if a != b
        ) + sum(abs(len(live[t]) - len(rebuilt[t])) for t in live)
    finally:
        view.close()
        app.close()
    return {
        "queues": len(rows),
        "completed": outcomes["completed"],
        "failed_with_reason": outcomes["failed"],
        "cancelled": outcomes["cancelled"],
        "unfinished_or_unexplained": len(rows) - outcomes["completed"] - outcomes["failed"] - outcomes["cancelled"],
        "duplicates": duplicates,
        "artifacts_checked": checked,
        "lost_artifacts": lost,
        "projection_mismatches": mismatches,
        "orphan_ffmpeg": len(ffmpeg_left_by(storage_dir, started_after)),
    }


def ffmpeg_left_by(storage_dir: Path, moment: float) -> list[int]:
    """ffmpeg processes still alive that this stack's API started (after ``moment``).

    An ffmpeg inherits the API's environment, so its ``VIDPIPE_STORAGE_DIR``
    names the stack it belongs to; ffmpeg of other stacks on the machine (a
    parallel run, a developer's ``make run``) are not counted.
    """
    # "^ffmpeg": the packaged binary's name is longer (imageio-ffmpeg's ffmpeg-linux-x86_64-v…)
    found = subprocess.run(["pgrep", "^ffmpeg"], capture_output=True, text=True).stdout.split()
    boot = time.time() - float(Path("/proc/uptime").read_text().split()[0])
    ticks = os.sysconf("SC_CLK_TCK")
    marker = f"VIDPIPE_STORAGE_DIR={storage_dir}".encode()
    pids = []
    for pid in found:
        try:
            start = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks + boot
            environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if start >= moment and marker in environment:
            pids.append(int(pid))
    return pids


def lecture_clips(directory: Path, count: int) -> list[Path]:
    """``count`` distinct short lecture videos (espeak-ng speech over a test pattern, ~3 s, 320x240), made once."""
    directory.mkdir(parents=True, exist_ok=True)
    topics = ["photosynthesis", "the French revolution", "linear algebra", "plate tectonics", "supply and demand",
              "the water cycle", "prime numbers", "the immune system", "Newton's laws", "the Roman empire"]
    clips = []
    for i in range(count):
        target = directory / f"lecture-{i:03d}.mp4"
        clips.append(target)
        if target.is_file() and target.stat().st_size:
            continue
        speech = directory / f"lecture-{i:03d}.wav"
        text = f"Lecture {i + 1}. Today we study {topics[i % len(topics)]}."
        subprocess.run([tools.espeak(), "-s", "170", "-w", str(speech), text], check=True, capture_output=True, timeout=60)
        partial = directory / f".lecture-{i:03d}.partial.mp4"
        speech_over_test_pattern(speech, partial, size="320x240", audio_bitrate="48k")
        speech.unlink()
        os.replace(partial, target)
    return clips
