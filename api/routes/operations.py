"""``/healthz``, ``/readyz`` and ``/metrics``: for load balancers and Prometheus.

These carry no tutor data and take no token, so probes and scrapers work as
they are (put them behind the private network in production).
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.checks import check_database, check_qstash, check_storage
from api.metrics import metrics_registry, render
from api.schemas import Check, Health, Readiness
from api.services import Services
from handlers.step_runner import StepRunner
from projections.follower import EventFollower


def operations_router(
    services: Services, followers: Sequence[EventFollower], runner: StepRunner | None = None
) -> APIRouter:
    router = APIRouter(tags=["operations"])
    registry = metrics_registry(services.core, followers, runner)

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """The process is alive (answered on the event loop, never queued behind the thread pool)."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    def readyz() -> JSONResponse:
        """Database, QStash and storage reachable; 503 names the one that is not."""
        results = [
            check_database(services.settings, services.core.view),
            check_qstash(services.settings),
            check_storage(services.storage),
        ]
        failed = [r.name for r in results if not r.ok]
        body = Readiness(
            status="not ready" if failed else "ready",
            checks={r.name: Check(ok=r.ok, detail=r.detail) for r in results},
            failed=failed,
        )
        return JSONResponse(body.model_dump(), status_code=503 if failed else 200)

    @router.get(
        "/metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format",
                         "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        """Queues by status, step durations, retries, notification deliveries, follower lag, step deliveries."""
        return Response(await run_in_threadpool(render, registry), media_type=CONTENT_TYPE_LATEST)

    return router
