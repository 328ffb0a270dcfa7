"""The local OneSignal REST API (create and view notifications)."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from local.onesignal.settings import Settings

TARGETS = ("include_aliases", "include_external_user_ids", "include_player_ids",
           "include_subscription_ids", "included_segments", "filters")


def _errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status)


class Outbox:
    """Notifications received, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.notifications: list[dict[str, Any]] = []

    def add(self, body: dict[str, Any]) -> dict[str, Any]:
        record = {**body, "id": str(uuid.uuid4()), "queued_at": int(datetime.now(timezone.utc).timestamp())}
        with self._lock:
            self.notifications.append(record)
        return record

    def find(self, notification_id: str) -> dict[str, Any] | None:
        with self._lock:
            return next((n for n in self.notifications if n["id"] == notification_id), None)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.notifications)


def _authorised(request: Request, settings: Settings) -> bool:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() in ("basic", "key") and key == settings.rest_api_key


def _has_target(body: dict[str, Any]) -> bool:
    aliases = body.get("include_aliases")
    if isinstance(aliases, dict):
        return any(isinstance(v, list) and v for v in aliases.values())
    return any(isinstance(body.get(name), list) and body[name] for name in TARGETS[1:])


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    outbox = Outbox()
    app = FastAPI(title="local OneSignal", docs_url=None, redoc_url=None)
    app.state.outbox = outbox
    app.state.settings = settings
    auth_error = ("Please include a case-sensitive header of Authorization: Basic "
                  "<YOUR-REST-API-KEY-HERE> or Bearer <YOUR-USER-AUTH-KEY-HERE> with a valid REST API key.")

    @app.post("/api/v1/notifications")
    async def create(request: Request) -> JSONResponse:
        if settings.fail_with_status:
            return _errors(settings.fail_with_status, "simulated outage")
        if not _authorised(request, settings):
            return _errors(403, auth_error)
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, "the body must be JSON")
        if not isinstance(body, dict) or body.get("app_id") != settings.app_id:
            return _errors(400, "app_id not found. You may be missing a Content-Type: application/json header.")
        contents = body.get("contents")
        if not body.get("template_id") and not (isinstance(contents, dict) and contents.get("en")):
            return _errors(400, "Message Notifications must have English language content")
        if not _has_target(body):
            return _errors(400, "You must include which players, segments, or tags you wish to send this notification to.")
        record = outbox.add(body)
        return JSONResponse({"id": record["id"], "external_id": None})

    @app.get("/api/v1/notifications/{notification_id}")
    async def view(notification_id: str, request: Request, app_id: str = "") -> JSONResponse:
        if not _authorised(request, settings):
            return _errors(403, auth_error)
        record = outbox.find(notification_id)
        if app_id != settings.app_id or record is None:
            return _errors(404, "Notification not found")
        return JSONResponse(record)

    @app.get("/api/v1/notifications")
    async def view_all(request: Request, app_id: str = "", limit: int = 50, offset: int = 0) -> JSONResponse:
        if not _authorised(request, settings):
            return _errors(403, auth_error)
        if app_id != settings.app_id:
            return _errors(400, "app_id not found")
        records = outbox.all()[::-1]
        return JSONResponse({"total_count": len(records), "offset": offset, "limit": limit,
                             "notifications": records[offset:offset + limit]})

    return app
