"""Batched decoding's chunk-long segments cut into captions (local.models.batched.caption_segments)."""

from __future__ import annotations

from faster_whisper.transcribe import Segment, Word

from local.models.batched import CAPTION_SECONDS, caption_segments


def segment(words: list[tuple[float, float, str]], id: int = 1) -> Segment:
    return Segment(id=id, seek=0, start=words[0][0] if words else 0.0, end=words[-1][1] if words else 1.0,
                   text="".join(w for _, _, w in words) or " music", tokens=[50, 51, 52], avg_logprob=-0.2,
                   compression_ratio=1.4, no_speech_prob=0.01,
                   words=[Word(start=s, end=e, word=w, probability=0.9) for s, e, w in words] or None,
                   temperature=0.0)


def spoken(first: float, text: str, seconds_per_word: float = 0.4) -> list[tuple[float, float, str]]:
    words = text.split()
    return [(first + i * seconds_per_word, first + (i + 1) * seconds_per_word - 0.05, " " + w)
            for i, w in enumerate(words)]


def test_sentences_become_captions_and_every_word_is_kept() -> None:
    words = spoken(10.0, "The sun warms the sea. Rivers carry water downhill to the sea. Clouds form.")
    captions = list(caption_segments([segment(words)]))
    assert [c.text for c in captions] == [" The sun warms the sea.", " Rivers carry water downhill to the sea.",
                                          " Clouds form."]
    assert [c.id for c in captions] == [1, 2, 3]
    assert captions[0].start == 10.0 and captions[-1].end == words[-1][1]
    assert all(c.start < c.end and c.tokens == [] for c in captions)
    assert [w.word for c in captions for w in c.words] == [w for _, _, w in words]


def test_a_long_sentence_is_cut_before_the_word_that_makes_it_too_long() -> None:
    words = spoken(0.0, " ".join(["water"] * 60) + ".", seconds_per_word=0.5)  # 30 s without a full stop
    captions = list(caption_segments([segment(words)]))
    assert len(captions) == 5
    assert all(c.end - c.start <= CAPTION_SECONDS for c in captions)
    assert sum(len(c.words) for c in captions) == 60
    assert [c.start for c in captions] == sorted(c.start for c in captions)


def test_a_short_sentence_stays_with_the_next_and_a_segment_without_words_passes() -> None:
    words = spoken(0.0, "Yes. The drops grow heavy and fall as rain.")
    empty = segment([], id=7)
    captions = list(caption_segments([segment(words), empty]))
    assert [c.text for c in captions] == [" Yes. The drops grow heavy and fall as rain.", " music"]
    assert captions[1].id == 2 and captions[1].words is None and captions[1].tokens == [50, 51, 52]
