"""Unit and property tests of the local QStash server's pure rules: which due messages may
start (FIFO queues, flow control), what a bulk request targets, and the flow-control header."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from local.qstash.admission import FlowState, QueueState, admit
from local.qstash.errors import ApiError
from local.qstash.flow_control import FlowControlError, parse_flow_control
from local.qstash.message import Message
from local.qstash.selection import DLQ_FILTERS, MESSAGE_FILTERS, parse_selection


def _message(index: int, queue: str | None = None, key: str | None = None, **fields: object) -> Message:
    return Message(
        id=f"msg_{index}",
        url=f"http://127.0.0.1:9/{index}",
        method="POST",
        body=b"",
        headers={},
        max_retries=3,
        created_at=float(index),
        not_before=0.0,
        queue=queue,
        queue_seq=index if queue else None,
        flow_control_key=key,
        **fields,  # type: ignore[arg-type]
    )


@settings(max_examples=200, deadline=None)
@given(
    keys=st.lists(st.sampled_from(["a", "b", None]), min_size=0, max_size=30),
    parallelism=st.integers(1, 5),
    rate=st.none() | st.integers(1, 5),
    in_flight=st.integers(0, 6),
    limit=st.integers(0, 40),
)
def test_admission_never_exceeds_a_keys_limits(
    keys: list[str | None], parallelism: int, rate: int | None, in_flight: int, limit: int
) -> None:
    """Property: per flow-control key, in flight after admission <= parallelism (unless it
    already was above), starts <= rate; never more than ``limit``; order kept; unkeyed
    messages are held only by ``limit``."""
    candidates = [_message(i, key=key) for i, key in enumerate(keys)]
    flows = {key: FlowState(parallelism, rate, in_flight, 0) for key in ("a", "b")}
    admitted, held = admit(candidates, limit=limit, queues={}, flows=flows)
    assert len(admitted) <= limit
    assert [m.id for m in admitted] == [m.id for m in candidates if m in admitted]
    for key in ("a", "b"):
        started = sum(1 for m in admitted if m.flow_control_key == key)
        assert started <= max(0, parallelism - in_flight)
        assert rate is None or started <= rate
    considered = candidates[: candidates.index(admitted[-1]) + 1] if admitted else []
    assert all(m in admitted for m in considered if m.flow_control_key is None)
    assert held + len(admitted) <= len(candidates)


def test_queue_admission_is_the_window_and_nothing_when_paused() -> None:
    """A queued message starts only inside its queue's window; a paused queue starts none."""
    candidates = [_message(i, queue="q") for i in range(4)]
    window = QueueState(paused=False, window=frozenset({"msg_0", "msg_1"}))
    admitted, held = admit(candidates, limit=10, queues={"q": window}, flows={})
    assert [m.id for m in admitted] == ["msg_0", "msg_1"] and held == 2
    paused = QueueState(paused=True, window=frozenset({"msg_0"}))
    assert admit(candidates, limit=10, queues={"q": paused}, flows={}) == ([], 4)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("whisper", "parallelism=2", (2, None, 1.0)),
        ("k", "rate=10, period=1m", (None, 10, 60.0)),
        ("k", "parallelism=1,rate=3,period=30", (1, 3, 30.0)),
        ("k", " Parallelism = 4 ", (4, None, 1.0)),
    ],
)
def test_flow_control_header(key: str, value: str, expected: tuple[object, ...]) -> None:
    flow = parse_flow_control(key, value)
    assert flow is not None and (flow.parallelism, flow.rate, flow.period_s) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [("k", None), (None, "parallelism=1"), ("k", "rate=0"), ("k", "period=1s"), ("k", "parallelism=1, parallelism=2"),
     ("k", "rate=1, period=-1s"), ("k" * 300, "rate=1")],
)
def test_flow_control_header_refused(key: str | None, value: str | None) -> None:
    with pytest.raises(FlowControlError):
        parse_flow_control(key, value)


def test_no_flow_control_headers() -> None:
    assert parse_flow_control(None, None) is None


def test_selection_ids_from_query_and_body() -> None:
    """Ids from the query (TS SDK) and the JSON body (Python SDK) are exactly the target."""
    query = parse_selection([("messageIds", "a"), ("messageIds", "b")], None, ids_key="messageIds", filters=MESSAGE_FILTERS)
    assert query.ids == ("a", "b") and not query.everything
    body = parse_selection([], {"messageIds": ["c"]}, ids_key="messageIds", filters=MESSAGE_FILTERS)
    assert body.ids == ("c",) and not body.everything


def test_only_the_bare_request_selects_everything() -> None:
    """Cancel-all is only the request with neither ids nor filters (count and the token allowed)."""
    for query in ([], [("count", "5")], [("qstash_token", "t")], [("cursor", "3"), ("count", "1")]):
        assert parse_selection(query, None, ids_key="messageIds", filters=MESSAGE_FILTERS).everything
    labelled = parse_selection([("label", "x")], None, ids_key="messageIds", filters=MESSAGE_FILTERS)
    assert not labelled.everything and labelled.filters == {"label": ("x",)}


@given(st.lists(st.tuples(st.text(min_size=1, max_size=12), st.text(max_size=12)), max_size=6))
def test_selection_never_silently_widens(query: list[tuple[str, str]]) -> None:
    """Property: any query either is refused (ApiError) or parses to a selection whose
    'everything' holds only when it named no ids and no filter."""
    try:
        selection = parse_selection(query, None, ids_key="dlqIds", filters=DLQ_FILTERS)
    except ApiError:
        return
    named = {name for name, _ in query} - {"count", "cursor", "qstash_token"}
    assert selection.everything == (not named)
