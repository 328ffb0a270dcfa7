"""Explicit wiring of the pieces a process needs, built from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from api import providers
from api.search import LectureSearch, QueryEmbedder
from api.settings import Settings
from handlers.providers.embeddings import EmbeddingClient
from domain import VideoProcessing
from handlers.bus import QStashBus
from handlers.dispatcher import Dispatcher
from handlers.notifiers.onesignal import OneSignalNotifier
from handlers.notifiers.push import PushNotifier
from handlers.steps import StepProvider
from handlers.storage import Storage
from projections.follower import EventFollower
from projections.leadership import Elector, LedFollower, leadership_for
from projections.moments import MomentsProjection, MomentsReader, enable_pgvector
from projections.notifications import NotificationsProjection
from projections.queue_status import QueueStatusProjection, QueueStatusReader
from projections.views import ReadModelView, open_view


@dataclass
class Core:
    """The application, its read model and the queue-status follower."""

    app: VideoProcessing
    view: ReadModelView
    queue_status: EventFollower
    reader: QueueStatusReader

    def close(self) -> None:
        self.queue_status.stop()
        self.view.close()
        self.app.close()


def build_core(settings: Settings) -> Core:
    env = settings.event_store_env()
    app = VideoProcessing(env=env)
    view = open_view(env)
    follower = EventFollower(
        app, view, QueueStatusProjection(), poll_interval=settings.projection_poll_seconds
    )
    return Core(app=app, view=view, queue_status=follower, reader=QueueStatusReader(view))


def build_dispatcher(settings: Settings, core: Core) -> EventFollower:
    bus = QStashBus(
        settings.qstash_token.get_secret_value(),
        settings.qstash_url,
        retries=settings.qstash_delivery_retries,
        retry_delay=settings.qstash_retry_delay,
    )
    dispatcher = Dispatcher(bus, settings.public_base_url, core.view, settings.step_flow_control())
    return EventFollower(core.app, core.view, dispatcher, poll_interval=settings.projection_poll_seconds)


def build_leadership(settings: Settings, followers: list[EventFollower]) -> list[LedFollower]:
    """``followers`` run only while this process leads each (one elector, one lock connection per process)."""
    elector = Elector(leadership_for(settings.database), poll_interval=settings.leadership_poll_seconds)
    return [LedFollower(follower, elector) for follower in followers]


def build_providers(settings: Settings, storage: Storage, view: ReadModelView) -> dict[str, StepProvider]:
    """The step providers named by ``VIDPIPE_STEP_PROVIDERS`` (see :mod:`api.providers`)."""
    return providers.build_step_providers(settings, storage, view)


def build_storage(settings: Settings) -> Storage:
    """Where uploads and artifacts live: MEGA when configured, else ``VIDPIPE_STORAGE_DIR``."""
    return providers.build_storage(settings)


def build_notification_followers(settings: Settings, core: Core) -> list[EventFollower]:
    """The in-app notifications projection, and the OneSignal pusher when it is configured."""
    poll = settings.projection_poll_seconds
    followers = [
        EventFollower(core.app, core.view, NotificationsProjection(progress=settings.notify_progress), poll_interval=poll)
    ]
    if settings.push_enabled:
        assert settings.onesignal_rest_api_key is not None and settings.onesignal_app_id is not None
        notifier = OneSignalNotifier(
            settings.onesignal_app_id,
            settings.onesignal_rest_api_key.get_secret_value(),
            settings.onesignal_api_url,
        )
        pusher = PushNotifier(
            core.app, core.view, notifier,
            attempts=settings.onesignal_attempts, progress=settings.notify_progress,
        )
        followers.append(EventFollower(core.app, core.view, pusher, poll_interval=poll))
    return followers


@dataclass
class SearchIndex:
    """The moments projection's follower and the search over it."""

    follower: EventFollower
    search: LectureSearch
    embedder: QueryEmbedder

    def close(self) -> None:
        self.follower.stop()
        self.embedder.close()


def build_search_index(settings: Settings, core: Core) -> SearchIndex:
    """The search index (a projection; pgvector's HNSW where available) and the hybrid search."""
    pgvector = settings.search_vector_index == "auto" and enable_pgvector(core.view)
    follower = EventFollower(
        core.app, core.view, MomentsProjection(pgvector=pgvector), poll_interval=settings.projection_poll_seconds
    )
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    timeout = settings.search_embed_timeout_seconds
    clients = {
        "bge": EmbeddingClient(settings.bge_url, label="bge", name="BGE embedding server", api_key=token,
                               timeout=timeout, connect_timeout=timeout, url_env="BGE_HG_EMBEDDING_SERVER_API_URL"),
    }
    if settings.e5_url:
        clients["e5"] = EmbeddingClient(settings.e5_url, label="e5", name="E5 embedding server", api_key=token,
                                        timeout=timeout, connect_timeout=timeout,
                                        url_env="E5_HG_EMBEDDING_SERVER_API_URL",
                                        query_prefix=settings.e5_query_prefix,
                                        passage_prefix=settings.e5_passage_prefix)
    embedder = QueryEmbedder(clients, deadline=timeout, backoff=settings.search_server_backoff_seconds)
    search = LectureSearch(
        MomentsReader(core.view, pgvector=pgvector), embedder, semantic_weight=settings.search_semantic_weight
    )
    return SearchIndex(follower=follower, search=search, embedder=embedder)
