"""The lecture-search evaluation set itself (``bench/search_eval``): enough lectures and questions, questions
that are paraphrases rather than copies, and built audio whose sentence timings match the samples."""

from __future__ import annotations

import json
import re
import subprocess
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.search_eval.corpus import (
    EDGE_SILENCE_SECONDS,
    QUESTION_KINDS,
    SAMPLE_RATE,
    SENTENCE_PAUSE_SECONDS,
    VOICE,
    WORDS_PER_MINUTE,
    CorpusError,
    Lecture,
    build_lecture,
    content_words,
    expected_moment,
    is_hit,
    load_lectures,
    load_questions,
    sentence_of,
    tool,
    transcribe,
    wav_seconds,
)
from handlers.transcripts import Segment, word_error_rate


def _missing_tools() -> str | None:
    try:
        tool("espeak-ng"), tool("ffmpeg")
    except CorpusError as error:
        return str(error)
    return None


MISSING_TOOLS = _missing_tools()
needs_tools = pytest.mark.skipif(MISSING_TOOLS is not None, reason=MISSING_TOOLS or "")


# ------------------------------------------------------------------ the text
def test_six_lectures_of_three_to_ten_minutes_one_sentence_a_line() -> None:
    lectures = load_lectures()
    assert len(lectures) >= 6
    for lecture in lectures:
        assert 450 <= lecture.words <= 1200, lecture.slug
        assert 180 <= lecture.estimated_seconds <= 600, (lecture.slug, lecture.estimated_seconds)
        for sentence in lecture.sentences:
            assert re.fullmatch(r"[A-Z].*[.?!]", sentence), (lecture.slug, sentence)


def test_lectures_are_on_different_subjects_yet_share_everyday_words() -> None:
    vocabulary = {lecture.slug: content_words(lecture.text) for lecture in load_lectures()}
    slugs = sorted(vocabulary)
    for i, first in enumerate(slugs):
        for second in slugs[i + 1 :]:
            shared = vocabulary[first] & vocabulary[second]
            assert len(shared) / len(vocabulary[first] | vocabulary[second]) < 0.2, (first, second)
    # words that keyword search cannot use to tell the lectures apart
    for word in ("energy", "cell", "pressure", "market", "order"):
        assert sum(word in words for words in vocabulary.values()) >= 2, word


def test_at_least_sixty_questions_paraphrased_of_every_kind() -> None:
    lectures = load_lectures()
    questions = load_questions(lectures=lectures)
    assert len(questions) >= 60
    assert len({question.id for question in questions}) == len(questions)
    per_lecture = Counter(question.lecture for question in questions)
    assert set(per_lecture) == {lecture.slug for lecture in lectures}
    assert min(per_lecture.values()) >= 10
    kinds = Counter(question.kind for question in questions)
    for kind in QUESTION_KINDS:
        assert kinds[kind] >= len(questions) / 5, kinds
    lengths = {lecture.slug: len(lecture.sentences) for lecture in lectures}
    for question in questions:
        assert 0 <= question.sentence < lengths[question.lecture]
        sentence = sentence_of(question, lectures)
        asked, answer = content_words(question.question), content_words(sentence)
        shared = asked & answer
        assert _plain(question.question) not in _plain(sentence), question.id
        assert len(shared) <= len(answer) / 2, (question.id, sorted(shared))
        if question.kind == "semantic":
            assert len(shared) <= 1, (question.id, sorted(shared))


def test_a_bad_question_file_is_refused_naming_the_question(tmp_path: Path) -> None:
    lectures = (Lecture("tiny", ("One sentence.", "Another sentence.")),)
    good = {"id": "q1", "lecture": "tiny", "question": "What is it?", "sentence": 1, "kind": "keyword"}
    cases = {
        "sentence 2": [dict(good, sentence=2)],
        "used twice": [good, good],
        "'nowhere', which does not exist": [dict(good, lecture="nowhere")],
        "'sentence' as a non-empty int": [dict(good, sentence="1")],
        "kind 'easy'": [dict(good, kind="easy")],
        "JSON list": {"questions": []},
    }
    path = tmp_path / "questions.json"
    for message, content in cases.items():
        path.write_text(json.dumps(content))
        with pytest.raises(CorpusError, match=re.escape(message)):
            load_questions(path, lectures)
    path.write_text(json.dumps([good]))
    assert load_questions(path, lectures)[0].sentence == 1


def test_a_lecture_with_a_blank_line_is_refused(tmp_path: Path) -> None:
    (tmp_path / "gappy.txt").write_text("First sentence.\n\nSecond sentence.\n")
    with pytest.raises(CorpusError, match="line 2 is blank"):
        load_lectures(tmp_path)


# ------------------------------------------------------------------ what a hit is
def test_a_hit_lies_within_fifteen_seconds_of_the_expected_span() -> None:
    expected = (100.0, 106.0)
    assert is_hit(expected, (100.0, 106.0))
    assert is_hit(expected, (85.0, 121.0))
    assert is_hit(expected, (88.0, 95.0))  # just before the sentence: playback lands within 15 s
    assert not is_hit(expected, (84.9, 104.0))
    assert not is_hit(expected, (102.0, 121.1))
    assert not is_hit(expected, (60.0, 160.0))  # contains the sentence, but is no moment
    assert not is_hit(expected, (200.0, 210.0))
    with pytest.raises(ValueError):
        is_hit(expected, (10.0, 5.0))


# ------------------------------------------------------------------ building
@needs_tools
def test_built_lecture_has_monotonic_timings_that_cover_its_audio(tmp_path: Path) -> None:
    lecture = min(load_lectures(), key=lambda candidate: candidate.words)
    built = build_lecture(lecture, tmp_path)

    with wave.open(str(built.audio), "rb") as audio:
        assert (audio.getframerate(), audio.getnchannels(), audio.getsampwidth()) == (SAMPLE_RATE, 1, 2)
        duration = audio.getnframes() / audio.getframerate()
    assert built.duration == pytest.approx(duration, abs=1e-3)
    assert 180 <= duration <= 600
    assert duration == pytest.approx(lecture.estimated_seconds, rel=0.2)  # so the word-count check means something

    timings = built.timings
    assert [timing.index for timing in timings] == list(range(len(lecture.sentences)))
    assert [timing.text for timing in timings] == list(lecture.sentences)
    assert timings[0].start == pytest.approx(EDGE_SILENCE_SECONDS, abs=1e-3)
    for before, after in zip(timings, timings[1:], strict=False):
        assert before.start < before.end < after.start
        assert after.start - before.end == pytest.approx(SENTENCE_PAUSE_SECONDS, abs=1e-3)
    assert duration - timings[-1].end == pytest.approx(EDGE_SILENCE_SECONDS, abs=2e-3)

    made = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert build_lecture(lecture, tmp_path) == built
    assert {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()} == made

    question = next(question for question in load_questions() if question.lecture == lecture.slug)
    assert expected_moment(question, tmp_path) == built.span(question.sentence)


@needs_tools
def test_sentence_spans_match_the_speech_and_a_changed_text_is_rebuilt(tmp_path: Path) -> None:
    first = "The cell walls hold the pressure."
    lecture = Lecture("tiny", (first, "Energy flows in order."))
    built = build_lecture(lecture, tmp_path)

    alone = tmp_path / "alone.wav"
    subprocess.run([tool("espeak-ng"), "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-w", str(alone), first], check=True)
    start, end = built.span(0)
    assert end - start == pytest.approx(wav_seconds(alone), abs=1e-3)

    samples = _samples(built.audio)
    pause = samples[round((end + 0.05) * SAMPLE_RATE) : round((built.span(1)[0] - 0.05) * SAMPLE_RATE)]
    spoken = samples[round(start * SAMPLE_RATE) : round(end * SAMPLE_RATE)]
    assert np.abs(pause).max() < 50
    assert np.abs(spoken).max() > 3000

    timings = next(tmp_path.glob("tiny.*.timings.json"))
    timings.write_text("{not json")
    assert build_lecture(lecture, tmp_path) == built  # an unreadable cache is built again

    changed = build_lecture(Lecture("tiny", (first, "Energy flows in a different order.")), tmp_path)
    assert changed.audio != built.audio
    assert not built.audio.exists()
    assert changed.span(0) == built.span(0)
    assert changed.span(1)[1] - changed.span(1)[0] > built.span(1)[1] - built.span(1)[0]


@needs_tools
def test_transcripts_come_from_the_servers_model_and_are_cached(tmp_path: Path) -> None:
    lecture = Lecture("tiny", (
        "Plants turn sunlight into sugar inside their leaves.",
        "Oxygen is released into the air as a by-product.",
    ))
    built = build_lecture(lecture, tmp_path)
    transcript = transcribe(built, tmp_path)
    assert transcript.model == "tiny.en"
    assert transcript.segments and all(isinstance(segment, Segment) for segment in transcript.segments)
    assert all(0 <= s.start <= s.end <= built.duration + 0.5 for s in transcript.segments)
    assert word_error_rate(lecture.text, transcript.text) < 0.35

    class NoModel:
        def transcribe(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("the cached transcript should have been used")

    assert transcribe(built, tmp_path, whisper=NoModel()) == transcript  # type: ignore[arg-type]


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as audio:
        return np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2").astype(np.int32)
