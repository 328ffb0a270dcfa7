"""One request at a time on a model, a bounded line of requests waiting for it.

A model server on a small machine serves its requests faster one after
another than side by side (two transcriptions at once share the cores and
each takes twice as long). :class:`RequestQueue` counts the requests let in:
one works on the model, at most ``max_waiting`` wait for it (in arrival order:
the model's own thread runs them as they were submitted), and the next one is
turned away at once with :class:`~local.models.errors.ModelBusy` — 503 with
``Retry-After``, which clients already treat as "come back later", as they do
a sleeping server.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from local.models.errors import ModelBusy

logger = logging.getLogger(__name__)

SMOOTHING = 0.3
"""Weight of the latest request's duration in the running average behind ``Retry-After``."""


@dataclass(frozen=True)
class QueueStatus:
    running: int
    waiting: int
    max_waiting: int


class Ticket:
    """One request's place: :meth:`start` when the model begins on it, :meth:`release` when done (or gone)."""

    def __init__(self, queue: RequestQueue) -> None:
        self._queue = queue
        self._started_at: float | None = None
        self._released = False

    def start(self) -> None:
        self._queue._started(self)

    def release(self) -> None:
        """Give the place back; a second call does nothing."""
        self._queue._release(self)


class RequestQueue:
    """Admits at most ``1 + max_waiting`` requests at once; thread-safe."""

    def __init__(self, model_name: str, max_waiting: int, *, first_estimate: float = 10.0) -> None:
        self.model_name = model_name
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._average_seconds = first_estimate

    def enter(self) -> Ticket:
        """A place in the line, or :class:`ModelBusy` when it is full."""
        with self._lock:
            if self._admitted >= 1 + self.max_waiting:
                waiting = self._admitted - self._running
                retry_after = self._average_seconds
                busy = True
            else:
                self._admitted += 1
                busy = False
        if busy:
            logger.info("Model %s busy (%d waiting, the most allowed): turning a request away",
                        self.model_name, waiting)
            raise ModelBusy(self.model_name, waiting=waiting, retry_after=math.ceil(max(retry_after, 1.0)))
        return Ticket(self)

    def status(self) -> QueueStatus:
        with self._lock:
            return QueueStatus(self._running, self._admitted - self._running, self.max_waiting)

    def _started(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released or ticket._started_at is not None:
                return
            ticket._started_at = time.monotonic()
            self._running += 1

    def _release(self, ticket: Ticket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            self._admitted -= 1
            if ticket._started_at is not None:
                self._running -= 1
                took = time.monotonic() - ticket._started_at
                self._average_seconds += SMOOTHING * (took - self._average_seconds)
