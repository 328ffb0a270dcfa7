"""Transcripts: timed segments, their four export formats, merging and chunking.

A :class:`Transcript` is what the transcribe step produces (from one or many
audio pieces, merged with their time offsets) and what the embed step reads
back. The writers yield text piece by piece, so a long transcript streams
into storage; :func:`chunk_segments` groups segments into bounded, slightly
overlapping chunks for embedding.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Segment:
    """A stretch of speech: times in seconds from the start of the whole audio."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    segments: tuple[Segment, ...] = ()
    language: str | None = None
    """ISO 639-1 code (``"en"``) or whatever the server reported; None if unknown."""
    duration: float = 0.0
    """Seconds of audio transcribed."""
    model: str | None = None
    """The model that transcribed, as the server named it."""
    language_probability: float | None = None
    """How sure the server's language detection was of ``language`` (0-1); 1.0 when the language was given;
    None when the server does not say."""

    @property
    def text(self) -> str:
        return " ".join(t for t in (s.text.strip() for s in self.segments) if t)

    def to_dict(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": round(self.duration, 3),
            "model": self.model,
            "text": self.text,
            "segments": [
                {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text.strip()}
                for i, s in enumerate(self.segments)
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """Reads :meth:`to_dict`'s shape, and OpenAI's ``verbose_json`` (same field names)."""
        segments = tuple(
            Segment(float(s["start"]), float(s["end"]), str(s.get("text", "")))
            for s in data.get("segments") or ()
        )
        duration = data.get("duration")
        if duration is None:
            duration = max((s.end for s in segments), default=0.0)
        probability = data.get("language_probability")
        probability = float(probability) if isinstance(probability, (int, float)) else None
        return cls(segments, data.get("language"), float(duration), data.get("model"), probability)


@dataclass(frozen=True)
class Chunk:
    """Consecutive segments grouped for embedding."""

    index: int
    start: float
    end: float
    text: str
    segments: tuple[int, ...] = field(default=(), compare=False)
    """Positions of its segments among the non-blank (and, if too long, cut) segments;
    consecutive chunks may share some: the overlap."""


# --------------------------------------------------------------------------- formats


def timestamp(seconds: float, decimal: str) -> str:
    """``HH:MM:SS,mmm`` for SRT (``decimal=","``), ``HH:MM:SS.mmm`` for VTT (``"."``)."""
    millis = max(round(seconds * 1000), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _cues(transcript: Transcript) -> Iterator[tuple[Segment, str]]:
    for segment in transcript.segments:
        # A blank line ends a cue in SRT and VTT, so the text must not contain one.
        text = "\n".join(line.strip() for line in segment.text.strip().splitlines() if line.strip())
        if text:
            yield segment, text.replace("-->", "->")


def write_srt(transcript: Transcript) -> Iterator[str]:
    """SubRip: numbered cues from 1, ``00:00:01,000 --> 00:00:02,500``, a blank line after each."""
    for number, (segment, text) in enumerate(_cues(transcript), start=1):
        yield f"{number}\n{timestamp(segment.start, ',')} --> {timestamp(segment.end, ',')}\n{text}\n\n"


def write_vtt(transcript: Transcript) -> Iterator[str]:
    """WebVTT: the ``WEBVTT`` header (with ``Language: es`` when known), then cues ``00:00:01.000 --> 00:00:02.500``.

    Players ignore header lines they do not know; the language line is the one YouTube's captions carry.
    """
    yield f"WEBVTT\nLanguage: {transcript.language}\n\n" if transcript.language else "WEBVTT\n\n"
    for segment, text in _cues(transcript):
        yield f"{timestamp(segment.start, '.')} --> {timestamp(segment.end, '.')}\n{text}\n\n"


def write_txt(transcript: Transcript) -> Iterator[str]:
    """Plain text: one line per segment."""
    for _, text in _cues(transcript):
        yield text.replace("\n", " ") + "\n"


def write_json(transcript: Transcript) -> Iterator[str]:
    """The transcript as JSON (:meth:`Transcript.to_dict`), segment by segment."""
    data = transcript.to_dict()
    segments = data.pop("segments")
    yield json.dumps(data, ensure_ascii=False)[:-1] + ', "segments": ['
    for index, segment in enumerate(segments):
        yield ("" if index == 0 else ",\n") + json.dumps(segment, ensure_ascii=False)
    yield "]}\n"


WRITERS: dict[str, Callable[[Transcript], Iterator[str]]] = {
    "json": write_json,
    "srt": write_srt,
    "vtt": write_vtt,
    "txt": write_txt,
}
"""Export format → writer."""


def encoded(pieces: Iterable[str]) -> Iterator[bytes]:
    """UTF-8 bytes of ``pieces``, for :meth:`Storage.put_stream`."""
    for piece in pieces:
        yield piece.encode("utf-8")


def parse_json(data: bytes | str) -> Transcript:
    return Transcript.from_dict(json.loads(data))


# --------------------------------------------------------------------------- merging


def merge(parts: Sequence[tuple[float, Transcript]], *, duration: float | None = None) -> Transcript:
    """One transcript from per-piece transcripts, each shifted by its piece's offset (seconds).

    Segments keep their order; a segment that would start before the previous
    one ended (pieces overlapping slightly) starts where that one ended.
    Language: the most common among pieces that detected one, with the
    probability the first of them gave it (the transcribe step detects on the
    first piece and names the language for the others). Duration: ``duration`` if given,
    else the end of the last piece.
    """
    segments: list[Segment] = []
    languages: Counter[str] = Counter()
    probabilities: dict[str, float] = {}
    models: list[str] = []
    last_end = 0.0
    for offset, transcript in sorted(parts, key=lambda part: part[0]):
        if transcript.language:
            languages[transcript.language] += 1
            if transcript.language_probability is not None:
                probabilities.setdefault(transcript.language, transcript.language_probability)
        if transcript.model and transcript.model not in models:
            models.append(transcript.model)
        for segment in transcript.segments:
            start = max(offset + segment.start, last_end)
            end = max(offset + segment.end, start)
            segments.append(Segment(round(start, 3), round(end, 3), segment.text))
            last_end = end
    if duration is None:
        duration = max((offset + t.duration for offset, t in parts), default=0.0)
    language = languages.most_common(1)[0][0] if languages else None
    probability = probabilities.get(language) if language else None
    return Transcript(tuple(segments), language, float(duration), ", ".join(models) or None, probability)


# --------------------------------------------------------------------------- chunking


def chunk_segments(segments: Sequence[Segment], max_chars: int = 1000, overlap_segments: int = 1) -> list[Chunk]:
    """Group consecutive segments into chunks of at most ``max_chars`` characters.

    Each chunk after the first repeats the last ``overlap_segments`` segments
    of the previous one (as many as fit), so a sentence cut by a chunk border
    is whole in one of them. A segment longer than ``max_chars`` on its own is
    cut at word boundaries, its times shared out by character position.
    Blank segments are skipped.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    pieces = [p for s in segments if s.text.strip() for p in _split_long(s, max_chars)]
    chunks: list[Chunk] = []
    first = 0
    while first < len(pieces):
        last = first + 1  # exclusive; a piece always fits on its own
        size = len(pieces[first].text)
        while last < len(pieces) and size + 1 + len(pieces[last].text) <= max_chars:
            size += 1 + len(pieces[last].text)
            last += 1
        members = pieces[first:last]
        chunks.append(
            Chunk(
                index=len(chunks),
                start=members[0].start,
                end=max(p.end for p in members),
                text=" ".join(p.text for p in members),
                segments=tuple(range(first, last)),
            )
        )
        if last >= len(pieces):
            break
        first = _next_start(pieces, first, last, max_chars, overlap_segments)
    return chunks


def _next_start(pieces: Sequence[Segment], first: int, last: int, max_chars: int, overlap: int) -> int:
    """Where the chunk after ``pieces[first:last]`` starts: overlap as far as it fits, always moving on."""
    for start in range(max(last - overlap, first + 1), last):
        size = sum(len(p.text) + 1 for p in pieces[start : last + 1]) - 1
        if size <= max_chars:
            return start
    return last


def _split_long(segment: Segment, max_chars: int) -> list[Segment]:
    text = " ".join(segment.text.split())
    if len(text) <= max_chars:
        return [Segment(segment.start, segment.end, text)]
    parts: list[str] = []
    current = ""
    for word in text.split(" "):
        while len(word) > max_chars:
            if current:
                parts.append(current)
                current = ""
            parts.append(word[:max_chars])
            word = word[max_chars:]
        if not current:
            current = word
        elif len(current) + 1 + len(word) <= max_chars:
            current += " " + word
        else:
            parts.append(current)
            current = word
    if current:
        parts.append(current)
    total = sum(len(p) for p in parts) or 1
    span = segment.end - segment.start
    result, done = [], 0
    for part in parts:
        start = segment.start + span * done / total
        done += len(part)
        result.append(Segment(round(start, 3), round(segment.start + span * done / total, 3), part))
    return result


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level Levenshtein distance over the reference length, ignoring case and punctuation."""
    ref, hyp = _words(reference), _words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1] / max(len(ref), 1)


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()
