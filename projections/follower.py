"""Following the event log: the runner that keeps a projection up to date.

A follower reads the application's notification log from its own tracked
position, in batches, and hands each batch to a projection inside one view
transaction that also advances the position. It polls (the library's SQLite
recorder cannot be subscribed to; on Postgres polling every few tens of
milliseconds costs one indexed query), and it survives database outages: an
error is logged, the follower backs off and tries the same batch again.

Two followers of the same projection may run at once (say, two replicas):
the tracking row makes one of them win each batch, the other's transaction
rolls back with ``IntegrityError`` and it moves on from the new position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Tracking

from projections.views import Projection, ReadModelView, SqlSession
from projections.worker import PeriodicWorker

logger = logging.getLogger(__name__)


class EventFollower:
    """Applies every event of ``app``'s log to ``projection`` exactly once."""

    def __init__(
        self,
        app: Application[Any],
        view: ReadModelView,
        projection: Projection,
        *,
        batch_size: int = 200,
        poll_interval: float = 0.05,
        max_backoff: float = 5.0,
    ) -> None:
        self.app = app
        self.view = view
        self.projection = projection
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.key = f"{app.name}:{projection.name}"
        self._worker = PeriodicWorker(
            self.key, self._follow, interval=poll_interval, max_backoff=max_backoff, log=logger,
            failure="%s: failed to apply events; retrying in %.1fs",
        )

    @property
    def position(self) -> int:
        """The notification id of the last event applied (0 before any)."""
        return self.view.max_tracking_id(self.key) or 0

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply every event recorded so far; return how many were applied."""
        applied = 0
        while True:
            count = self._apply_next_batch()
            if count == 0:
                return applied
            applied += count
            if progress is not None:
                progress(self.position, self.app.recorder.max_notification_id() or 0)

    def _apply_next_batch(self) -> int:
        position = self.position
        notifications = self.app.recorder.select_notifications(
            start=position + 1, limit=self.batch_size
        )
        if not notifications:
            return 0
        events = [self.app.mapper.to_domain_event(n) for n in notifications]
        self.projection.prepare(events)
        try:
            self.view.record(
                self.projection, events, Tracking(self.key, notifications[-1].id), after=position
            )
        except IntegrityError:
            logger.info("%s: another runner applied events after %d first", self.key, position)
        return len(notifications)

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop the projection's rows and replay the whole log, in one transaction.

        Readers keep seeing the old rows until the new ones are committed.
        Returns the number of events replayed.
        """
        last = self.app.recorder.max_notification_id() or 0
        replayed = 0
        with self.view.session() as session:
            self.projection.reset(session)
            self.view.forget_position(session, self.key)
            start = 1
            while True:
                notifications = self.app.recorder.select_notifications(
                    start=start, limit=self.batch_size, stop=last
                )
                if not notifications:
                    break
                self._apply(session, notifications)
                replayed += len(notifications)
                start = notifications[-1].id + 1
                if progress is not None:
                    progress(notifications[-1].id, last)
            if replayed:
                self.view._insert_tracking(session.cursor, Tracking(self.key, start - 1))  # noqa: SLF001
        logger.info("%s: rebuilt from %d events", self.key, replayed)
        return replayed

    def _apply(self, session: SqlSession, notifications: list[Any]) -> None:
        for notification in notifications:
            self.projection.apply(self.app.mapper.to_domain_event(notification), session)

    # ------------------------------------------------------------ background
    @property
    def errors(self) -> int:
        """How many batches failed in the background (each tried again)."""
        return self._worker.errors

    def _follow(self) -> bool:
        """One round in the background: whether a batch was applied (then the next comes at once)."""
        return self.catch_up() > 0

    def start(self) -> EventFollower:
        """Follow the log in a thread until :meth:`stop`; errors are logged and retried with back-off."""
        self._worker.start()
        return self

    def stop(self) -> None:
        """Stop following (waiting for the batch in hand) and release the projection's resources."""
        self._worker.stop()
        close = getattr(self.projection, "close", None)
        if close is not None:
            close()

    def wait_for(self, notification_id: int, timeout: float = 10.0) -> None:
        """Block until the event ``notification_id`` has been applied."""
        deadline = time.monotonic() + timeout
        while self.position < notification_id:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{self.key} did not reach event {notification_id} within {timeout}s "
                    f"(at {self.position})"
                )
            time.sleep(0.01)
