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
3. **queue** -- four lectures at once: the first ``--queue-seconds`` (default
   120) of four other lectures of the evaluation set (:data:`QUEUE_LECTURES`),
   sent one after another (each one's time alone), then all four at once
   (0.1 s apart, so their arrival order is known): total time against the one
   after another run, each request's time, its wait (time at once − time
   alone), its time against its fair share (the sum of the four times alone,
   what an even split of the server would give), the order they were served
   in, 503 refusals (retried after ``Retry-After``), and none starved (each
   finished, none later than :data:`STARVED_FACTOR` × its fair share). The
   server is the CPU-parity server of the default decoding, kept running.

Models are warm before anything is timed. ``WHISPER_CPU_THREADS`` (default 2
here, the machine's cores) and ``WHISPER_BEAM_SIZE`` apply to both sides.
Printed as tables and written to ``bench/results/whisper_server.json``.

    python -m bench.whisper_server
    python -m bench.whisper_server --lecture photosynthesis --queue-seconds 30 --queue-lectures immune-system,photosynthesis
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
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


# ------------------------------------------------------------------ in this process
def decode_in_process(clip_list: list[Clip], console: Console, repeats: int = REPEATS) -> dict[str, Any]:
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
            for _ in range(repeats):
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


def cpu_parity(
    clip: Clip, in_process: dict[str, Any], workdir: Path, console: Console, repeats: int = REPEATS,
    keep: str | None = None,
) -> tuple[dict[str, Any], Server | None]:
    """Both modes' servers against in process; the server of mode ``keep`` is left running and returned (the
    caller stops it), the others are stopped."""
    results: dict[str, Any] = {}
    kept: Server | None = None
    try:
        for mode, batched in MODES.items():
            server = Server({"WHISPER_BATCHED": str(batched).lower()}, workdir / f"server-{mode}.log")
            try:
                server.transcribe(clip.path)  # warm
                runs = []
                for _ in range(repeats):
                    cpu, began = server.cpu_seconds(), time.monotonic()
                    body = server.transcribe(clip.path).json()
                    runs.append((server.cpu_seconds() - cpu, time.monotonic() - began))
                cpu, wall = min(runs)
            except BaseException:
                server.stop()
                raise
            if mode == keep:
                kept = server
            else:
                server.stop()
            results[mode] = _parity_row(clip, in_process[clip.name][mode], cpu, wall, body)
            console.log(f"server: {clip.name} {mode}: {results[mode]}")
    except BaseException:
        if kept is not None:
            kept.stop()
        raise
    return results, kept


def _parity_row(clip: Clip, direct: dict[str, Any], cpu: float, wall: float, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "server_cpu_seconds": round(cpu, 2), "in_process_cpu_seconds": direct["cpu_seconds"],
        "cpu_ratio": round(cpu / direct["cpu_seconds"], 2), "server_wall_seconds": round(wall, 2),
        "in_process_wall_seconds": direct["wall_seconds"],
        "server_wer": round(word_error_rate(clip.text, body["text"]), 4), "in_process_wer": direct["wer"],
    }


QUEUE_LECTURES = ("photosynthesis", "french-revolution", "sorting-algorithms", "plate-tectonics")
"""The four lectures whose first ``--queue-seconds`` are sent to the server at once."""
STARVED_FACTOR = 1.5
"""A request is starved when it finished later than this × its fair share (or not at all)."""


def cut(clip: Clip, seconds: float, directory: Path, timings: Sequence[Any] = ()) -> Clip:
    """The clip's first ``seconds`` as a WAV; its text the sentences of ``timings`` (start, end, text) spoken
    by then (the whole text when no timings are given)."""
    from handlers.media import tools

    target = directory / f"{re.sub(r'[^a-z0-9]+', '-', clip.name.lower())}-first-{seconds:g}s.wav"
    subprocess.run([tools.ffmpeg(), "-loglevel", "error", "-y", "-i", str(clip.path), "-t", f"{seconds:g}",
                    str(target)], check=True)
    text = " ".join(t.text for t in timings if t.end <= seconds) if timings else clip.text
    return Clip(f"{clip.name}, first {seconds:g} s", target, text, min(seconds, clip.seconds))


def queue_clips(lectures: Sequence[Any], seconds: float, directory: Path) -> list[Clip]:
    """The first ``seconds`` of each built lecture (:class:`bench.search_eval.corpus.BuiltLecture`)."""
    return [cut(Clip(f"lecture {built.lecture.slug}", built.audio, built.lecture.text, built.duration), seconds,
                directory, built.timings)
            for built in lectures]


def queue(
    clip_list: list[Clip], workdir: Path, console: Console, stagger: float = 0.1, server: Server | None = None
) -> dict[str, Any]:
    """The clips sent one after another, then all at once (``stagger`` apart, so their arrival order is known),
    to ``server`` (stopped afterwards) or to a server of the default settings started for them.

    A 503 (the server's queue is full) is retried after its ``Retry-After``, as the pipeline's client does; the
    request's time runs from its first try. A request's **fair share** is the time the server would take if it
    split its time evenly among them: the sum of every clip's time alone (the total of the one-after-another
    run). It is **starved** if it did not finish, or finished later than :data:`STARVED_FACTOR` × that.
    """
    server = server or Server({}, workdir / "server-queue.log")
    try:
        server.transcribe(clip_list[0].path)  # warm

        def timed(number: int, delay: float = 0.0) -> dict[str, Any]:
            time.sleep(delay)
            clip = clip_list[number]
            began, refused = time.monotonic(), 0
            while True:
                with server.http.stream("POST", "/v1/audio/transcriptions",
                                        files={"file": (clip.path.name, clip.path.read_bytes())},
                                        data={"response_format": "verbose_json"}) as response:
                    served_at = time.monotonic()  # headers come when the model begins on it
                    body = response.read()
                if response.status_code != 503 or refused >= 20:
                    break
                refused += 1
                time.sleep(float(response.headers.get("Retry-After") or 1))
            text = json.loads(body).get("text", "") if response.status_code == 200 else ""
            return {"clip": clip.name, "audio_seconds": round(clip.seconds, 2), "status": response.status_code,
                    "seconds": time.monotonic() - began, "served_after": served_at - began, "refused": refused,
                    "wer": round(word_error_rate(clip.text, text), 4) if text else None}

        began = time.monotonic()
        alone = [timed(number) for number in range(len(clip_list))]
        sequential_total = time.monotonic() - began
        began = time.monotonic()
        with ThreadPoolExecutor(len(clip_list)) as pool:
            together = list(pool.map(lambda number: timed(number, stagger * number), range(len(clip_list))))
        concurrent_total = time.monotonic() - began
    finally:
        server.stop()
    fair_share = sum(request["seconds"] for request in alone)
    requests = []
    for number, (one, both) in enumerate(zip(alone, together, strict=True)):
        requests.append({
            "clip": one["clip"], "audio_seconds": one["audio_seconds"], "alone_seconds": round(one["seconds"], 2),
            "concurrent_seconds": round(both["seconds"], 2), "sent_at": round(stagger * number, 2),
            "waited_seconds": round(max(0.0, both["seconds"] - one["seconds"]), 2),
            "share_of_fair": round(both["seconds"] / fair_share, 3), "status": both["status"],
            "refused": both["refused"], "wer_alone": one["wer"], "wer_concurrent": both["wer"],
            "served_after": round(both["served_after"], 2),
        })
    result = {
        "requests": len(clip_list), "sequential_total_seconds": round(sequential_total, 2),
        "concurrent_total_seconds": round(concurrent_total, 2),
        "concurrent_vs_sequential": round(concurrent_total / sequential_total, 3),
        "fair_share_seconds": round(fair_share, 2),
        "max_share_of_fair": max(request["share_of_fair"] for request in requests),
        "max_wait_seconds": max(request["waited_seconds"] for request in requests),
        "starved": [request["clip"] for request in requests
                    if request["status"] != 200 or request["share_of_fair"] > STARVED_FACTOR],
        "starved_factor": STARVED_FACTOR,
        "served_order": [number for number, _ in sorted(enumerate(together), key=lambda item: item[1]["served_after"]
                                                        + stagger * item[0])],
        "per_request": requests,
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
    table = Table(title=f"{q['requests']} lectures at once vs one after another (the server's request queue)")
    for column in ("clip", "audio s", "alone s", "at once s", "waited s", "of fair share", "status", "503s",
                   "WER alone", "WER at once"):
        table.add_column(column)
    for row in q["per_request"]:
        table.add_row(row["clip"], f"{row['audio_seconds']:.0f}", f"{row['alone_seconds']:.1f}",
                      f"{row['concurrent_seconds']:.1f}", f"{row['waited_seconds']:.1f}", f"{row['share_of_fair']:.2f}",
                      str(row["status"]), str(row["refused"]), _percent(row["wer_alone"]),
                      _percent(row["wer_concurrent"]))
    table.caption = (
        f"total {q['concurrent_total_seconds']:.1f} s at once vs {q['sequential_total_seconds']:.1f} s one after "
        f"another ({q['concurrent_vs_sequential']:.2f}); served in order {q['served_order']}; fair share "
        f"{q['fair_share_seconds']:.1f} s (the sum of the times alone); starved (> {q['starved_factor']:g}x fair "
        f"share or unfinished): {', '.join(q['starved']) or 'none'}"
    )
    console.print(table)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def measure(
    clip_list: list[Clip], parity: Clip, queued: list[Clip], workdir: Path, console: Console,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    """All three measurements: decoding in process on ``clip_list``, CPU parity on ``parity``, the queue of
    ``queued`` (sent at once). ``repeats``: timed runs of each decoding (the least is reported). The queue goes to
    the CPU-parity server of the default decoding (``WHISPER_BATCHED`` as the environment has it), kept running
    for it: the same server a queue server started afresh would be, one model load fewer."""
    from local.models.settings import TranscriptionSettings

    default_mode = next(mode for mode, batched in MODES.items() if batched == TranscriptionSettings().batched)
    in_process = decode_in_process(clip_list, console, repeats)
    parity_result, server = cpu_parity(parity, in_process, workdir, console, repeats, keep=default_mode)
    queued_result = queue(queued, workdir, console, server=server)
    return {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "settings": {key: value for key, value in os.environ.items() if key.startswith("WHISPER_")},
        "in_process": in_process, "parity_clip": parity.name, "cpu_parity": parity_result,
        "queue_clip_seconds": max(clip.seconds for clip in queued), "queue": queued_result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.whisper_server", description=__doc__.split("\n")[0])
    parser.add_argument("--lecture", default="immune-system", help="lecture of bench/search_eval/lectures")
    parser.add_argument("--queue-lectures", default=",".join(QUEUE_LECTURES),
                        help="comma-separated lectures sent at once (default: four)")
    parser.add_argument("--queue-seconds", type=float, default=120.0, help="length of each concurrent request")
    args = parser.parse_args(argv)
    from bench.search_eval.corpus import build_lecture, load_lecture

    os.environ.setdefault("WHISPER_CPU_THREADS", str(os.cpu_count() or 2))
    console = Console()
    clip_list = clips(args.lecture)
    with tempfile.TemporaryDirectory(prefix="bench-whisper-") as scratch:
        workdir = Path(scratch)
        lectures = [build_lecture(load_lecture(slug)) for slug in args.queue_lectures.split(",") if slug]
        results = measure(clip_list, clip_list[-1], queue_clips(lectures, args.queue_seconds, workdir), workdir,
                          console)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    report(results, console)
    console.print(f"written to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
