"""The Spanish half of the search evaluation set (``bench/search_eval/lectures_es``, ``questions_es.json``)
that ``python -m bench.search --only languages`` measures search across languages on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.search import LANGUAGE_LECTURES, text_transcript
from bench.search_eval.corpus import load_lecture, load_questions, read_lecture

EVAL = Path(__file__).resolve().parent.parent / "bench" / "search_eval"


def test_each_spanish_lecture_is_its_english_lecture_line_by_line() -> None:
    for slug in LANGUAGE_LECTURES:
        english, spanish = load_lecture(slug), read_lecture(EVAL / "lectures_es" / f"{slug}.txt")
        assert len(spanish.sentences) == len(english.sentences), slug
        # names and numbers written as digits survive translation on the same line
        for en, es in zip(english.sentences, spanish.sentences, strict=True):
            for name in ("Varennes", "Robespierre", "Rousseau", "NADPH", "ATP", "Calvin", "CAM"):
                assert (name in en) == (name in es), (slug, name, en, es)


def test_every_question_of_those_lectures_has_a_spanish_version() -> None:
    spanish = json.loads((EVAL / "questions_es.json").read_text())
    wanted = {q.id for q in load_questions() if q.lecture in LANGUAGE_LECTURES}
    assert set(spanish) == wanted and len(wanted) == 24
    assert all(text.strip() and text != q.question for q in load_questions() if (text := spanish.get(q.id)))


def test_text_transcripts_time_each_sentence_in_order() -> None:
    transcript, spans = text_transcript(["uno dos tres cuatro cinco", "seis siete"], "es")
    assert [s.text for s in transcript.segments] == ["uno dos tres cuatro cinco", "seis siete"]
    assert spans == [(0.0, 2.0), (2.6, pytest.approx(3.4))] and transcript.language == "es"
