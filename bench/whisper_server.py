"""Benchmark of the reference Whisper server: decoding modes, CPU against in-process, concurrent lectures.

Three measurements in one run, on two clips: ``../shared/media/jfk.flac`` (11 s,
its known text) and one spoken lecture of the search evaluation set
(:mod:`bench.search_eval.corpus`: espeak-ng speech with the exact text, cached
under ``bench/.cache/search_eval/``):

1. **decoding** -- faster-whisper ``tiny.en`` in this process, called as the
   server calls it (:class:`local.models.whisper.Whisper`), sequential (the
   server's ``WHISPER_BATCHED=false``) and batched (``BatchedInferencePipeline``
   with VAD, the default) side by side: real-time factor, CPU seconds, word
   error rate against the known text, segments.
2. **CPU parity** -- the server as a separate process
   (``python -m local.models.transcription``) transcribing the lecture, its
   CPU seconds read from ``/proc``, next to the same decoding in this process
   (``time.process_time``, decoding the file included on both sides), for both
   modes; each the least of :data:`REPEATS` runs.
3. **queue** -- four requests for the first ``--queue-seconds`` of the lecture
   sent at once (0.1 s apart, so their arrival order is known) to the server (one works, the rest wait their turn) next to
   the same four sent one after another: total time, each request's time, the
   order they were served in.

Models are warm before anything is timed. ``WHISPER_CPU_THREADS`` (default 2
here, the machine's cores) and ``WHISPER_BEAM_SIZE`` apply to both sides.
Printed as tables and written to ``bench/results/whisper_server.json``.

    python -m bench.whisper_server
    python -m bench.whisper_server --lecture photosynthesis --queue-seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.pipeline import free_port
from handlers.transcripts import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
JFK = ROOT.parent / "shared" / "media" / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
RESULTS = ROOT / "bench" / "results" / "whisper_server.json"
MODES = {"sequential": False, "batched": True}
REPEATS = 2
"""Timed runs of each measurement; the one with the least CPU is reported (the machine is shared)."""


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    text: str
    seconds: float


def clips(lecture: str) -> list[Clip]:
    from bench.search_eval.corpus import build_lecture, load_lecture

    built = build_lecture(load_lecture(lecture))
    found = [Clip(f"lecture {lecture}", built.audio, built.lecture.text, built.duration)]
    if JFK.is_file():
        found.insert(0, Clip("jfk.flac", JFK, JFK_TEXT, 11.0))
    return found


def cut(clip: Clip, seconds: float, directory: Path) -> Path:
    """The clip's first ``seconds`` as a WAV."""
    from handlers.media import tools

    target = directory / f"first-{seconds:g}s.wav"
    subprocess.run([tools.ffmpeg(), "-loglevel", "error", "-y", "-i", str(clip.path), "-t", f"{seconds:g}",
                    str(target)], check=True)
    return target


# ------------------------------------------------------------------ in this process
def decode_in_process(clip_list: list[Clip], console: Console) -> dict[str, Any]:
    from local.models.settings import TranscriptionSettings
    from local.models.transcription import FALLBACK_TEMPERATURES
    from local.models.whisper import Whisper, decode, load_whisper

    model = load_whisper(TranscriptionSettings())
    results: dict[str, Any] = {}
    for clip in clip_list:
        for mode, batched in MODES.items():
            whisper = Whisper(model, TranscriptionSettings(batched=batched))

            def run() -> tuple[list[Any], Any]:
                with clip.path.open("rb") as handle:  # decoding the file counts, as it does in the server
                    audio = decode(handle)
                segments, info = whisper.transcribe(audio, language=None, prompt=None,
                                                    temperatures=FALLBACK_TEMPERATURES, word_timestamps=False)
                return list(segments), info

            run()  # warm
            runs = []
            for _ in range(REPEATS):
                cpu, began = time.process_time(), time.monotonic()
                segments, info = run()
                runs.append((time.process_time() - cpu, time.monotonic() - began))
            cpu, wall = min(runs)
            text = "".join(segment.text for segment in segments)
            results.setdefault(clip.name, {})[mode] = {
                "audio_seconds": round(info.duration, 2), "wall_seconds": round(wall, 2),
                "rtf": round(wall / info.duration, 4), "cpu_seconds": round(cpu, 2),
                "wer": round(word_error_rate(clip.text, text), 4), "segments": len(segments),
                "longest_segment_seconds": round(max((s.end - s.start for s in segments), default=0.0), 1),
            }
            console.log(f"in process: {clip.name} {mode}: {results[clip.name][mode]}")
    return results


# ------------------------------------------------------------------ the server
class Server:
    """``python -m local.models.transcription`` on a free port, with ``env`` added."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local.models.transcription", "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.http = httpx.Client(base_url=self.url, timeout=900)
        deadline = time.monotonic() + 120
        while True:
            try:
                if self.http.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"the Whisper server did not come up (log: {log})")
            time.sleep(0.2)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def transcribe(self, audio: Path) -> httpx.Response:
        response = self.http.post("/v1/audio/transcriptions", files={"file": (audio.name, audio.read_bytes())},
                                  data={"response_format": "verbose_json"})
        response.raise_for_status()
        return response

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(30)
        self._log.close()


def cpu_parity(clip: Clip, in_process: dict[str, Any], workdir: Path, console: Console) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for mode, batched in MODES.items():
        server = Server({"WHISPER_BATCHED": str(batched).lower()}, workdir / f"server-{mode}.log")
        try:
            server.transcribe(clip.path)  # warm
            runs = []
            for _ in range(REPEATS):
                cpu, began = server.cpu_seconds(), time.monotonic()
                body = server.transcribe(clip.path).json()
                runs.append((server.cpu_seconds() - cpu, time.monotonic() - began))
            cpu, wall = min(runs)
        finally:
            server.stop()
        direct = in_process[clip.name][mode]
        results[mode] = {
            "server_cpu_seconds": round(cpu, 2), "in_process_cpu_seconds": direct["cpu_seconds"],
            "cpu_ratio": round(cpu / direct["cpu_seconds"], 2), "server_wall_seconds": round(wall, 2),
            "in_process_wall_seconds": direct["wall_seconds"],
            "server_wer": round(word_error_rate(clip.text, body["text"]), 4), "in_process_wer": direct["wer"],
        }
        console.log(f"server: {clip.name} {mode}: {results[mode]}")
    return results


def queue(audio: Path, workdir: Path, console: Console, requests: int = 4) -> dict[str, Any]:
    server = Server({}, workdir / "server-queue.log")
    try:
        server.transcribe(audio)  # warm

        def timed(number: int, stagger: float = 0.0) -> tuple[int, float, float, int]:
            time.sleep(stagger * number)  # so that the requests arrive in the order of their numbers
            began = time.monotonic()
            with server.http.stream("POST", "/v1/audio/transcriptions",
                                    files={"file": (audio.name, audio.read_bytes())},
                                    data={"response_format": "verbose_json"}) as response:
                served_at = time.monotonic()  # headers come when the model begins on it
                response.read()
            return number, served_at, time.monotonic() - began, response.status_code

        began = time.monotonic()
        one_by_one = [timed(number) for number in range(requests)]
        sequential_total = time.monotonic() - began
        began = time.monotonic()
        with ThreadPoolExecutor(requests) as pool:
            together = list(pool.map(lambda number: timed(number, 0.1), range(requests)))
        concurrent_total = time.monotonic() - began
    finally:
        server.stop()
    result = {
        "requests": requests, "sequential_total_seconds": round(sequential_total, 2),
        "concurrent_total_seconds": round(concurrent_total, 2),
        "concurrent_request_seconds": [round(seconds, 2) for _, _, seconds, _ in together],
        "sequential_request_seconds": [round(seconds, 2) for _, _, seconds, _ in one_by_one],
        "statuses": [status for *_, status in together],
        "served_order": [number for number, *_ in sorted(together, key=lambda item: item[1])],
    }
    console.log(f"queue: {result}")
    return result


# ------------------------------------------------------------------ report
def report(results: dict[str, Any], console: Console) -> None:
    table = Table(title="decoding in process (faster-whisper tiny.en, as the server calls it)")
    for column in ("clip", "mode", "RTF", "CPU s", "WER", "segments", "longest segment s"):
        table.add_column(column)
    for clip, modes in results["in_process"].items():
        for mode, row in modes.items():
            table.add_row(clip, mode, f"{row['rtf']:.3f}", f"{row['cpu_seconds']:.1f}", f"{100 * row['wer']:.1f} %",
                          str(row["segments"]), f"{row['longest_segment_seconds']:.1f}")
    console.print(table)
    table = Table(title=f"CPU: server process vs in process ({results['parity_clip']})")
    for column in ("mode", "server CPU s", "in-process CPU s", "ratio", "server wall s", "in-process wall s"):
        table.add_column(column)
    for mode, row in results["cpu_parity"].items():
        table.add_row(mode, f"{row['server_cpu_seconds']:.1f}", f"{row['in_process_cpu_seconds']:.1f}",
                      f"{row['cpu_ratio']:.2f}", f"{row['server_wall_seconds']:.1f}",
                      f"{row['in_process_wall_seconds']:.1f}")
    console.print(table)
    q = results["queue"]
    console.print(
        f"queue: {q['requests']} x {results['queue_clip_seconds']:g} s at once {q['concurrent_total_seconds']:.1f} s "
        f"vs one after another {q['sequential_total_seconds']:.1f} s; served in order {q['served_order']}, "
        f"statuses {q['statuses']}, each {q['concurrent_request_seconds']} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whisper_server", description=__doc__.split("\n")[0])
    parser.add_argument("--lecture", default="immune-system", help="lecture of bench/search_eval/lectures")
    parser.add_argument("--queue-seconds", type=float, default=60.0, help="length of each concurrent request")
    args = parser.parse_args(argv)
    os.environ.setdefault("WHISPER_CPU_THREADS", str(os.cpu_count() or 2))
    console = Console()
    clip_list = clips(args.lecture)
    lecture = clip_list[-1]
    with tempfile.TemporaryDirectory(prefix="bench-whisper-") as scratch:
        workdir = Path(scratch)
        in_process = decode_in_process(clip_list, console)
        parity = cpu_parity(lecture, in_process, workdir, console)
        queued = queue(cut(lecture, args.queue_seconds, workdir), workdir, console)
    results = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "settings": {key: value for key, value in os.environ.items() if key.startswith("WHISPER_")},
        "in_process": in_process, "parity_clip": lecture.name, "cpu_parity": parity,
        "queue_clip_seconds": args.queue_seconds, "queue": queued,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    report(results, console)
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
