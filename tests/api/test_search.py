"""Lecture search and playback over HTTP, on SQLite and Postgres.

Lectures go through the served pipeline (local QStash, step webhooks, the
moments projection) with scripted compress/transcribe steps and the real embed
step on the reference embedding server (all-MiniLM-L6-v2), so the index holds
real vectors. What is checked: hybrid ranking finds the moment by meaning and
by words, owners never see each other's moments, bad questions get 422 or an
empty answer (never a 5xx), a sleeping embedding server degrades search to
keywords within a second, and signed media links play (with Range) exactly one
artifact of one owner.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Client, fake_video
from tests.api.search_support import LECTURES, search_providers
from tests.handlers.model_fakes import fake_server, loading, reference_embedding_server


@pytest.fixture(scope="module")
def embedding_url() -> Iterator[str]:
    with reference_embedding_server() as url:
        yield url


@pytest.fixture
def lectures(served: Callable[..., Any], clients: Callable[..., Client], database_url: str, tmp_path: Path,
             embedding_url: str) -> Iterator[Callable[..., tuple[Any, dict[str, Client]]]]:
    """Start the served pipeline with search providers; tutors A and B upload the given lectures.
    The embed steps' views of the store are closed afterwards (their pools held 3 Postgres connections each)."""
    views: list[Any] = []

    def start(uploads: dict[str, list[str]], **overrides: Any) -> tuple[Any, dict[str, Client], dict[str, str]]:
        overrides.setdefault("BGE_HG_EMBEDDING_SERVER_API_URL", embedding_url)
        storage = tmp_path / "storage"
        providers = search_providers(database_url, storage, embedding_url)
        views.append(providers["embed"].store.view)
        pipeline = served(providers, VIDPIPE_STORAGE_DIR=str(storage), **overrides)
        tutors = {name: clients(pipeline, f"tutor-{name}") for name in uploads}
        queues: dict[str, str] = {}
        for seed, (name, filenames) in enumerate(uploads.items()):
            for number, filename in enumerate(filenames):
                response = tutors[name].upload(fake_video(seed=seed * 10 + number), filename=filename)
                assert response.status_code == 202, response.text
                queues[f"{name}:{filename}"] = response.json()["queue_id"]
        for key, queue_id in queues.items():
            tutor = tutors[key.split(":")[0]]
            assert tutor.wait_for(queue_id)["status"] == "completed", tutor.status(queue_id)
            wait_searchable(tutor, queue_id, key.split(":", 1)[1])
        return pipeline, tutors, queues

    try:
        yield start  # type: ignore[misc]
    finally:
        for view in views:
            view.close()


def wait_searchable(tutor: Client, queue_id: str, filename: str, timeout: float = 10) -> None:
    """Until the moments projection has indexed the lecture (it follows the log a moment after the status)."""
    words = LECTURES[filename][0][2]
    deadline = time.monotonic() + timeout
    while not search(tutor, words, queue_id=queue_id, mode="keyword")["moments"]:
        assert time.monotonic() < deadline, f"queue {queue_id} never became searchable"
        time.sleep(0.05)


def search(tutor: Client, q: str, **params: Any) -> dict[str, Any]:
    response = tutor.get("/api/search", params={"q": q, **params})
    assert response.status_code == 200, response.text
    return dict(response.json())


def at(script_index: int, lecture: str) -> tuple[float, float]:
    start, end, _ = LECTURES[lecture][script_index]
    return start, end


def covers(moment: dict[str, Any], span: tuple[float, float]) -> bool:
    return moment["start_seconds"] <= span[0] + 0.01 and moment["end_seconds"] >= span[1] - 0.01


def test_a_half_remembered_question_lands_on_the_right_moment(lectures: Callable[..., Any]) -> None:
    _, tutors, queues = lectures({"a": ["photosynthesis.mp4", "french-revolution.mp4"]})
    tutor = tutors["a"]

    # By meaning: few words in common with "chlorophyll absorbs sunlight and turns its energy into sugar".
    answer = search(tutor, "how does a leaf make food out of light?")
    assert answer["mode"] == "hybrid" and answer["notice"] is None
    best = answer["moments"][0]
    assert best["queue_id"] == queues["a:photosynthesis.mp4"] and best["filename"] == "photosynthesis.mp4"
    assert covers(best, at(1, "photosynthesis.mp4"))
    assert best["retriever"] in ("semantic", "both")

    # By a distinctive word: the keyword retriever finds it, and the word is marked.
    answer = search(tutor, "when was the Bastille stormed")
    best = answer["moments"][0]
    assert best["queue_id"] == queues["a:french-revolution.mp4"]
    assert covers(best, at(1, "french-revolution.mp4"))
    assert best["retriever"] == "both"
    marked = [best["text"][a:b] for a, b in best["highlights"]]
    assert "Bastille" in marked and "stormed" in marked
    assert "<mark>Bastille</mark>" in best["marked"]

    # One lecture only.
    only = search(tutor, "energy", queue_id=queues["a:french-revolution.mp4"])
    assert {m["queue_id"] for m in only["moments"]} <= {queues["a:french-revolution.mp4"]}

    # Each retriever on its own, for comparison.
    keyword = search(tutor, "how does a leaf make food out of light?", mode="keyword")
    assert keyword["mode"] == "keyword" and all(m["retriever"] == "keyword" for m in keyword["moments"])
    semantic = search(tutor, "how does a leaf make food out of light?", mode="semantic")
    assert all(m["retriever"] == "semantic" for m in semantic["moments"])


def test_tutors_never_see_each_others_moments(lectures: Callable[..., Any]) -> None:
    _, tutors, queues = lectures({"a": ["photosynthesis.mp4"], "b": ["photosynthesis.mp4"]})
    for name, other in (("a", "b"), ("b", "a")):
        answer = search(tutors[name], "chlorophyll absorbs sunlight")
        assert answer["moments"], answer
        assert {m["queue_id"] for m in answer["moments"]} == {queues[f"{name}:photosynthesis.mp4"]}
        refused = tutors[name].get("/api/search", params={"q": "sunlight", "queue_id": queues[f"{other}:photosynthesis.mp4"]})
        assert refused.status_code == 404, refused.text
        refused = tutors[name].get(f"/api/video-processing/status/{queues[f'{other}:photosynthesis.mp4']}/media")
        assert refused.status_code == 404


BAD_QUESTIONS = [
    ("", 422, None),
    ("   ", 422, None),
    ("x" * 10_240, 422, None),
    ("the of and to what is", 200, True),
    ("'; DROP TABLE search_moments; --", 200, None),
    ('"unbalanced NEAR( * OR AND -', 200, None),
    ("🌱🔥", 200, True),
    ("ما هو التمثيل الضوئي", 200, None),
    ("\u202eright-to-left override", 200, None),
]


def test_bad_questions_get_422_or_an_answer_never_a_5xx(lectures: Callable[..., Any]) -> None:
    _, tutors, _ = lectures({"a": ["photosynthesis.mp4"]})
    for q, status, empty in BAD_QUESTIONS:
        response = tutors["a"].get("/api/search", params={"q": q})
        assert response.status_code == status, (q, response.text)
        if status == 422:
            assert "error" in response.json()
        elif empty:
            assert response.json()["moments"] == [] and response.json()["notice"], q
    for params in ({"q": "cells", "limit": 0}, {"q": "cells", "limit": 51}, {"q": "cells", "mode": "fuzzy"},
                   {"q": "cells", "queue_id": "x" * 300}, {"q": "cells", "queue_id": "no-such-queue"}):
        response = tutors["a"].get("/api/search", params=params)
        assert response.status_code in (404, 422), (params, response.text)
        assert "error" in response.json()
    assert search(tutors["a"], "chlorophyll")["moments"]  # and the service still answers


def test_search_needs_a_tutor_token(lectures: Callable[..., Any]) -> None:
    pipeline, _, _ = lectures({})
    assert httpx.get(f"{pipeline.api.url}/api/search", params={"q": "cells"}).status_code == 401


def test_a_sleeping_embedding_server_degrades_search_to_keywords_within_a_second(
    lectures: Callable[..., Any], embedding_url: str
) -> None:
    with fake_server(lambda request, seen: loading(estimated_time=30.0)) as asleep:
        # Moments were embedded by the real server; the search's BGE server is asleep.
        _, tutors, queues = lectures({"a": ["french-revolution.mp4"]}, BGE_HG_EMBEDDING_SERVER_API_URL=asleep.url)
        for _ in range(2):
            started = time.monotonic()
            answer = search(tutors["a"], "storming of the Bastille")
            assert time.monotonic() - started < 1.0
            assert answer["mode"] == "keyword"
            assert "keywords only" in answer["notice"] and "asleep" in answer["notice"]
            assert answer["moments"][0]["queue_id"] == queues["a:french-revolution.mp4"]
            assert answer["moments"][0]["retriever"] == "keyword"
        assert asleep.by_path["/v1/embeddings"] == 1  # the second search did not ask the sleeping server again


def test_an_unresponsive_embedding_server_does_not_hold_a_search(lectures: Callable[..., Any]) -> None:
    async def hang(request: Any, seen: Any) -> Any:
        import asyncio

        await asyncio.sleep(30)
        return loading()

    with fake_server(hang) as hanging:
        _, tutors, _ = lectures({"a": ["french-revolution.mp4"]}, BGE_HG_EMBEDDING_SERVER_API_URL=hanging.url)
        started = time.monotonic()
        answer = search(tutors["a"], "king caught while fleeing")
        assert time.monotonic() - started < 1.0
        assert answer["mode"] == "keyword" and answer["moments"]


def test_signed_media_links_play_one_artifact_with_range_requests(lectures: Callable[..., Any]) -> None:
    pipeline, tutors, queues = lectures({"a": ["photosynthesis.mp4"]})
    queue_id = queues["a:photosynthesis.mp4"]
    links = tutors["a"].get(f"/api/video-processing/status/{queue_id}/media")
    assert links.status_code == 200, links.text
    body = links.json()
    anonymous = httpx.Client(base_url=pipeline.api.url)
    video = anonymous.get(body["video_url"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert video.content == fake_video(seed=0)
    part = anonymous.get(body["video_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == fake_video(seed=0)[100:200]
    assert part.headers["content-range"].startswith("bytes 100-199/")
    captions = anonymous.get(body["captions_url"])
    assert captions.status_code == 200 and captions.text.startswith("WEBVTT")
    assert "chlorophyll absorbs sunlight" in captions.text

    token = body["video_url"].removeprefix("/media/")
    payload, signature = token.split(".")
    tampered = anonymous.get(f"/media/{payload[:-2]}xx.{signature}")
    assert tampered.status_code == 403 and "error" in tampered.json()
    assert anonymous.get("/media/not-a-link").status_code == 403
    anonymous.close()
