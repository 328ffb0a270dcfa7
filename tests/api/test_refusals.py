"""Small refusals of the public API (issue 15 item 6): huge ids are not echoed back whole, and
405 lists every method the path takes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.api.conftest import Client
from tests.handlers.conftest import Pipeline
from tests.rawhttp import Answer, head, read_answer

Served = Callable[..., Pipeline]
Clients = Callable[..., Client]
PREFIX = "/api/video-processing"
HUGE_ID = "q" * 100_000


def raw(client: Client, method: str, target: str) -> Answer:
    """One request over a raw connection (httpx refuses URLs over 64 KiB)."""

    async def go() -> Answer:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.pipeline.api.port)
        try:
            writer.write(head(method, target, {**client.headers(), "Connection": "close"}))
            return await asyncio.wait_for(read_answer(reader), 30)
        finally:
            writer.close()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/status/{id}"),
        ("DELETE", "/status/{id}"),
        ("GET", "/status/{id}/events"),
        ("GET", "/status/{id}/stream"),
        ("GET", "/status/{id}/transcript"),
    ],
)
def test_a_100_kb_queue_id_is_not_echoed_back_whole(served: Served, clients: Clients, method: str, path: str) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = raw(tutor, method, PREFIX + path.format(id=HUGE_ID))
    assert response.status == 404, response.body[:300]
    assert len(response.body) < 500
    assert "q" * 64 + "…" in response.json()["error"]


def test_a_100_kb_query_value_is_not_echoed_back_whole(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = raw(tutor, "GET", f"{PREFIX}/queue?status={HUGE_ID}")
    assert response.status == 422, response.body[:300]
    assert len(response.body) < 2000


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "PATCH", "POST"])
def test_other_methods_on_a_status_are_405_listing_get_and_delete(
    served: Served, clients: Clients, method: str
) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    response = tutor.request(method, f"{PREFIX}/status/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, DELETE"
    assert "GET, DELETE" in response.json()["error"]


def test_405_lists_the_methods_of_the_path_asked_about(served: Served, clients: Clients) -> None:
    pipeline = served()
    tutor = clients(pipeline, "tutor-a")
    upload = tutor.request("GET", f"{PREFIX}/upload")
    assert upload.status_code == 405 and upload.headers["Allow"] == "POST"
    events = tutor.request("DELETE", f"{PREFIX}/status/x/events")
    assert events.status_code == 405 and events.headers["Allow"] == "GET"
