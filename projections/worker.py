"""A periodic worker: one daemon thread that runs a round of work every so often until stopped.

The followers of the log, the leadership elector and the storage sweeper all
run this way. A round that fails never ends the loop: the failure is counted,
logged with its traceback, and tried again after a pause (doubling up to a
ceiling when the worker backs off), since the usual cause — the database
restarting — passes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class PeriodicWorker:
    """Runs ``work`` in a daemon thread named ``name``, every ``interval`` seconds, until :meth:`stop`.

    - ``work`` returns ``True`` when more is waiting: the next round starts at
      once (a follower that applied a batch reads the next without pausing);
      any other answer pauses ``interval`` seconds.
    - ``wait_first``: the first round comes after one interval, not at once.
    - A failing round is counted in :attr:`errors` and logged on ``log`` at
      ``level`` with its traceback, as ``failure`` formatted with the worker's
      name and the seconds until the next try; that pause starts at
      ``interval`` and doubles with each failure in a row up to
      ``max_backoff`` (by default ``interval``: no back-off). A round that
      succeeds resets it.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], object],
        *,
        interval: float,
        log: logging.Logger,
        failure: str = "%s: round failed; trying again in %.1f s",
        level: int = logging.ERROR,
        max_backoff: float | None = None,
        wait_first: bool = False,
    ) -> None:
        self.name = name
        self.work = work
        self.interval = interval
        self.log = log
        self.failure = failure
        self.level = level
        self.max_backoff = interval if max_backoff is None else max_backoff
        self.wait_first = wait_first
        self.errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread (again, after a :meth:`stop`)."""
        self._stop = threading.Event()  # its own: a thread still ending its last round keeps seeing it set
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to end and wait (up to ``timeout`` seconds) for the round in hand."""
        thread = self.halt()
        if thread is not None:
            thread.join(timeout)

    def halt(self) -> threading.Thread | None:
        """Ask the loop to end without waiting; returns the thread to join (``None`` when none ran).

        For an owner whose lock the round in hand may need: halt under the lock, join outside it.
        """
        self._stop.set()
        thread, self._thread = self._thread, None
        return thread

    def _run(self, stop: threading.Event) -> None:
        if self.wait_first and stop.wait(self.interval):
            return
        pause = self.interval
        while not stop.is_set():
            try:
                more = self.work()
            except Exception:  # noqa: BLE001 - one failing round never ends the loop
                self.errors += 1
                self.log.log(self.level, self.failure, self.name, pause, exc_info=True)
                stop.wait(pause)
                pause = min(self.max_backoff, pause * 2)
                continue
            pause = self.interval
            if more is not True:
                stop.wait(self.interval)
