"""A model that loads in a background thread and may be asleep.

The server starts answering at once; until the model is ready every model
request gets 503 with Hugging Face's "is currently loading" body. After
loading, ``ModelServerSettings.sleep_requests`` more requests are turned
away the same way, requests during the ``sleep_seconds`` that follow the first
model request are too, and ``never_wake`` turns all of them away: the
behaviours of a Hugging Face Space that sleeps, for clients to be tested
against. ``slow_requests`` requests the awake model serves are first held for
``slow_seconds`` (a server slower than its clients' timeout).

The model is loaded on a thread of its own that lives as long as the slot
(:class:`ModelThread`), and work handed to :meth:`ModelSlot.submit` runs there,
one call after another. Loading on a thread that then exits made CTranslate2
(faster-whisper) spend 4-7x the CPU on every later transcription: its GNU
OpenMP threads then spin-wait at full speed instead of yielding the cores
(``OMP_WAIT_POLICY=passive`` or ``GOMP_SPINCOUNT=0`` hide it too).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from local.models.errors import ModelFailed, ModelLoading
from local.models.settings import ModelServerSettings

logger = logging.getLogger(__name__)

M = TypeVar("M")
T = TypeVar("T")

State = Literal["loading", "asleep", "ready", "failed"]


@dataclass(frozen=True)
class SlotStatus:
    """What a model slot would answer now, without counting as a request."""

    state: State
    estimated_time: float | None = None
    error: str | None = None


class ModelThread:
    """One daemon thread that runs the calls submitted to it, in order, until closed."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], object], Future[object]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run ``call`` on the thread after everything submitted before it; its result as a future."""
        future: Future[T] = Future()
        self._calls.put((call, future))  # type: ignore[arg-type]
        return future

    def close(self) -> None:
        """Let the thread end once the calls already submitted have run."""
        self._calls.put(None)

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to whoever waits on the future
                future.set_exception(exc)


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
        self._thread: ModelThread | None = None
        self._loaded: Future[None] | None = None

    def start(self) -> None:
        """Begin loading on the model's own thread (once)."""
        if self._thread is not None:
            return
        self._started_at = time.monotonic()
        self._thread = ModelThread(f"model-{self.name}")
        if self._settings.never_wake:
            logger.warning("Model %s never wakes (MODEL_SERVER_NEVER_WAKE): not loading it", self.name)
            return
        self._loaded = self._thread.submit(self._run)

    def stop(self) -> None:
        """Interrupt an artificial load delay and let the model's thread end after the work it has."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.close()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until loading ended (either way); True when it did in time."""
        if self._loaded is None:
            return True
        try:
            self._loaded.result(timeout)
        except TimeoutError:
            return False
        return True

    def submit(self, call: Callable[[], T]) -> Future[T]:
        """Run ``call`` on the model's thread, after the calls submitted before it."""
        if self._thread is None:
            raise RuntimeError(f"model slot {self.name} was not started")
        return self._thread.submit(call)

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
