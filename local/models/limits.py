"""Refuse oversized request bodies before they are read."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


class BodySizeLimit:
    """ASGI middleware: 413 ``{"error": ...}`` when ``Content-Length`` exceeds ``max_bytes``.

    Bodies sent without a length (chunked) pass; the routes check what they parsed.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, hint: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.hint = hint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_bytes:
                await self._refuse(int(length), send)
                return
        await self.app(scope, receive, send)

    async def _refuse(self, length: int, send: Send) -> None:
        message = f"Request body of {length} bytes exceeds the limit of {self.max_bytes} bytes; {self.hint}"
        body = json.dumps({"error": message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})
