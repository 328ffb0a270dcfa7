"""The FastAPI application factory: ``create_app(settings)``.

It composes the other packages: the step webhooks (handlers), and, in the
embedded default, the followers of the event log (the queue-status
projection and the dispatcher) running in background threads.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from qstash import Receiver

from api.settings import Settings
from api.wiring import Core, build_core, build_dispatcher, build_providers
from handlers.retry import RetryPolicy
from handlers.step_runner import StepRunner
from handlers.steps import StepProvider
from handlers.webhooks import steps_router

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, *, providers: Mapping[str, StepProvider] | None = None
) -> FastAPI:
    """Build the app; nothing connects to anything until it starts."""
    state: dict[str, Core] = {}
    policy = RetryPolicy(settings.retry_base_seconds, settings.retry_max_seconds, settings.max_retries)
    receiver = Receiver(
        settings.qstash_current_signing_key.get_secret_value(),
        settings.qstash_next_signing_key.get_secret_value(),
    )
    core = build_core(settings)
    runner = StepRunner(
        core.app,
        providers or build_providers(settings),
        policy,
        cancel_poll_seconds=settings.cancel_poll_seconds,
    )
    followers = [core.queue_status, build_dispatcher(settings, core)] if settings.run_followers else []
    state["core"] = core

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        for follower in followers:
            follower.start()
        logger.info(
            "vidpipe API ready; QStash delivers to %s; followers: %s",
            settings.public_base_url,
            ", ".join(f.key for f in followers) or "none (run them with make project)",
        )
        try:
            yield
        finally:
            for follower in followers:
                follower.stop()
            core.close()

    app = FastAPI(
        title="vidpipe",
        summary="Event-sourced video processing: compress, audio, transcription, embeddings.",
        lifespan=lifespan,
    )
    app.state.core = core
    app.state.settings = settings
    app.include_router(steps_router(runner, receiver, settings.public_base_url))

    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    return app
