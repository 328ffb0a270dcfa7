"""Batched Whisper decoding that keeps sequential decoding's word error rate, in caption-sized segments.

faster-whisper's ``BatchedInferencePipeline`` decodes every VAD chunk (up to
30 s) without the text before it (it forces ``condition_on_previous_text=False``),
where sequential decoding prompts each 30 s window with the previous window's
text, and now and then Whisper skips a whole sentence of a chunk. On the
10-minute benchmark lecture that cost 2.9 points of word error rate
(``bench/whisper_batched.py``, README "Whisper server"). :func:`context_pipeline`
prompts each batch with the text decoded before it (one prompt per batch, as
the pipeline's ``initial_prompt``), so segments still come out in order, a batch
at a time; a chunk whose words per second fall well below the recording's
median so far is decoded once more (``guard``), and the answer with more words
kept. :func:`caption_segments` cuts the chunk-long segments into captions at
word boundaries (sentence ends first) from the words' timestamps.

faster-whisper is imported only when a pipeline is made.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

CONTEXT_WORDS = 150
"""How much earlier text is kept for the prompt (Whisper reads at most its last 223 tokens)."""
MIN_GUARD_SECONDS = 8.0
"""Chunks shorter than this are never decoded again (too few words to judge their rate)."""
SHORT_RATE = 0.85
"""A chunk with fewer words per second than this × the recording's median so far is decoded again."""


def context_pipeline(model: Any, guard: str | None = None) -> Any:
    """A ``BatchedInferencePipeline`` over ``model`` (a loaded ``WhisperModel``) that prompts each batch with
    the text decoded before it. ``guard``: None, ``"timestamps"`` (a short chunk is decoded again with timestamp
    tokens) or ``"prompt"`` (again without the prompt; in the first batch, which has none, with timestamp
    tokens)."""
    from faster_whisper import BatchedInferencePipeline
    from faster_whisper.transcribe import Segment, Word

    class ContextBatchedPipeline(BatchedInferencePipeline):  # type: ignore[misc]
        def _batched_segments_generator(
            self, features: Any, tokenizer: Any, chunks_metadata: Any, batch_size: int, options: Any,
            log_progress: bool,
        ) -> Iterator[Segment]:
            context = (options.initial_prompt or "").split()
            number = 0
            rates: list[float] = []
            for first in range(0, len(features), batch_size):
                prompted = dataclasses.replace(options, initial_prompt=" ".join(context[-CONTEXT_WORDS:]) or None)
                batch, metadata = features[first: first + batch_size], chunks_metadata[first: first + batch_size]
                results = self.forward(batch, tokenizer, metadata, prompted)
                if guard:
                    results = self._redecode_short(batch, metadata, results, rates, tokenizer, prompted)
                for result in results:
                    for segment in result:
                        number += 1
                        context += segment["text"].split()
                        yield Segment(
                            seek=segment["seek"], id=number, text=segment["text"],
                            start=round(segment["start"], 3), end=round(segment["end"], 3),
                            words=[Word(**w) for w in segment["words"]] if options.word_timestamps else None,
                            tokens=segment["tokens"], avg_logprob=segment["avg_logprob"],
                            no_speech_prob=segment["no_speech_prob"],
                            compression_ratio=segment["compression_ratio"], temperature=options.temperatures[0],
                        )
                context = context[-CONTEXT_WORDS:]
            self.last_speech_timestamp = 0.0

        def _redecode_short(self, batch: Any, metadata: Any, results: Any, rates: list[float], tokenizer: Any,
                            options: Any) -> Any:
            import numpy as np

            words = [sum(len(s["text"].split()) for s in result) for result in results]
            rates += [w / m["duration"] for w, m in zip(words, metadata, strict=True)
                      if m["duration"] >= MIN_GUARD_SECONDS]
            if not rates:
                return results
            median = float(np.median(rates))
            for index, meta in enumerate(metadata):
                if meta["duration"] < MIN_GUARD_SECONDS or words[index] >= SHORT_RATE * median * meta["duration"]:
                    continue
                if guard == "prompt" and options.initial_prompt:
                    # The prompt is the text before the batch, not before this chunk: a sentence in it can be
                    # taken as already said and skipped. Decode the chunk without it.
                    other = dataclasses.replace(options, initial_prompt=None)
                else:
                    other = dataclasses.replace(options, without_timestamps=False)
                again = self.forward(batch[index: index + 1], tokenizer, [meta], other)
                if sum(len(s["text"].split()) for s in again[0]) > words[index]:
                    results[index] = again[0]
            return results

    return ContextBatchedPipeline(model)



CAPTION_SECONDS = 7.0
"""The longest caption :func:`caption_segments` makes (unless one word is longer)."""
SENTENCE_SECONDS = 1.0
"""A caption ends at a sentence's end once it is at least this long."""
SENTENCE_ENDS = (".", "?", "!")


def caption_segments(segments: Iterable[Any], max_seconds: float = CAPTION_SECONDS) -> Iterator[Any]:
    """Each faster-whisper segment with word timestamps cut into segments of at most ``max_seconds``: at a
    sentence's end once the caption is :data:`SENTENCE_SECONDS` long, else before the word that would make it
    too long. Every word is kept, in order; a segment without words passes as it is. The pieces' ``tokens`` are
    empty (Whisper's tokens do not map onto words one to one); ``id`` counts the pieces from 1."""
    number = 0
    for segment in segments:
        if not segment.words:
            number += 1
            yield dataclasses.replace(segment, id=number)
            continue
        piece: list[Any] = []
        for word in segment.words:
            if piece and word.end - piece[0].start > max_seconds:
                number += 1
                yield _piece(segment, piece, number)
                piece = []
            piece.append(word)
            if word.word.strip().endswith(SENTENCE_ENDS) and word.end - piece[0].start >= SENTENCE_SECONDS:
                number += 1
                yield _piece(segment, piece, number)
                piece = []
        if piece:
            number += 1
            yield _piece(segment, piece, number)


def _piece(segment: Any, words: list[Any], number: int) -> Any:
    return dataclasses.replace(segment, id=number, start=words[0].start, end=words[-1].end,
                               text="".join(w.word for w in words), tokens=[], words=list(words))
