"""Property: a projection rebuilt from event 0 equals the live projection, row for row.

Hypothesis writes random programs of commands over a few queues (valid ones,
redeliveries, refusals, cancellations) and runs the live follower at random
moments in between, so the live rows are built in batches of every size. Then:

- the live rows agree with the aggregates (status, step statuses, progress);
- ``rebuild()`` (what ``make rebuild-projections`` runs) gives the same rows.

Runs on SQLite and on Postgres.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain import STEPS, DomainError
from tests.conftest import Store, open_store

QUEUES = 3
operations = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, QUEUES - 1), st.integers(0, 100)),
    st.tuples(st.just("retry"), st.integers(0, QUEUES - 1), st.integers(1, 600)),
    st.tuples(st.just("fail"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("redeliver"), st.integers(0, QUEUES - 1), st.just(0)),
    st.tuples(st.just("project"), st.just(0), st.just(0)),
)


def next_move(queue: Any) -> tuple[str, str, int] | None:
    """What a healthy pipeline would do next to this queue."""
    for view in queue.steps:
        if view.status == "pending":
            return "start", view.name, 1
        if view.status == "retrying":
            return "start", view.name, view.attempt + 1
        if view.status == "running":
            return "work", view.name, view.attempt
        if view.status != "completed":
            return None
    return None


def run_program(store: Store, program: list[tuple[str, int, int]]) -> list[Any]:
    app = store.app
    qids = [app.start_processing(f"tutor-{i % 2}", f"attachment-{i}", max_retries=2) for i in range(QUEUES)]
    last: dict[int, Any] = {}
    for op, index, arg in program:
        qid = qids[index]
        queue = app.get_queue(qid)
        move = next_move(queue)
        try:
            if op == "project":
                store.follower.catch_up()
            elif op == "cancel":
                app.cancel(qid, by="tutor")
            elif op == "redeliver" and index in last:
                last[index]()
            elif move is None:
                continue
            elif op == "advance" and move[0] == "start":
                command = (lambda q, s, a: lambda: app.start_step(q, s, a))(qid, move[1], move[2])
                command()
                last[index] = command
            elif op == "advance" and arg % 3 == 0:
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


def check_rebuild(store: Store, program: list[tuple[str, int, int]]) -> None:
    qids = run_program(store, program)
    store.follower.catch_up()
    live = store.reader.table_rows()
    for qid in qids:
        queue = store.app.get_queue(qid)
        row = store.reader.status(str(qid))
        assert row["status"] == queue.status
        assert [s["status"] for s in row["steps"]] == [v.status for v in queue.steps]
        expected = 100 if queue.status == "completed" else sum(v.progress for v in queue.steps) // len(STEPS)
        assert row["progress_percentage"] == expected
        assert row["version"] == queue.version
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
