"""Property: a projection rebuilt from event 0 equals the live projection, row for row.

Hypothesis writes random programs of commands over a few queues (valid ones,
redeliveries, refusals, cancellations, retries of ended queues) and runs the live follower at random
moments in between, so the live rows are built in batches of every size. Then:

- the live rows agree with the aggregates (status, step statuses, progress);
- ``rebuild()`` (what ``make rebuild-projections`` runs) gives the same rows.

The same holds for the search index (the moments projection): the embed step's
chunks are stored before its completion, as the real step does, and the index
rebuilt from event 0 equals the live one; only completed lectures are searchable.

Runs on SQLite and on Postgres.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import DomainError
from handlers.embedding_store import EmbeddedChunk, EmbeddingStore
from projections.follower import EventFollower
from projections.moments import MomentsProjection, MomentsReader
from projections.queue_status import weighted_progress
from tests.conftest import Store, open_store

QUEUES = 3
operations = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, QUEUES - 1), st.integers(0, 100)),
    st.tuples(st.just("retry"), st.integers(0, QUEUES - 1), st.integers(1, 600)),
    st.tuples(st.just("fail"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("resume"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("redeliver"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("project"), st.just(0), st.just(0)),
)


def next_move(queue: Any, choice: int = 0) -> tuple[str, str, int] | None:
    """What a healthy pipeline could do next to this queue; ``choice`` picks among the
    steps that may run side by side (compress and audio-convert), so they interleave."""
    if queue.is_terminal:
        return None
    done = {v.name for v in queue.steps if v.status == "completed"}
    moves: list[tuple[str, str, int]] = []
    for view in queue.steps:
        if view.status == "running":
            moves.append(("work", view.name, view.attempt))
        elif view.status in ("pending", "retrying") and set(queue.graph[view.name]) <= done:
            moves.append(("start", view.name, 1 if view.status == "pending" else view.attempt + 1))
    return moves[choice % len(moves)] if moves else None


def run_program(store: Store, program: list[tuple[str, int, int]]) -> list[Any]:
    app = store.app
    qids = [app.start_processing(f"tutor-{i % 2}", f"attachment-{i}", max_retries=2) for i in range(QUEUES)]
    last: dict[int, Any] = {}
    for op, index, arg in program:
        qid = qids[index]
        queue = app.get_queue(qid)
        move = next_move(queue, arg)
        try:
            if op == "project":
                store.follower.catch_up()
            elif op == "cancel":
                app.cancel(qid, by="tutor")
            elif op == "resume":  # the tutor retries a failed or cancelled queue
                app.resume(qid, by="tutor")
            elif op == "redeliver" and index in last:
                last[index]()
            elif move is None:
                continue
            elif op == "advance" and move[0] == "start":
                command = (lambda q, s, a: lambda: app.start_step(q, s, a))(qid, move[1], move[2])
                command()
                last[index] = command
            elif op == "advance" and arg % 3 == 0:
                if move[1] == "embed":
                    store_chunks(store, str(qid), arg)
                command = (lambda q, s, a: lambda: app.complete_step(q, s, a, {"n": a}))(qid, move[1], move[2])
                command()
                last[index] = command
            elif op == "advance":
                app.report_progress(qid, move[1], move[2], arg)
            elif op == "retry" and move[0] == "work":
                app.retry_step(qid, move[1], move[2], f"503 after {arg}s", arg)
            elif op == "fail" and move[0] == "work":
                app.fail_step(qid, move[1], move[2], "not a video")
        except DomainError:
            pass
    return qids


def store_chunks(store: Store, queue_id: str, seed: int) -> None:
    """What the embed step stores before it completes: a few chunks with text and vectors."""
    chunks = [
        EmbeddedChunk(i, 10.0 * i, 10.0 * i + 9.5, f"chunk {i} of seed {seed} about cells",
                      (1.0 + i, float(seed % 7), 1.0), "minilm", "bge")
        for i in range(1 + seed % 4)
    ]
    EmbeddingStore(store.view).replace(queue_id, chunks)


def moment_rows(store: Store) -> list[dict[str, Any]]:
    rows = store.view.fetchall(
        "SELECT m.queue_id, m.chunk_index, m.owner_id, m.start_seconds, m.end_seconds, m.text, m.model, m.dimension,"
        " m.embedding, l.status, l.filename FROM search_moments m JOIN search_lectures l ON l.queue_id = m.queue_id"
        " ORDER BY m.queue_id, m.chunk_index"
    )
    return [{**r, "embedding": bytes(r["embedding"])} for r in rows]


def check_moments_rebuild(store: Store, moments: EventFollower, program: list[tuple[str, int, int]]) -> int:
    """Checks the property; returns how many lectures ended completed (so the test can tell it was exercised)."""
    qids = run_program(store, program)
    moments.catch_up()
    live = moment_rows(store)
    reader = MomentsReader(store.view)
    for qid in qids:
        queue = store.app.get_queue(qid)
        owner = queue.owner_id
        found = {store.view.fetchone("SELECT queue_id FROM search_moments WHERE id = :id", {"id": r.moment_id})["queue_id"]
                 for r in reader.keyword(owner, ["cells"], limit=100)}
        assert (str(qid) in found) == (queue.status == "completed"), (queue.status, found)
    moments.rebuild()
    assert moment_rows(store) == live
    return sum(store.app.get_queue(qid).status == "completed" for qid in qids)


def check_rebuild(store: Store, program: list[tuple[str, int, int]]) -> None:
    qids = run_program(store, program)
    store.follower.catch_up()
    live = store.reader.table_rows()
    for qid in qids:
        queue = store.app.get_queue(qid)
        row = store.reader.status(str(qid))
        assert row["status"] == queue.status
        assert [s["status"] for s in row["steps"]] == [v.status for v in queue.steps]
        expected = 100 if queue.status == "completed" else weighted_progress({v.name: v.progress for v in queue.steps})
        assert row["progress_percentage"] == expected
        assert row["version"] == queue.version
        assert row["running_steps"] == queue.running_steps
    store.follower.rebuild()
    assert store.reader.table_rows() == live


def property_test(database_url: str, max_examples: int) -> None:
    store = open_store(database_url)

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(program=st.lists(operations, max_size=60))
    def check(program: list[tuple[str, int, int]]) -> None:
        check_rebuild(store, program)

    try:
        check()
    finally:
        store.close()


def test_rebuilt_projection_equals_live_projection(database_url: str) -> None:
    property_test(database_url, max_examples=30)


def test_rebuilt_search_index_equals_live_index(database_url: str) -> None:
    store = open_store(database_url)
    moments = EventFollower(store.app, store.view, MomentsProjection(), poll_interval=0.01)
    completed: list[int] = []

    # Mostly progress, so lectures reach the embed step and complete; the other operations still interleave.
    advance = st.tuples(st.just("advance"), st.integers(0, QUEUES - 1), st.sampled_from([0, 3, 30, 99, 7]))
    biased = st.one_of(advance, advance, advance, advance, operations)

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(program=st.lists(biased, min_size=40, max_size=80))
    def check(program: list[tuple[str, int, int]]) -> None:
        completed.append(check_moments_rebuild(store, moments, program))

    try:
        check()
    finally:
        store.close()
    assert sum(completed) > 0, "no program completed a lecture: the index was never exercised"
