"""What a step provider gets, gives back and may call while it works."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.errors import StepCancelled

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepJob:
    """One attempt of one step of one queue."""

    queue_id: str
    owner_id: str
    attachment_id: str
    step: str
    attempt: int
    options: dict[str, Any]
    inputs: dict[str, dict[str, Any]]
    """The outputs of the steps already completed, by step name."""


@dataclass(frozen=True)
class StepResult:
    """What a step produced: artifact keys and small facts, never large payloads."""

    outputs: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None
    model: str | None = None


class StepContext:
    """Progress reporting and cancellation for a running step.

    ``report(percent)`` is throttled (at most one event per ``min_interval``
    seconds, and only when the whole percentage grows); a value held back by
    the throttle is sent once the interval has passed, unless a newer one went
    first or the step ended (``close()``), so the last value reported is never
    lost when the work then pauses. ``check()`` raises
    :class:`StepCancelled` once the queue is cancelled; child processes
    registered with ``watch_process`` are killed the moment it is noticed.
    """

    def __init__(
        self,
        on_progress: Callable[[int, str | None], None],
        *,
        min_interval: float = 1.0,
    ) -> None:
        self._on_progress = on_progress
        self._min_interval = min_interval
        self._last_sent = 0.0
        self._last_percent = -1
        self.cancelled = threading.Event()
        self._processes: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._progress_lock = threading.Lock()
        self._held: tuple[int, str | None] | None = None
        self._timer: threading.Timer | None = None
        self._closed = False

    def report(self, percent: float, detail: str | None = None) -> None:
        value = max(0, min(100, int(percent)))
        with self._progress_lock:
            if self._closed or value <= self._last_percent:
                return
            wait = self._min_interval - (time.monotonic() - self._last_sent)
            if wait > 0:  # hold the newest value back; send it when the interval is up
                self._held = (value, detail)
                if self._timer is None:
                    self._timer = threading.Timer(wait, self._send_held)
                    self._timer.daemon = True
                    self._timer.start()
                return
            self._mark_sent(value)
        self._on_progress(value, detail)

    def _mark_sent(self, value: int) -> None:
        self._last_percent, self._last_sent, self._held = value, time.monotonic(), None

    def _send_held(self) -> None:
        with self._progress_lock:
            self._timer = None
            held = self._held
            if self._closed or held is None or held[0] <= self._last_percent:
                return
            self._mark_sent(held[0])
        try:
            self._on_progress(*held)
        except Exception:  # progress is best effort; the step's own thread reports what matters
            logger.warning("a held-back progress report was not recorded", exc_info=True)

    def close(self) -> None:
        """The step ended: a held-back progress value is dropped, never sent after the result."""
        with self._progress_lock:
            self._closed = True
            self._held = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def check(self) -> None:
        if self.cancelled.is_set():
            raise StepCancelled("the queue was cancelled")

    def wait(self, seconds: float) -> None:
        """Sleep, waking at once (with :class:`StepCancelled`) if the queue is cancelled."""
        if self.cancelled.wait(seconds):
            raise StepCancelled("the queue was cancelled")

    def watch_process(self, process: subprocess.Popen[Any]) -> None:
        with self._lock:
            self._processes.append(process)
            if self.cancelled.is_set():
                process.kill()

    def cancel(self) -> None:
        """Mark cancelled and kill every watched child process."""
        self.cancelled.set()
        with self._lock:
            for process in self._processes:
                if process.poll() is None:
                    logger.info("killing child process %d of a cancelled step", process.pid)
                    process.kill()


class StepProvider(Protocol):
    """Does one step's work. Raises ``ProviderError`` subclasses on failure."""

    name: str

    def run(self, job: StepJob, context: StepContext) -> StepResult: ...
