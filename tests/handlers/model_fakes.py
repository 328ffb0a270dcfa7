"""Small fake model servers on loopback, for the failures real servers rarely show on cue.

A :class:`FakeServer` is a Starlette app served by uvicorn in a thread; each
request is recorded and answered by the test's own handler function, which
may return any Starlette response (or sleep, to be slow). The answer helpers
below build what sleeping Hugging Face Spaces and OpenAI-compatible servers
actually send.
"""

from __future__ import annotations

import asyncio
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.support import ServedApp, reserve_port

Handler = Callable[[Request, "Seen"], Awaitable[Response] | Response]


@dataclass
class Seen:
    """What a request carried (the body already read, multipart fields parsed)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    form: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_bytes: bytes = b""


class FakeServer:
    """Answers every request with ``handler(request, seen)``; counts requests by path and file name."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.seen: list[Seen] = []
        self.by_path: Counter[str] = Counter()
        self.by_file: Counter[str] = Counter()
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        self._served = ServedApp(app, reserve_port())

    @property
    def url(self) -> str:
        return self._served.url

    def stop(self) -> None:
        self._served.stop()

    async def _endpoint(self, request: Request) -> Response:
        seen = Seen(request.method, request.url.path, dict(request.headers))
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/"):
            async with request.form() as form:
                for key, value in form.multi_items():
                    if isinstance(value, str):
                        seen.form[key] = value
                    else:
                        seen.filename = value.filename
                        seen.file_bytes = await value.read()
        elif kind.startswith("application/json"):
            seen.json = await request.json()
        with self._lock:
            self.seen.append(seen)
            self.by_path[seen.path] += 1
            if seen.filename:
                self.by_file[seen.filename] += 1
        answer = self.handler(request, seen)
        if isinstance(answer, Awaitable):
            answer = await answer
        return answer


@contextmanager
def fake_server(handler: Handler) -> Iterator[FakeServer]:
    server = FakeServer(handler)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- answers


def loading(estimated_time: float = 3.0, model: str = "BAAI/bge-m3") -> JSONResponse:
    """Hugging Face's answer while a model loads or a server sleeps."""
    return JSONResponse(
        {"error": f"Model {model} is currently loading", "estimated_time": estimated_time},
        status_code=503,
        headers={"Retry-After": str(int(estimated_time))},
    )


SLEEPING_SPACE_HTML = """<!DOCTYPE html>
<html><head><title>Hugging Face</title><style>body { color: #333 }</style></head>
<body><main><h1>This Space is sleeping due to inactivity.</h1>
<p>It will restart when you visit it.</p></main></body></html>
"""


def sleeping_page(status: int = 503) -> HTMLResponse:
    return HTMLResponse(SLEEPING_SPACE_HTML, status_code=status)


def error(status: int, message: str, **headers: str) -> JSONResponse:
    """An OpenAI-style error body."""
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status, headers=headers)


def plain(status: int, text: str = "", **headers: str) -> Response:
    return Response(text, status_code=status, media_type="text/plain", headers=headers)


def verbose_json(segments: list[tuple[float, float, str]], *, duration: float, language: str = "en") -> JSONResponse:
    return JSONResponse(
        {
            "task": "transcribe",
            "language": language,
            "duration": duration,
            "text": " ".join(text for _, _, text in segments),
            "segments": [
                {"id": i, "seek": 0, "start": start, "end": end, "text": " " + text}
                for i, (start, end, text) in enumerate(segments)
            ],
        }
    )


def openai_embeddings(texts: list[str], *, dimension: int = 8, model: str = "fake-model") -> JSONResponse:
    data = [{"object": "embedding", "index": i, "embedding": fake_vector(t, dimension)} for i, t in enumerate(texts)]
    return JSONResponse({"object": "list", "data": data, "model": model})


def fake_vector(text: str, dimension: int) -> list[float]:
    """A deterministic vector for ``text`` (not meaningful, only stable)."""
    seed = zlib.crc32(text.encode())
    values = [float((seed >> (i * 3)) % 7 + 1) for i in range(dimension)]
    norm = sum(v * v for v in values) ** 0.5
    return [v / norm for v in values]


async def slow(seconds: float, answer: Response) -> Response:
    await asyncio.sleep(seconds)
    return answer


# --------------------------------------------------------------------------- the real ones


@contextmanager
def reference_embedding_server(**server: Any) -> Iterator[str]:
    """The reference embedding server (packaged all-MiniLM-L6-v2) on loopback; yields its URL once loaded
    (or, with ``never_wake``/``sleep_requests``, once it says so)."""
    import httpx

    from local.models import embeddings
    from local.models.settings import EmbeddingSettings, ModelServerSettings
    from tests.support import wait_until

    settings = EmbeddingSettings(server=ModelServerSettings(**server))
    served = ServedApp(embeddings.create_app(settings), reserve_port())
    try:
        def settled() -> bool:
            return httpx.get(f"{served.url}/health").json()["status"] in ("ready", "asleep")

        wait_until(settled, 120, "the embedding model to load")
        yield served.url
    finally:
        served.stop()
