"""A model that loads in a background thread and may be asleep.

The server starts answering at once; until the model is ready every model
request gets 503 with Hugging Face's "is currently loading" body. After
loading, ``ModelServerSettings.sleep_requests`` more requests are turned
away the same way, requests during the ``sleep_seconds`` that follow the first
model request are too, and ``never_wake`` turns all of them away: the
behaviours of a Hugging Face Space that sleeps, for clients to be tested
against. ``slow_requests`` requests the awake model serves are first held for
``slow_seconds`` (a server slower than its clients' timeout).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from local.models.errors import ModelFailed, ModelLoading
from local.models.settings import ModelServerSettings

logger = logging.getLogger(__name__)

M = TypeVar("M")

State = Literal["loading", "asleep", "ready", "failed"]


@dataclass(frozen=True)
class SlotStatus:
    """What a model slot would answer now, without counting as a request."""

    state: State
    estimated_time: float | None = None
    error: str | None = None


class ModelSlot(Generic[M]):
    """Holds one model: loads it in the background, hands it out once awake."""

    def __init__(self, name: str, load: Callable[[], M], settings: ModelServerSettings) -> None:
        self.name = name
        self._load = load
        self._settings = settings
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._model: M | None = None
        self._error: str | None = None
        self._sleeps_left = settings.sleep_requests
        self._wakes_at: float | None = None
        """When the ``sleep_seconds`` end: set by the first model request after loading."""
        self._slow_left = settings.slow_requests
        self._started_at: float | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin loading in a daemon thread (once)."""
        if self._thread is not None:
            return
        self._started_at = time.monotonic()
        if self._settings.never_wake:
            logger.warning("Model %s never wakes (MODEL_SERVER_NEVER_WAKE): not loading it", self.name)
            return
        self._thread = threading.Thread(target=self._run, name=f"load-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Interrupt an artificial load delay; a load in progress finishes on its own."""
        self._stopping.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading ended (either way); True when it did in time."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def model(self) -> M | None:
        """The loaded model, whether awake or not (for informational endpoints)."""
        return self._model

    def acquire(self) -> M:
        """The model for one request, or ``ModelLoading`` / ``ModelFailed``.

        Each call after loading consumes one of the ``sleep_requests``; the
        first starts the ``sleep_seconds`` clock.
        """
        with self._lock:
            if self._model is not None and self._settings.sleep_seconds and self._wakes_at is None:
                self._wakes_at = time.monotonic() + self._settings.sleep_seconds
                logger.info("Model %s asleep: waking in %.1f s", self.name, self._settings.sleep_seconds)
            status = self._status()
            if status.state == "ready" and self._model is not None:
                return self._model
            if status.state == "asleep" and self._sleeps_left > 0:
                self._sleeps_left -= 1
                logger.info("Model %s asleep: %d more request(s) to turn away", self.name, self._sleeps_left)
        if status.state == "failed":
            raise ModelFailed(
                f"Model {self.name} failed to load: {status.error}. Fix the configuration and restart the server."
            )
        raise ModelLoading(self.name, status.estimated_time or self._settings.estimated_time)

    async def admit(self) -> M:
        """:meth:`acquire`, then hold the request while ``slow_requests`` remain (without blocking the server)."""
        model = self.acquire()
        with self._lock:
            slow = self._slow_left > 0 and self._settings.slow_seconds > 0
            if slow:
                self._slow_left -= 1
        if slow:
            logger.info("Model %s slow: holding this request for %.1f s (%d more to hold)",
                        self.name, self._settings.slow_seconds, self._slow_left)
            await asyncio.sleep(self._settings.slow_seconds)
        return model

    def status(self) -> SlotStatus:
        """The state the next request would meet; does not consume a sleep."""
        with self._lock:
            return self._status()

    def _status(self) -> SlotStatus:
        if self._error is not None:
            return SlotStatus("failed", error=self._error)
        if self._settings.never_wake or (self._model is not None and (self._sleeps_left > 0 or self._dozing())):
            return SlotStatus("asleep", estimated_time=self._settings.estimated_time)
        if self._model is None:
            return SlotStatus("loading", estimated_time=self._remaining_load_time())
        return SlotStatus("ready")

    def _dozing(self) -> bool:
        """Within ``sleep_seconds`` of the first model request (or before it)."""
        if not self._settings.sleep_seconds:
            return False
        return self._wakes_at is None or time.monotonic() < self._wakes_at

    def _remaining_load_time(self) -> float:
        expected = self._settings.load_delay_seconds + self._settings.estimated_time
        elapsed = time.monotonic() - (self._started_at or time.monotonic())
        return max(expected - elapsed, 1.0)

    def _run(self) -> None:
        delay = self._settings.load_delay_seconds
        logger.info("Loading model %s%s", self.name, f" after an artificial {delay:.1f} s" if delay else "")
        if delay and self._stopping.wait(delay):
            return
        began = time.monotonic()
        try:
            model = self._load()
        except Exception as exc:  # any failure must be reported, not kill the server
            logger.exception("Model %s failed to load", self.name)
            with self._lock:
                self._error = f"{type(exc).__name__}: {exc}"
            return
        with self._lock:
            self._model = model
        logger.info("Model %s loaded in %.1f s", self.name, time.monotonic() - began)
