"""Routes every model server has: ``GET /health`` and ``GET /v1/models``."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from local.models.errors import ModelLoading
from local.models.slot import ModelSlot


def status_router(
    slot: ModelSlot[Any],
    owned_by: str,
    details: Callable[[], dict[str, Any]] | None = None,
    model_ids: list[str] | None = None,
) -> APIRouter:
    """``/health`` answers 200 only when the next model request would succeed; ``details`` adds to its body.

    ``/v1/models`` lists ``model_ids`` (a server holding several models), else the slot's name."""
    router = APIRouter()
    created = int(time.time())

    @router.get("/health")
    def health() -> JSONResponse:
        status = slot.status()
        body: dict[str, Any] = {"status": status.state, "model": slot.name, **(details() if details else {})}
        if status.state == "ready":
            return JSONResponse(body)
        if status.state == "failed":
            return JSONResponse({**body, "error": status.error}, status_code=500)
        loading = ModelLoading(slot.name, status.estimated_time or 1.0)
        return JSONResponse({**loading.body(), **body}, status_code=503, headers=loading.headers())

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        ids = model_ids or [slot.name]
        data = [{"id": name, "object": "model", "created": created, "owned_by": owned_by} for name in ids]
        return {"object": "list", "data": data}

    return router
