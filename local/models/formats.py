"""Transcription response bodies, rendered piece by piece as segments arrive.

Each renderer takes faster-whisper's lazy segment generator and yields text,
so a long transcript streams to the client instead of sitting in memory
(``verbose_json`` keeps only the plain text, which it writes last).

With ``stream=true`` the answer is server-sent events instead
(:func:`render_events`), OpenAI's streaming-transcription events: a
``transcript.text.delta`` and a ``transcript.text.segment`` (with ``start`` and
``end``) as each segment is decoded, then one ``transcript.text.done`` that
carries the whole result — for ``verbose_json`` every field the plain answer
has, beside ``type``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, Protocol

ResponseFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
"""The response formats OpenAI's ``/v1/audio/transcriptions`` defines."""

RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "verbose_json", "vtt")

MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


class Word(Protocol):
    start: float
    end: float
    word: str


class Segment(Protocol):
    """The fields of ``faster_whisper.transcribe.Segment`` used here."""

    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float | None
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: Sequence[Word] | None


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS,mmm`` (SRT, ``decimal=","``) or ``HH:MM:SS.mmm`` (VTT)."""
    millis = max(round(seconds * 1000), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def render_text(segments: Iterable[Segment]) -> Iterator[str]:
    """The transcript as plain text, one line at the end."""
    first = True
    for segment in segments:
        piece = segment.text.strip()
        if piece:
            yield piece if first else " " + piece
            first = False
    yield "\n"


def render_json(segments: Iterable[Segment]) -> Iterator[str]:
    """``{"text": ...}``, the text streamed as JSON string pieces."""
    yield '{"text": "'
    for piece in render_text(segments):
        yield _json_string_content(piece.rstrip("\n"))
    yield '"}'


def render_srt(segments: Iterable[Segment]) -> Iterator[str]:
    for number, segment in enumerate(segments, start=1):
        span = f"{timestamp(segment.start, ',')} --> {timestamp(segment.end, ',')}"
        yield f"{number}\n{span}\n{segment.text.strip()}\n\n"


def render_vtt(segments: Iterable[Segment]) -> Iterator[str]:
    yield "WEBVTT\n\n"
    for segment in segments:
        span = f"{timestamp(segment.start, '.')} --> {timestamp(segment.end, '.')}"
        yield f"{span}\n{segment.text.strip()}\n\n"


def render_verbose_json(
    segments: Iterable[Segment], *, language: str, duration: float, with_words: bool,
    facts: dict[str, Any] | None = None,
) -> Iterator[str]:
    """OpenAI's ``verbose_json``: task, language, (``facts``), duration, segments, (words), text, usage.

    ``facts`` are this server's additions after ``language``: ``language_probability`` and ``model``.
    """
    head = {"task": "transcribe", "language": language, **(facts or {}), "duration": round(duration, 3)}
    yield json.dumps(head)[:-1] + ', "segments": ['
    text: list[str] = []
    words: list[dict[str, Any]] = []
    for index, segment in enumerate(segments):
        yield ("" if index == 0 else ", ") + json.dumps(segment_object(index, segment))
        text.append(segment.text)
        if with_words:
            words.extend(word_object(word) for word in segment.words or ())
    yield "]"
    if with_words:
        yield ', "words": ' + json.dumps(words)
    usage = {"type": "duration", "seconds": math.ceil(duration)}
    yield f', "text": {json.dumps("".join(text).strip())}, "usage": {json.dumps(usage)}}}'


EVENT_STREAM = "text/event-stream"
STREAMABLE_FORMATS = ("json", "verbose_json")


def server_event(data: dict[str, Any]) -> str:
    """One server-sent event: ``data: <json>`` and a blank line."""
    return f"data: {json.dumps(data)}\n\n"


def render_events(
    segments: Iterable[Segment], *, verbose: bool, language: str, duration: float, with_words: bool,
    facts: dict[str, Any] | None = None,
) -> Iterator[str]:
    """Server-sent events: two per segment as it is decoded, then ``transcript.text.done`` with the result."""
    objects: list[dict[str, Any]] = []
    words: list[dict[str, Any]] = []
    text: list[str] = []
    for index, segment in enumerate(segments):
        entry = segment_object(index, segment)
        segment_id = f"seg_{index}"
        yield server_event({"type": "transcript.text.delta", "delta": segment.text, "segment_id": segment_id})
        yield server_event({"type": "transcript.text.segment", "id": segment_id, "start": entry["start"],
                            "end": entry["end"], "text": segment.text})
        text.append(segment.text)
        if verbose:
            objects.append(entry)
            if with_words:
                words.extend(word_object(word) for word in segment.words or ())
    done: dict[str, Any] = {"type": "transcript.text.done"}
    if verbose:
        done.update(task="transcribe", language=language, **(facts or {}), duration=round(duration, 3),
                    segments=objects)
        if with_words:
            done["words"] = words
    done.update(text="".join(text).strip(), usage={"type": "duration", "seconds": math.ceil(duration)})
    yield server_event(done)


def error_event(message: str) -> str:
    """What a stream ends with when decoding failed after it began."""
    return server_event({"type": "error", "error": message})


def segment_object(index: int, segment: Segment) -> dict[str, Any]:
    """One entry of ``segments`` in OpenAI's shape (ids from 0)."""
    return {
        "id": index,
        "seek": int(segment.seek),
        "start": float(segment.start),
        "end": float(segment.end),
        "text": segment.text,
        "tokens": [int(token) for token in segment.tokens],
        "temperature": float(segment.temperature or 0.0),
        "avg_logprob": float(segment.avg_logprob),
        "compression_ratio": float(segment.compression_ratio),
        "no_speech_prob": float(segment.no_speech_prob),
    }


def word_object(word: Word) -> dict[str, Any]:
    return {"word": word.word, "start": float(word.start), "end": float(word.end)}


def renderer(
    response_format: str, *, language: str, duration: float, with_words: bool, facts: dict[str, Any] | None = None
) -> Callable[[Iterable[Segment]], Iterator[str]]:
    """The renderer for ``response_format`` (one of ``RESPONSE_FORMATS``)."""
    if response_format == "verbose_json":
        return lambda segments: render_verbose_json(
            segments, language=language, duration=duration, with_words=with_words, facts=facts
        )
    return {"json": render_json, "text": render_text, "srt": render_srt, "vtt": render_vtt}[response_format]


def _json_string_content(text: str) -> str:
    return json.dumps(text)[1:-1]
