"""A provider that simulates a step's work: it takes time, reports progress and
can be told to fail. Used to exercise the pipeline (tests, ``make bench`` for
the pipeline's own overhead) without media; selected with
``VIDPIPE_STEP_PROVIDERS=simulated``. Never the default for real uploads.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from handlers.errors import PermanentError, TransientError
from handlers.steps import StepContext, StepJob, StepResult


@dataclass
class SimulatedProvider:
    """Works ``seconds`` in ``ticks`` slices; fails as scripted.

    ``transient_failures``: how many calls of this provider fail transiently
    before one succeeds (``-1``: never succeeds). ``failing_attempts``: attempts
    1..N of every job fail transiently, whichever process runs them (decided by
    the job's attempt number, not by this object's memory, so it holds across
    restarts and replicas). ``permanent_failure``: fail at once with this
    message. ``retry_after``: the hint sent with transient failures.
    """

    name: str = "simulated"
    seconds: float = 0.0
    ticks: int = 4
    transient_failures: int = 0
    failing_attempts: int = 0
    permanent_failure: str | None = None
    retry_after: float | None = None
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def run(self, job: StepJob, context: StepContext) -> StepResult:
        with self._lock:
            self.calls += 1
            call = self.calls
        for tick in range(1, self.ticks + 1):
            context.wait(self.seconds / self.ticks)
            context.report(100 * tick / (self.ticks + 1))
        if self.permanent_failure:
            raise PermanentError(self.permanent_failure)
        if self.transient_failures < 0 or call <= self.transient_failures:
            raise TransientError(
                f"{job.step} server answered 503 (simulated failure {call})",
                retry_after=self.retry_after,
            )
        if job.attempt <= self.failing_attempts:
            raise TransientError(
                f"{job.step} server answered 503 (simulated failure of attempt {job.attempt})",
                retry_after=self.retry_after,
            )
        return StepResult(
            outputs={"artifact": f"{job.owner_id}/{job.queue_id}/{job.step}"},
            provider=self.name,
        )
