"""Explicit wiring of the pieces a process needs, built from :class:`Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from api.settings import Settings
from domain import VideoProcessing
from projections.follower import EventFollower
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
