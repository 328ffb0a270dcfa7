"""The fake MEGA server's HTTP side: ``create_app(settings)`` builds the ASGI app.

Routes, as the real service exposes them to clients:

* ``POST /cs?id=<seq>[&sid=<session>]`` — the JSON-RPC API (see :mod:`local.mega.commands`);
* ``POST /ul/<token>/<offset>`` — upload URL: encrypted bytes at ``offset``;
  the answer is empty until the last byte arrives, then the completion handle
  (a negative number as text on error, like MEGA);
* ``GET /dl/<token>`` — download URL: the encrypted bytes (ranges honoured).

Test hooks, not part of MEGA: ``POST /_fake/outage`` with
``{"count": N, "mode": "eagain"|"http503", "route": "cs"|"ul"|"dl"|null}``
makes the next N requests (to ``route``, or to any route) fail
(``eagain``: ``/cs`` answers a bare ``-3``, transfers are unaffected;
``http503``: the answer is 503), and ``app.state.mega`` is the
:class:`FakeMega` itself (``fail_next``, ``drive``, ``accounts``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Literal

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from local.mega.accounts import EAGAIN, AccountBook
from local.mega.commands import Commands
from local.mega.drive import EARGS, Drive
from local.mega.settings import Settings

log = logging.getLogger(__name__)

OutageMode = Literal["eagain", "http503"]


class FakeMega:
    """The server's state: accounts, the drive, and the outage switch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.accounts = AccountBook(settings.data_dir / "accounts.json")
        self.drive = Drive(settings.data_dir)
        self.commands = Commands(settings, self.accounts, self.drive)
        self._outage_lock = threading.Lock()
        self._outage: tuple[int, OutageMode, str | None] = (0, "eagain", None)
        self.requests = 0
        """Requests served so far (every route), for tests."""

    def open(self) -> None:
        self.drive.open()
        settings = self.settings
        configured = {settings.email: settings.password, **settings.extra_accounts}
        for email, password in configured.items():
            self.accounts.configure(
                email,
                password.get_secret_value(),
                version=settings.key_version,
                rsa_bits=settings.rsa_bits,
                quota_bytes=settings.quota_bytes,
            )

    def fail_next(self, count: int, mode: OutageMode = "eagain", route: str | None = None) -> None:
        """Make the next ``count`` requests (to ``route``: cs, ul or dl; None: any) fail."""
        with self._outage_lock:
            self._outage = (count, mode, route)

    def outage(self, route: str) -> OutageMode | None:
        """The failure this request must show, if an outage is on."""
        with self._outage_lock:
            self.requests += 1
            count, mode, only = self._outage
            if count <= 0 or (mode == "eagain" and route != "cs") or (only is not None and route != only):
                return None
            self._outage = (count - 1, mode, only)
            return mode


def create_app(settings: Settings) -> Starlette:
    """The server as an ASGI app; accounts are derived when its lifespan starts."""
    mega = FakeMega(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(mega.open)
        log.info("fake MEGA: account %s, data in %s", settings.email, settings.data_dir)
        yield

    async def api(request: Request) -> Response:
        failure = mega.outage("cs")
        if failure == "http503":
            return PlainTextResponse("Service Unavailable", status_code=503)
        if failure == "eagain":
            return JSONResponse(EAGAIN)
        try:
            commands = json.loads(await request.body())
        except ValueError:
            return JSONResponse(EARGS)
        if not isinstance(commands, list):
            return JSONResponse(EARGS)
        sid = request.query_params.get("sid")
        results = await run_in_threadpool(mega.commands.run, sid, commands, _base_url(request))
        return JSONResponse(results)

    async def upload(request: Request) -> Response:
        if mega.outage("ul"):
            return PlainTextResponse("Service Unavailable", status_code=503)
        data = await request.body()
        token, offset = request.path_params["token"], request.path_params["offset"]

        def write() -> str | int:
            with mega.drive.lock:
                return mega.drive.write_chunk(token, offset, data)

        answer = await run_in_threadpool(write)
        return PlainTextResponse(str(answer))

    async def download(request: Request) -> Response:
        if mega.outage("dl"):
            return PlainTextResponse("Service Unavailable", status_code=503)
        with mega.drive.lock:
            path = mega.drive.download_path(request.path_params["token"])
        if path is None or not path.exists():
            return PlainTextResponse("Not Found", status_code=404)
        return FileResponse(path, media_type="application/octet-stream")

    async def outage(request: Request) -> Response:
        body = await request.json()
        mega.fail_next(int(body.get("count", 1)), body.get("mode", "eagain"), body.get("route"))
        return JSONResponse({"ok": True})

    app = Starlette(
        routes=[
            Route("/cs", api, methods=["POST"]),
            Route("/ul/{token}/{offset:int}", upload, methods=["POST"]),
            Route("/dl/{token}", download, methods=["GET"]),
            Route("/_fake/outage", outage, methods=["POST"]),
        ],
        lifespan=lifespan,
    )
    app.state.mega = mega
    return app


def _base_url(request: Request) -> str:
    """Where transfer URLs point: the address the client used to reach this server."""
    return str(request.base_url).rstrip("/")
