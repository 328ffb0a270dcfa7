"""``GET /api/notifications``: the caller's in-app notifications, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import CurrentTutor
from api.routes.queues import AUTH_RESPONSES
from api.schemas import Notification, NotificationPage
from api.services import Services


def notifications_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["notifications"])

    @router.get("/api/notifications", response_model=NotificationPage, responses=AUTH_RESPONSES)
    def list_notifications(
        caller: CurrentTutor,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> NotificationPage:
        """Started, completed, failed and cancelled queues of the caller."""
        rows = services.notifications.list_for_owner(caller.owner_id, limit=limit + 1, offset=offset)
        return NotificationPage(
            items=[Notification.model_validate(r) for r in rows[:limit]],
            limit=limit, offset=offset, has_more=len(rows) > limit,
        )

    return router
