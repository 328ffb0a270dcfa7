"""Shared watching of queues for the server-sent-event streams.

Every open stream of a queue used to poll the read model on its own (200
streams: 800 queries a second). A :class:`QueueWatcher` keeps one poller per
watched queue, however many streams follow it: it reads the status view every
``poll`` seconds and, when the version grows, the audit trail once, and wakes
every stream waiting for news. Owner checks happen when a stream opens.
While the database is unreachable the poller keeps trying (open streams stay
open and resume with the next change), logging the outage once. An idle
stream costs no wake-ups of its own: it sleeps until its poller publishes a
change or, when the app shuts down, wakes it to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

from fastapi.concurrency import run_in_threadpool

from api.errors import OutageLog, database_unavailable
from domain import TimelineEntry, VideoProcessing
from projections.queue_status import QueueStatusReader

logger = logging.getLogger(__name__)
TERMINAL = ("completed", "failed", "cancelled")


class Watch:
    """The latest row and audit trail of one queue, and a way to wait for newer ones."""

    def __init__(self) -> None:
        self.row: dict[str, Any] | None = None
        self.entries: list[TimelineEntry] = []
        self.version = 0
        self.ended = False
        self.gone = False
        """The queue left the status view after it was seen there: its lecture was deleted."""
        self._news = asyncio.Event()
        self.subscribers = 0
        self.task: asyncio.Task[None] | None = None

    def publish(self, row: dict[str, Any], entries: list[TimelineEntry]) -> None:
        self.row, self.entries, self.version = row, entries, row["version"]
        self.ended = row["status"] in TERMINAL
        self.wake()

    def wake(self) -> None:
        """Wake every stream waiting on this queue (news, or the app is closing)."""
        news, self._news = self._news, asyncio.Event()
        news.set()

    async def newer_than(self, version: int, timeout: float) -> bool:
        """Wait until the version passes ``version``; False on timeout."""
        if self.version > version:
            return True
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._news.wait(), timeout)
        return self.version > version


class QueueWatcher:
    """One poller per watched queue, shared by all its streams."""

    def __init__(
        self, app: VideoProcessing, reader: QueueStatusReader, poll: float, closing: threading.Event
    ) -> None:
        self.app = app
        self.reader = reader
        self.poll = poll
        self.closing = closing
        self._watches: dict[str, Watch] = {}
        self.outages = OutageLog()

    @contextlib.asynccontextmanager
    async def watch(self, queue_id: str) -> AsyncIterator[Watch]:
        watch = self._watches.get(queue_id)
        if watch is None:
            watch = self._watches[queue_id] = Watch()
            watch.task = asyncio.create_task(self._poll(queue_id, watch))
        watch.subscribers += 1
        try:
            yield watch
        finally:
            watch.subscribers -= 1
            if watch.subscribers == 0:
                self._watches.pop(queue_id, None)
                if watch.task is not None:
                    watch.task.cancel()

    async def _poll(self, queue_id: str, watch: Watch) -> None:
        while not self.closing.is_set() and not watch.ended:
            try:
                row = await run_in_threadpool(self.reader.status, queue_id)
                if row is None and watch.version > 0:
                    watch.gone = watch.ended = True
                    break
                if row is not None and row["version"] > watch.version:
                    entries = await run_in_threadpool(self.app.timeline, queue_id)
                    watch.publish(row, entries)
            except Exception as error:  # the database may be restarting: keep the streams open
                if database_unavailable(error):
                    self.outages.warn(f"the stream of queue {queue_id}", error, "open streams wait for it")
                else:
                    logger.warning("watching queue %s failed; trying again", queue_id, exc_info=True)
            await asyncio.sleep(self.poll)
        watch.wake()  # closing, or the queue ended: let its streams look
