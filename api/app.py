"""The FastAPI application factory: ``create_app(settings)``.

It composes the other packages: the public API for the frontend (upload,
status, cancel, queue list, audit trail, live stream, transcripts,
notifications; bearer-JWT auth), the step webhooks (handlers, QStash
signatures), the operations endpoints, and, in the embedded default, the
followers of the event log (the queue-status and notifications projections,
the dispatcher and the push notifier) running in background threads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.auth import TokenVerifier
from api.deletion import build_deletion
from api.errors import install_error_handlers
from api.queues import QueueAccess
from api.routes.batches import batches_router
from api.routes.lectures import lectures_router
from api.routes.notifications import notifications_router
from api.routes.operations import operations_router
from api.routes.queues import queues_router
from api.routes.retry import retry_router
from api.routes.search import search_router
from api.routes.uploads import uploads_router
from api.services import Services
from api.limits import HeaderSizeLimit
from api.media_links import MediaSigner
from api.storage_report import build_sweeper
from api.settings import Settings
from api.uploads import UploadLedger
from api.web import web_router
from api.wiring import (
    Core,
    build_core,
    build_dispatcher,
    build_leadership,
    build_notification_followers,
    build_providers,
    build_search_index,
    build_storage,
)
from handlers.retry import RetryPolicy
from handlers.step_runner import StepRunner
from handlers.steps import StepProvider
from handlers.signatures import StepSignatures
from handlers.webhooks import steps_router
from projections.notifications import NotificationReader

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, providers: Mapping[str, StepProvider] | None = None
) -> FastAPI:
    """Build the app; nothing connects to anything until it starts."""
    state: dict[str, Core] = {}
    policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_retries)
    signatures = StepSignatures(
        settings.qstash_current_signing_key.get_secret_value(),
        settings.qstash_next_signing_key.get_secret_value(),
    )
    core = build_core(settings)
    storage = build_storage(settings)
    runner = StepRunner(
        core.app,
        providers or build_providers(settings, storage, core.view),
        policy,
        cancel_poll_seconds=settings.cancel_poll_seconds,
    )
    search_index = build_search_index(settings, core)
    # on every replica that runs them, each follower is active in one process at a time (leadership)
    followers = (
        build_leadership(settings, [
            core.queue_status, build_dispatcher(settings, core), *build_notification_followers(settings, core),
            search_index.follower,
        ])
        if settings.run_followers
        else []
    )
    # files of upload requests that died midway, removed after a grace period (handlers.storage.sweeper)
    sweeper = (
        build_sweeper(settings, core, storage)
        if settings.run_followers and settings.storage_sweep_interval_seconds > 0
        else None
    )
    state["core"] = core
    deletion = build_deletion(settings, core.app, core.view, storage)
    services = Services(
        settings=settings,
        core=core,
        storage=storage,
        queues=QueueAccess(core.app, core.reader),
        uploads=UploadLedger(core.view),
        notifications=NotificationReader(core.view),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for follower in followers:
            follower.start()
        if sweeper is not None:
            sweeper.start()
        logger.info(
            "vidpipe API ready; QStash delivers to %s; followers: %s",
            settings.public_base_url,
            ", ".join(f.key for f in followers) or "none (run them with make project)",
        )
        try:
            yield
        finally:
            services.closing.set()
            if sweeper is not None:
                sweeper.stop()
            for follower in followers:
                follower.stop()
            runner.close()
            deletion.close()
            search_index.close()
            core.close()

    app = FastAPI(
        title="vidpipe",
        summary="Event-sourced video processing: compress, audio, transcription, embeddings.",
        description="Every endpoint under /api except the step webhooks needs a bearer JWT "
        "with the tutor role; a queue is visible only to its owner. Errors are "
        '`{"error": "..."}`.',
        lifespan=lifespan,
    )
    app.state.core = core
    app.state.step_runner = runner
    app.state.settings = settings
    app.state.services = services
    app.state.token_verifier = TokenVerifier(settings)
    install_error_handlers(app)
    app.add_middleware(HeaderSizeLimit)
    app.include_router(uploads_router(services))
    app.include_router(queues_router(services))
    app.include_router(retry_router(services))
    app.include_router(batches_router(services))
    app.include_router(lectures_router(deletion))
    app.include_router(notifications_router(services))
    app.include_router(search_router(
        services, search_index.search, MediaSigner(settings.media_key, ttl_seconds=settings.media_link_seconds)
    ))
    app.include_router(steps_router(
        runner, signatures, settings.public_base_url, max_concurrent_steps=settings.max_concurrent_steps,
        max_body_bytes=settings.max_step_body_bytes,
    ))
    app.include_router(operations_router(services, followers, runner))
    app.include_router(web_router(settings))
    return app
