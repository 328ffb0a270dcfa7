"""Transcripts: the four export formats parse back, pieces merge with offsets, chunks stay bounded."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from handlers.transcripts import (
    Segment,
    Transcript,
    chunk_segments,
    merge,
    parse_json,
    timestamp,
    write_json,
    write_srt,
    write_txt,
    write_vtt,
)

TRANSCRIPT = Transcript(
    (
        Segment(0.0, 1.0, " And so my fellow Americans,"),
        Segment(1.0, 4.25, "ask not what your country can do for you,"),
        Segment(3661.5, 3662.0, " ask what you can do for your country. "),
    ),
    language="en",
    duration=3663.0,
    model="tiny.en",
)


def parse_cues(body: str, kind: str) -> list[tuple[float, float, str]]:
    """A tiny SRT/VTT parser that asserts the layout: (start, end, text) per cue."""
    separator = "," if kind == "srt" else "."
    if kind == "vtt":
        header = re.match(r"WEBVTT\n(Language: [a-z]{2,3}\n)?\n", body)
        assert header, body[:40]
        body = body[header.end():]
    assert body.endswith("\n\n")
    stamp = re.compile(rf"^(\d\d):(\d\d):(\d\d){re.escape(separator)}(\d\d\d)$")

    def seconds(text: str) -> float:
        match = stamp.match(text)
        assert match, text
        h, m, s, ms = (int(g) for g in match.groups())
        return h * 3600 + m * 60 + s + ms / 1000

    cues = []
    for number, block in enumerate(body.rstrip("\n").split("\n\n"), start=1):
        lines = block.split("\n")
        if kind == "srt":
            assert lines.pop(0) == str(number)
        start, arrow, end = lines[0].split(" ")
        assert arrow == "-->"
        assert lines[1:], "a cue without text"
        cues.append((seconds(start), seconds(end), "\n".join(lines[1:])))
    return cues


def test_timestamps() -> None:
    assert timestamp(1.0, ",") == "00:00:01,000"
    assert timestamp(1.0, ".") == "00:00:01.000"
    assert timestamp(3661.5, ",") == "01:01:01,500"
    assert timestamp(59.9996, ".") == "00:01:00.000"
    assert timestamp(-0.2, ",") == "00:00:00,000"


def test_srt_exact_layout() -> None:
    srt = "".join(write_srt(TRANSCRIPT))
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\nAnd so my fellow Americans,\n\n2\n00:00:01,000 --> ")
    assert "3\n01:01:01,500 --> 01:01:02,000\nask what you can do for your country.\n\n" in srt


@pytest.mark.parametrize("kind", ["srt", "vtt"])
def test_subtitles_parse_back(kind: str) -> None:
    body = "".join((write_srt if kind == "srt" else write_vtt)(TRANSCRIPT))
    cues = parse_cues(body, kind)
    assert [(s, e) for s, e, _ in cues] == [(s.start, s.end) for s in TRANSCRIPT.segments]
    assert [t for _, _, t in cues] == [s.text.strip() for s in TRANSCRIPT.segments]


def test_blank_segments_and_blank_lines_inside_text_do_not_break_cues() -> None:
    awkward = Transcript((Segment(0, 1, "  "), Segment(1, 2, "one\n\ntwo"), Segment(2, 3, "a --> b")))
    for kind, writer in (("srt", write_srt), ("vtt", write_vtt)):
        cues = parse_cues("".join(writer(awkward)), kind)
        assert [t for _, _, t in cues] == ["one\ntwo", "a -> b"]
    assert "".join(write_txt(awkward)) == "one two\na -> b\n"


def test_vtt_of_empty_transcript_is_just_the_header() -> None:
    assert "".join(write_vtt(Transcript())) == "WEBVTT\n\n"


def test_the_language_and_its_probability_travel_with_the_transcript() -> None:
    spanish = Transcript((Segment(0, 2, "Hola a todos"),), "es", 2.0, "base", 0.98)
    assert "".join(write_vtt(spanish)).startswith("WEBVTT\nLanguage: es\n\n00:00:00.000 --> 00:00:02.000\n")
    data = json.loads("".join(write_json(spanish)))
    assert data["language"] == "es" and data["language_probability"] == 0.98 and data["model"] == "base"
    assert parse_json("".join(write_json(spanish))) == spanish
    verbose = {"language": "es", "language_probability": 0.91, "model": "base", "duration": 2.0,
               "segments": [{"start": 0.0, "end": 2.0, "text": "Hola"}]}
    assert Transcript.from_dict(verbose).language_probability == 0.91
    later = Transcript((Segment(0, 1, "Adiós"),), "es", 1.0, "base", 1.0)  # the next piece, language given
    merged = merge([(0.0, spanish), (2.0, later)])
    assert merged.language == "es" and merged.language_probability == 0.98  # the detection's, not the hint's
    assert "".join(write_srt(Transcript())) == ""


def test_txt_is_one_line_per_segment() -> None:
    assert "".join(write_txt(TRANSCRIPT)).splitlines() == [
        "And so my fellow Americans,",
        "ask not what your country can do for you,",
        "ask what you can do for your country.",
    ]


def test_json_round_trips() -> None:
    body = "".join(write_json(TRANSCRIPT))
    data = json.loads(body)
    assert data["language"] == "en" and data["model"] == "tiny.en" and data["duration"] == 3663.0
    assert data["text"].startswith("And so my fellow Americans, ask not")
    assert [s["id"] for s in data["segments"]] == [0, 1, 2]
    back = parse_json(body)
    assert back.language == TRANSCRIPT.language and back.duration == TRANSCRIPT.duration
    assert [(s.start, s.end, s.text) for s in back.segments] == [
        (s.start, s.end, s.text.strip()) for s in TRANSCRIPT.segments
    ]
    assert json.loads("".join(write_json(Transcript())))["segments"] == []


def test_reads_openai_verbose_json() -> None:
    body = {"task": "transcribe", "language": "en", "duration": 2.5, "text": "hi there",
            "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": 2.5, "text": " hi there", "tokens": [1]}]}
    transcript = Transcript.from_dict(body)
    assert transcript.segments == (Segment(0.0, 2.5, " hi there"),)
    assert transcript.text == "hi there"


def test_merge_shifts_each_piece_by_its_offset() -> None:
    first = Transcript((Segment(0.0, 4.0, "one"), Segment(4.0, 9.5, "two")), "en", 10.0, "tiny.en")
    second = Transcript((Segment(0.5, 3.0, "three"),), "en", 10.0, "tiny.en")
    third = Transcript((Segment(0.0, 2.0, "four"),), None, 5.0, "tiny.en")
    merged = merge([(10.0, second), (0.0, first), (20.0, third)], duration=25.0)
    assert [(s.start, s.end, s.text) for s in merged.segments] == [
        (0.0, 4.0, "one"), (4.0, 9.5, "two"), (10.5, 13.0, "three"), (20.0, 22.0, "four")
    ]
    assert merged.language == "en" and merged.model == "tiny.en" and merged.duration == 25.0
    assert merge([(0.0, first), (10.0, third)]).duration == 15.0


def test_merge_keeps_time_monotonic_when_pieces_overlap() -> None:
    first = Transcript((Segment(0.0, 10.4, "one"),), "en", 10.4)
    second = Transcript((Segment(0.0, 2.0, "two"),), "en", 5.0)
    merged = merge([(0.0, first), (10.0, second)])
    assert merged.segments[1].start == 10.4 and merged.segments[1].end == 12.0


# --- chunking -------------------------------------------------------------------------


def words(n: int, length: int = 4) -> str:
    return " ".join("w" * length for _ in range(n))


def test_chunks_are_bounded_overlapping_and_timed() -> None:
    segments = [Segment(float(i), i + 1.0, f"s{i} " + words(8)) for i in range(20)]  # 43-44 chars each
    chunks = chunk_segments(segments, max_chars=150, overlap_segments=1)
    assert all(len(c.text) <= 150 for c in chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for earlier, later in zip(chunks, chunks[1:]):
        assert later.segments[0] == earlier.segments[-1]  # one segment of overlap
        assert later.start == earlier.end - 1.0
    assert chunks[0].start == 0.0 and chunks[-1].end == 20.0
    covered = {i for c in chunks for i in c.segments}
    assert covered == set(range(20))
    assert chunks[0].text.startswith("s0 ") and chunks[0].text.split(" ")[9] == "s1"


def test_no_overlap_when_asked() -> None:
    segments = [Segment(float(i), i + 1.0, words(5)) for i in range(10)]
    chunks = chunk_segments(segments, max_chars=60, overlap_segments=0)
    assert sum(len(c.segments) for c in chunks) == 10


def test_overlong_segment_is_cut_at_words_with_shared_out_times() -> None:
    chunks = chunk_segments([Segment(10.0, 20.0, words(50))], max_chars=100, overlap_segments=1)
    assert len(chunks) >= 3
    assert all(len(c.text) <= 100 for c in chunks)
    assert chunks[0].start == 10.0 and chunks[-1].end == 20.0
    assert all(a.start < b.start for a, b in zip(chunks, chunks[1:]))
    assert all(not c.text.startswith(" ") and "  " not in c.text for c in chunks)


def test_blank_segments_and_empty_input() -> None:
    assert chunk_segments([]) == []
    assert chunk_segments([Segment(0, 1, "   ")]) == []
    (only,) = chunk_segments([Segment(0, 1, " "), Segment(1, 2, " hello ")])
    assert (only.start, only.end, only.text) == (1, 2, "hello")


@given(
    st.lists(st.text(alphabet="ab ", min_size=0, max_size=60), max_size=30),
    st.integers(min_value=5, max_value=120),
    st.integers(min_value=0, max_value=3),
)
def test_chunking_properties(texts: list[str], max_chars: int, overlap: int) -> None:
    segments = [Segment(float(i), i + 1.0, t) for i, t in enumerate(texts)]
    chunks = chunk_segments(segments, max_chars=max_chars, overlap_segments=overlap)
    assert all(0 < len(c.text) <= max_chars for c in chunks)
    assert all(c.start <= c.end for c in chunks)
    firsts = [c.segments[0] for c in chunks]
    assert firsts == sorted(set(firsts))  # always moving on
    if chunks:
        last = max(i for c in chunks for i in c.segments)
        assert set(range(last + 1)) == {i for c in chunks for i in c.segments}
    words_in = [w for t in texts for w in t.split()]
    if all(len(w) <= max_chars for w in words_in):
        seen = [w for c in chunks for w in c.text.split()]
        assert set(seen) == set(words_in)
