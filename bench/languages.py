"""Benchmark of transcription in five languages: detection, word error rate, real-time factor.

The lectures of :mod:`local.lectures` (one text on photosynthesis in English,
Spanish, French, German and Portuguese, spoken by espeak-ng at 150 words a
minute, 16-18 s each) go through the reference Whisper server's own code in
this process (:func:`local.models.whisper.load_transcriber`: the packaged
``tiny.en`` and the packaged multilingual Whisper ``base``, int8, beam 5,
``WHISPER_CPU_THREADS`` default 2), twice each:

1. **detected** -- no language given, as an upload without the option:
   the detected language and its probability, the decision (transcribed, or
   refused under ``WHISPER_DETECT_MIN_PROBABILITY``), the model chosen, WER
   and RTF when transcribed;
2. **hinted** -- the language given (the queue's ``language`` option): the model
   chosen, WER against the known text, RTF (transcription seconds, decoding
   the WAV excluded, over the audio's seconds).

Detection time is reported on its own. Models are warm before anything is
timed; each figure is the least of :data:`REPEATS` runs. Printed as a table
and written to ``bench/results/languages.json``.

    python -m bench.languages
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from handlers.transcripts import word_error_rate
from local.lectures import LECTURES, speak
from local.models.errors import ModelServerError
from local.models.settings import ModelServerSettings, TranscriptionSettings
from local.models.whisper import decode, load_transcriber

RESULTS = Path(__file__).parent / "results" / "languages.json"
REPEATS = 2


def _transcribe(whisper: Any, audio: Any, language: str | None, repeats: int = REPEATS) -> dict[str, Any]:
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        began = time.perf_counter()
        try:
            plan = whisper.plan(audio, language=language, requested=None)
        except ModelServerError as refused:
            return {"refused": str(refused), "seconds": round(time.perf_counter() - began, 2)}
        planned = time.perf_counter()
        segments, _ = whisper.transcribe(audio, language=plan.language, prompt=None, temperatures=[0.0, 0.2, 0.4,
                                         0.6, 0.8, 1.0], word_timestamps=False, model=plan.model)
        text = " ".join(s.text.strip() for s in segments)
        ended = time.perf_counter()
        run = {"model": plan.model, "language": plan.language, "probability": plan.probability, "text": text,
               "plan_seconds": round(planned - began, 3), "transcribe_seconds": round(ended - planned, 3)}
        if best is None or run["transcribe_seconds"] < best["transcribe_seconds"]:
            best = run
    assert best is not None
    return best


def measure(languages: list[str] | None = None, repeats: int = REPEATS) -> dict[str, Any]:
    """The figures for ``languages`` (default: every lecture), each the best of ``repeats`` runs."""
    threads = int(os.environ.get("WHISPER_CPU_THREADS", "2"))
    whisper = load_transcriber(TranscriptionSettings(cpu_threads=threads, server=ModelServerSettings()))
    chosen = {code: LECTURES[code] for code in (languages or list(LECTURES))}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        audio = {}
        for code, lecture in chosen.items():
            with speak(lecture, Path(folder) / f"{code}.wav").open("rb") as wav:
                audio[code] = decode(wav)
        for code in audio:  # warm the models
            _transcribe(whisper, audio[code], code, repeats=1)
        for code, lecture in chosen.items():
            seconds = len(audio[code]) / 16_000
            detection = whisper.detect(audio[code])
            detected = _transcribe(whisper, audio[code], None, repeats)
            hinted = _transcribe(whisper, audio[code], code, repeats)
            row = {
                "language": code,
                "audio_seconds": round(seconds, 2),
                "detected": detection.language if detection else None,
                "detected_probability": round(detection.probability, 3) if detection else None,
                "detected_top3": [[c, round(p, 3)] for c, p in (detection.candidates[:3] if detection else ())],
                "detection_correct": bool(detection and detection.language == code),
                "no_hint": _summary(detected, lecture.text, seconds),
                "hint": _summary(hinted, lecture.text, seconds),
            }
            rows.append(row)
    correct = sum(r["detection_correct"] for r in rows)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "cpu_threads": threads,
        "models": {"en": whisper.name, "other": whisper.multilingual},
        "detect_min_probability": whisper.settings.detect_min_probability,
        "detection_accuracy": round(correct / len(rows), 3),
        "lectures": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.languages", description=__doc__.split("\n")[0])
    parser.add_argument("--languages", default=",".join(LECTURES), help="lectures to run (default: all five)")
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"runs of each, the best kept ({REPEATS})")
    args = parser.parse_args()
    result = measure([code.strip() for code in args.languages.split(",") if code.strip()], args.repeats)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    _print(result)


def _summary(run: dict[str, Any], reference: str, seconds: float) -> dict[str, Any]:
    if "refused" in run:
        return {"outcome": "refused", "reason": run["refused"]}
    return {
        "outcome": "transcribed",
        "model": run["model"],
        "language": run["language"],
        "wer": round(word_error_rate(reference, run["text"]), 3),
        "rtf": round(run["transcribe_seconds"] / seconds, 3),
        "detection_seconds": run["plan_seconds"],
        "text": run["text"],
    }


def _print(result: dict[str, Any]) -> None:
    print(f"Transcription by language ({result['machine']}, {result['cpu_threads']} threads; models "
          f"{result['models']['en']} for English, {result['models']['other']} otherwise)")
    print(f"{'lang':5} {'detected (p)':16} {'no hint':28} {'hint: model':12} {'WER':>6} {'RTF':>6}")
    for row in result["lectures"]:
        no_hint = row["no_hint"]
        outcome = (f"{no_hint['model']} WER {no_hint['wer']:.2f}" if no_hint["outcome"] == "transcribed"
                   else "refused (asks for language)")
        hint = row["hint"]
        print(f"{row['language']:5} {row['detected']} ({row['detected_probability']:.2f}){'':7} {outcome:28} "
              f"{hint.get('model', '-'):12} {hint.get('wer', float('nan')):6.2f} {hint.get('rtf', float('nan')):6.3f}")
    print(f"detection accuracy {result['detection_accuracy']:.0%}; written to {RESULTS}")


if __name__ == "__main__":
    main()
