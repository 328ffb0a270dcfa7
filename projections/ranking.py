"""Pure functions of search: query terms, reciprocal rank fusion, highlighting.

Nothing here touches a database or a server, so each piece is tested on its own.

- :func:`query_terms` turns a half-remembered question into the words worth
  looking for (lower-case, stop words dropped, at most :data:`MAX_TERMS`).
- :func:`fuse_scores` merges scored lists by relative score fusion: each list's
  scores are scaled to 0..1 (min-max, so BM25 and cosine similarities of
  different models become comparable), then a moment's score is the weighted
  sum over the lists it appears in: ``semantic_weight`` for vector lists,
  ``1 - semantic_weight`` for the keyword list. On the evaluation set
  (``bench/search_eval``) it beats both retrievers alone on Recall@1, where
  reciprocal rank fusion fell between them (``make bench``: ``bench/search.py``).
- :func:`fuse` is reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR
  2009): the sum of ``weight / (k + rank)`` over the lists, by rank alone; kept
  for comparison in the benchmark.
- :func:`highlights` finds where the query's words (or words of the same stem)
  stand in a moment's text, as character offsets, so a page marks them without
  inserting markup into text it did not write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

RRF_K = 60
"""The constant of reciprocal rank fusion (the paper's value; damps the weight of the top ranks)."""
MAX_TERMS = 32
"""Most words of a query used for keyword retrieval."""
MAX_TERM_CHARS = 64

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*", re.UNICODE)

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being
    below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
    during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
    here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
    let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
    out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
    theirs them themselves then there there's these they they'd they'll they're they've this those through
    to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
    where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
    you've your yours yourself yourselves also just did does tell said say says thing things something
    remember remembered lecture lectures talk talked talking mention mentioned explain explained part
    video one""".split()
)
"""English stop words, plus the words of a question about a lecture that name no subject."""


def words(text: str) -> list[tuple[int, int, str]]:
    """The words of ``text``: (start, end, lower-case word)."""
    return [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(text)]


def query_terms(query: str) -> list[str]:
    """The distinct words of ``query`` worth retrieving by, in order."""
    terms: list[str] = []
    for _, _, word in words(query):
        word = word.replace("'", "")
        if word in STOP_WORDS or len(word) > MAX_TERM_CHARS or word in terms:
            continue
        if len(word) < 2 and not word.isdigit():
            continue
        terms.append(word)
        if len(terms) == MAX_TERMS:
            break
    return terms


def stem(word: str) -> str:
    """A light English stem: enough to mark "cells" for "cell" and "dividing" for "divide"."""
    word = word.lower().replace("'", "")
    for suffix, replacement in (
        ("ational", "ate"), ("ization", "ize"), ("fulness", "ful"), ("iveness", "ive"),
        ("ements", ""), ("ement", ""), ("ments", ""), ("ment", ""),
        ("ities", ""), ("ity", ""), ("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""),
        ("ed", ""), ("ly", ""), ("es", ""), ("s", ""), ("e", ""),
    ):
        if suffix == "s" and word.endswith("ss"):
            continue
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + replacement
    return word


def highlights(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans of ``text`` whose words share a stem with one of ``terms``."""
    stems = {stem(t) for t in terms}
    if not stems:
        return []
    return [(start, end) for start, end, word in words(text) if stem(word) in stems]


@dataclass
class Fused:
    """One moment after fusion: its score and the retrievers that found it, with its rank in each."""

    moment_id: int
    score: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def retriever(self) -> str:
        """``keyword``, ``semantic`` or ``both``."""
        kinds = {"keyword" if name == "keyword" else "semantic" for name in self.ranks}
        return "both" if len(kinds) == 2 else kinds.pop()


SEMANTIC_WEIGHT = 0.75
"""Share of the vector lists in relative score fusion (best on the evaluation set: 0.75–0.85)."""


def fuse_scores(
    lists: Mapping[str, Sequence[tuple[int, float]]], *, semantic_weight: float = SEMANTIC_WEIGHT
) -> list[Fused]:
    """Relative score fusion of scored lists of ``(moment id, score)`` (higher is better), best first.

    ``lists`` is keyed by retriever as in :func:`fuse`. Each list's scores are
    min-max scaled to 0..1 (a list whose scores are all equal scales to 1); a
    moment's score is ``(1 - semantic_weight) * keyword + semantic_weight * semantic``,
    its semantic part being its best scaled score among the vector lists (a
    moment's vectors belong to one space, so in practice it is in one of them).
    """
    if not 0.0 <= semantic_weight <= 1.0:
        raise ValueError("semantic_weight must be within 0..1")
    fused: dict[int, Fused] = {}
    parts: dict[int, list[float]] = {}  # [keyword, semantic] scaled scores
    for name, scored in lists.items():
        if not scored:
            continue
        part = 0 if name == "keyword" else 1
        values = [score for _, score in scored]
        low, high = min(values), max(values)
        for rank, (moment_id, score) in enumerate(scored, start=1):
            entry = fused.setdefault(moment_id, Fused(moment_id))
            if name in entry.ranks:
                continue
            entry.ranks[name] = rank
            scaled = (score - low) / (high - low) if high > low else 1.0
            both = parts.setdefault(moment_id, [0.0, 0.0])
            both[part] = max(both[part], scaled)
    for moment_id, (keyword, semantic) in parts.items():
        fused[moment_id].score = (1.0 - semantic_weight) * keyword + semantic_weight * semantic
    return sorted(fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), f.moment_id))


def fuse(
    lists: Mapping[str, Sequence[int]],
    *,
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
) -> list[Fused]:
    """Reciprocal rank fusion of ranked lists of moment ids (best first in each), best first.

    ``lists`` is keyed by retriever: ``"keyword"``, and one entry per vector space
    for semantic retrieval (any other name). Ties break by the best single rank, then id.
    """
    fused: dict[int, Fused] = {}
    for name, ids in lists.items():
        weight = (weights or {}).get(name, 1.0)
        for rank, moment_id in enumerate(ids, start=1):
            entry = fused.setdefault(moment_id, Fused(moment_id))
            if name in entry.ranks:
                continue
            entry.ranks[name] = rank
            entry.score += weight / (k + rank)
    return sorted(fused.values(), key=lambda f: (-f.score, min(f.ranks.values()), f.moment_id))
