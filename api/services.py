"""What the public routes are built from: one object made by ``create_app``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from api.queues import QueueAccess
from api.settings import Settings
from api.stream_slots import StreamSlots
from api.uploads import UploadLedger
from api.watch import QueueWatcher
from api.wiring import Core
from handlers.storage import Storage
from projections.notifications import NotificationReader


@dataclass
class Services:
    settings: Settings
    core: Core
    storage: Storage
    queues: QueueAccess
    uploads: UploadLedger
    notifications: NotificationReader
    closing: threading.Event = field(default_factory=threading.Event)
    """Set when the app shuts down: open event streams end."""
    watcher: QueueWatcher = field(init=False)
    """One poller per queue with open event streams."""
    streams: StreamSlots = field(init=False)
    """The live streams open, bounded per caller and in all."""

    def __post_init__(self) -> None:
        self.watcher = QueueWatcher(
            self.core.app, self.core.reader, self.settings.stream_poll_seconds, self.closing
        )
        self.streams = StreamSlots(self.settings.max_streams_per_caller, self.settings.max_streams)
