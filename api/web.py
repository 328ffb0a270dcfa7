"""The progress page: ``GET /`` and its static files under ``/static/``.

Plain HTML, CSS and JavaScript from ``api/static`` (no build step) that speak
the public API like any other client: the tutor signs in with a bearer token,
uploads, follows the queue's server-sent-event stream, cancels, reads the
transcript, lists their queues, searches their lectures and watches a moment
(a ``<video>`` on the signed media links, captions from the VTT transcript, a
transcript panel that follows playback). The CSP's ``default-src 'self'``
covers the media: links are same-origin ``/media/...`` paths.

In the embedded default (``VIDPIPE_ENV=development`` with the HS256
development secret) the page carries a development tutor token in
``<meta name="vidpipe-dev-token">`` so the sign-in field comes pre-filled;
in production it never does. The page is kept out of the OpenAPI schema.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from api.errors import NotFound
from api.settings import Settings
from api.token import mint

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEV_TOKEN_PLACEHOLDER = "<!-- vidpipe-dev-token -->"
DEV_USER = "dev-tutor"
STATIC_FILES = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def development_token(settings: Settings) -> str | None:
    """A tutor token for the page to pre-fill, only in the embedded default."""
    if settings.environment != "development" or settings.jwt_jwks_url:
        return None
    return mint(settings, user=DEV_USER, role=settings.jwt_required_role)


def render_index(settings: Settings) -> str:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    token = development_token(settings)
    meta = f'<meta name="vidpipe-dev-token" content="{html.escape(token)}">' if token else ""
    return page.replace(DEV_TOKEN_PLACEHOLDER, meta)


def web_router(settings: Settings) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        """The progress page."""
        return HTMLResponse(render_index(settings), headers=SECURITY_HEADERS)

    @router.get("/static/{name}")
    def static(name: str) -> FileResponse:
        """The page's stylesheet and script (a fixed list: nothing else is served)."""
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            raise NotFound(f"no static file {name!r}")
        headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache"}
        return FileResponse(STATIC_DIR / name, media_type=media_type, headers=headers)

    return router
