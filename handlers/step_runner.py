"""Turns one step message into commands on its queue, doing the work in between.

The QStash webhook verifies the signature and hands the message here. The
outcome is what QStash should hear:

- 200: done, retried later by our own ``StepRetried`` (the dispatcher
  republishes with the delay), cancelled, or a redelivery that changed nothing;
- 489 + ``Upstash-NonRetryable-Error: true``: the step failed for good, after
  ``StepFailed`` was recorded (QStash moves the message to its DLQ);
- 503 + ``Retry-After``: our database is unreachable; QStash redelivers later
  and the attempt runs again (handlers are idempotent).

A delivery of an attempt that this process is already handling (QStash lost
track of the first delivery: its own server restarted mid-delivery, or the
connection dropped) waits for that handling and answers the same: the work is
not done twice. A redelivery of the message that started a running attempt
that no thread here handles (same ``Upstash-Message-Id``: the process that ran
it died and QStash retried) runs the work again: step work is idempotent, and
the aggregate lets exactly one completion of the attempt through. A
*different* message for a running attempt (a duplicate publish) is ignored.

:attr:`StepRunner.deliveries` counts the deliveries by step and how they were
received (:data:`Received`); ``/metrics`` exports it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from domain import STEPS, DomainError, QueueIsTerminal, QueueNotFound, VideoProcessing
from domain.errors import StaleAttempt, StepNotRunning, StepOutOfOrder, VidpipeError
from handlers.failpoints import failpoint
from handlers.errors import PermanentError, ProviderError, StepCancelled, TransientError
from handlers.storage import StorageError
from handlers.retry import RetryPolicy
from handlers.steps import StepContext, StepJob, StepProvider

logger = logging.getLogger(__name__)

NON_RETRYABLE = {"Upstash-NonRetryable-Error": "true"}
SHUTDOWN_RETRY_AFTER_SECONDS = 5

Received = Literal["started", "redelivered", "joined", "duplicate", "done", "completed", "terminal", "refused"]
"""How a step delivery was received. The work ran for ``started`` (a new attempt) and
``redelivered`` (the message of a running attempt no thread here handles: its worker died).
It did not run for ``joined`` (the attempt was being handled here: the delivery waited
for that answer), ``duplicate`` (another message for the running attempt), ``done`` (the
attempt had ended), ``completed`` (the step had completed), ``terminal`` (the queue had
finished) and ``refused`` (unknown queue, stale attempt, step out of order)."""


class BadMessage(VidpipeError):
    """A step message that is not what the dispatcher publishes."""


@dataclass(frozen=True)
class StepMessage:
    """The body of every step message: which attempt of which step of which queue."""

    queue_id: str
    step: str
    attempt: int

    def as_body(self) -> dict[str, Any]:
        return {"queue_id": self.queue_id, "step": self.step, "attempt": self.attempt}

    @classmethod
    def parse(cls, raw: bytes) -> StepMessage:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise BadMessage(f"the step message is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise BadMessage("the step message must be a JSON object")
        queue_id, step, attempt = data.get("queue_id"), data.get("step"), data.get("attempt")
        if not isinstance(queue_id, str) or not queue_id:
            raise BadMessage("the step message has no queue_id")
        if step not in STEPS:
            raise BadMessage(f"the step message names an unknown step {step!r}")
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise BadMessage(f"the step message's attempt must be a positive integer, got {attempt!r}")
        return cls(queue_id=queue_id, step=step, attempt=attempt)


@dataclass(frozen=True)
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Handling:
    """An attempt being handled by a thread of this process; later deliveries of it wait for ``outcome``."""

    finished: threading.Event = field(default_factory=threading.Event)
    outcome: Outcome | None = None


def storage_failure(error: StorageError) -> ProviderError:
    """A storage error as a provider error: transient when the storage says so (MEGA outage)."""
    if getattr(error, "transient", False):
        return TransientError(f"storage unavailable: {error}", retry_after=getattr(error, "retry_after", None))
    return PermanentError(f"storage refused: {error}")


def ignored(reason: str) -> Outcome:
    return Outcome(200, {"ignored": reason})


class StepRunner:
    """Runs step messages against the application with the configured providers."""

    def __init__(
        self,
        app: VideoProcessing,
        providers: Mapping[str, StepProvider],
        policy: RetryPolicy,
        *,
        cancel_poll_seconds: float = 1.0,
        progress_interval: float = 1.0,
    ) -> None:
        missing = set(STEPS) - set(providers)
        if missing:
            raise ValueError(f"no provider for steps: {', '.join(sorted(missing))}")
        self.app = app
        self._source = providers
        self.providers = dict(providers)
        self.policy = policy
        self.cancel_poll_seconds = cancel_poll_seconds
        self.progress_interval = progress_interval
        self._running: set[StepContext] = set()
        self._handling: dict[tuple[str, str, int], _Handling] = {}
        self._lock = threading.Lock()
        self.shutting_down = threading.Event()
        self.deliveries: Counter[tuple[str, Received]] = Counter()
        """Deliveries received by this process, by ``(step, how)``."""

    def shutdown(self) -> None:
        """The process is stopping: stop every running step (killing its child processes).

        Their deliveries are answered 503, so QStash delivers them again, to this
        process after a restart or to another replica; nothing is recorded.
        """
        self.shutting_down.set()
        with self._lock:
            running = list(self._running)
        for context in running:
            context.cancel()
        if running:
            logger.info("stopped %d running step(s) for shutdown; QStash will redeliver them", len(running))

    def close(self) -> None:
        """Release what the providers hold (HTTP clients, sessions)."""
        for item in (self._source, *self.providers.values()):
            close = getattr(item, "close", None)
            if callable(close):
                close()

    def handle(self, message: StepMessage, message_id: str | None = None) -> Outcome:
        """Handle one delivery; a delivery of an attempt already in hand here gets that handling's answer."""
        key = (message.queue_id, message.step, message.attempt)
        with self._lock:
            handling = self._handling.get(key)
            mine = handling is None
            if handling is None:
                handling = self._handling[key] = _Handling()
        if not mine:
            handling.finished.wait()
            if handling.outcome is None:  # that handling raised (database unreachable): try on our own
                return self.handle(message, message_id)
            self._received(message, "joined")
            return handling.outcome
        outcome = None
        try:
            outcome = self._handle(message, message_id)
            return outcome
        finally:
            with self._lock:
                del self._handling[key]
            handling.outcome = outcome
            handling.finished.set()

    def _handle(self, message: StepMessage, message_id: str | None) -> Outcome:
        try:
            job = self._start(message, message_id)
        except QueueNotFound as error:
            self._received(message, "refused")
            return Outcome(489, {"error": str(error)}, NON_RETRYABLE)
        except QueueIsTerminal as error:
            self._received(message, "terminal")
            return ignored(str(error))
        except (StaleAttempt, StepOutOfOrder, StepNotRunning) as error:
            self._received(message, "refused")
            return ignored(str(error))
        if isinstance(job, Outcome):
            return job
        return self._work(job)

    def _received(self, message: StepMessage, how: Received) -> None:
        with self._lock:
            self.deliveries[(message.step, how)] += 1

    # ---------------------------------------------------------------- phases
    def _start(self, message: StepMessage, message_id: str | None) -> StepJob | Outcome:
        queue = self.app.get_queue(message.queue_id)
        if queue.is_terminal:
            self._received(message, "terminal")
            return ignored(f"queue {message.queue_id} is already {queue.status}")
        step = queue.step(message.step)
        if step.status == "completed":
            self._received(message, "completed")
            return ignored(f"attempt {message.attempt} of {message.step} is already done")
        if step.status == "retrying" and message.attempt <= step.attempt:
            self._received(message, "done")
            return ignored(f"attempt {message.attempt} of {message.step} is already done")
        started = self.app.start_step(queue.id, message.step, message.attempt, message_id)
        self._received(message, started)
        if started == "duplicate":
            return ignored(f"attempt {message.attempt} of {message.step} is already running")
        if started == "done":
            return ignored(f"attempt {message.attempt} of {message.step} is already done")
        if started == "redelivered":
            logger.warning(
                "queue %s: %s attempt %d redelivered while running; running it again",
                queue.id, message.step, message.attempt,
            )
        inputs = {s.name: s.outputs for s in queue.steps if s.status == "completed"}
        return StepJob(
            queue_id=str(queue.id),
            owner_id=queue.owner_id,
            attachment_id=queue.attachment_id,
            step=message.step,
            attempt=message.attempt,
            options=queue.options,
            inputs=inputs,
        )

    def _work(self, job: StepJob) -> Outcome:
        provider = self.providers[job.step]
        context = StepContext(
            lambda percent, detail: self._progress(job, context, percent, detail),
            min_interval=self.progress_interval,
        )
        finished = threading.Event()
        watcher = threading.Thread(
            target=self._watch_for_cancel, args=(job, context, finished), daemon=True
        )
        watcher.start()
        with self._lock:
            self._running.add(context)
        started = time.monotonic()
        logger.info("queue %s: %s attempt %d started (%s)", job.queue_id, job.step, job.attempt, provider.name)
        try:
            if self.shutting_down.is_set():
                raise StepCancelled("shutting down")
            result = provider.run(job, context)
        except StepCancelled:
            if self.shutting_down.is_set():
                return self._interrupted(job)
            return self._cancelled(job)
        except ProviderError as error:
            return self._failed(job, error)
        except StorageError as error:
            return self._failed(job, storage_failure(error))
        except Exception as error:  # a bug or an unforeseen failure: retry, bounded
            logger.exception("queue %s: %s attempt %d crashed", job.queue_id, job.step, job.attempt)
            return self._failed(job, ProviderError(f"internal error in {job.step}: {error!r}"), transient=True)
        finally:
            context.close()
            finished.set()
            watcher.join()
            with self._lock:
                self._running.discard(context)
        if context.cancelled.is_set():
            return self._interrupted(job) if self.shutting_down.is_set() else self._cancelled(job)
        duration = time.monotonic() - started
        try:
            self.app.complete_step(
                job.queue_id, job.step, job.attempt, result.outputs,
                provider=result.provider or provider.name, model=result.model,
                duration_seconds=duration,
            )
        except DomainError as error:
            return ignored(str(error))
        failpoint("step.after_completed")  # StepCompleted recorded, QStash not yet answered
        logger.info("queue %s: %s attempt %d completed in %.2fs", job.queue_id, job.step, job.attempt, duration)
        return Outcome(200, {"completed": job.step, "attempt": job.attempt})

    def _failed(self, job: StepJob, error: ProviderError, *, transient: bool | None = None) -> Outcome:
        reason = str(error)
        try:
            if transient if transient is not None else error.transient:
                delay = self.policy.delay(job.attempt, error.retry_after)
                outcome = self.app.retry_step(job.queue_id, job.step, job.attempt, reason, delay)
                if outcome != "failed":
                    logger.info(
                        "queue %s: %s attempt %d failed transiently (%s); retry in %.0fs",
                        job.queue_id, job.step, job.attempt, reason, delay,
                    )
                    return Outcome(200, {"retry_in_seconds": delay, "reason": reason})
            else:
                self.app.fail_step(job.queue_id, job.step, job.attempt, reason)
        except DomainError as domain_error:
            return ignored(str(domain_error))
        logger.warning("queue %s: %s failed for good: %s", job.queue_id, job.step, reason)
        return Outcome(489, {"error": reason}, NON_RETRYABLE)

    def _interrupted(self, job: StepJob) -> Outcome:
        logger.info("queue %s: %s attempt %d interrupted by shutdown", job.queue_id, job.step, job.attempt)
        return Outcome(
            503,
            {"error": "the handler is shutting down; QStash will deliver this step again"},
            {"Retry-After": str(SHUTDOWN_RETRY_AFTER_SECONDS)},
        )

    def _cancelled(self, job: StepJob) -> Outcome:
        logger.info("queue %s: %s attempt %d stopped: cancelled", job.queue_id, job.step, job.attempt)
        return Outcome(200, {"cancelled": True})

    # ---------------------------------------------------------------- helpers
    def _progress(self, job: StepJob, context: StepContext, percent: int, detail: str | None) -> None:
        try:
            self.app.report_progress(job.queue_id, job.step, job.attempt, percent, detail)
        except QueueIsTerminal:
            context.cancel()
        except DomainError as error:
            logger.info("queue %s: progress not recorded: %s", job.queue_id, error)

    def _watch_for_cancel(self, job: StepJob, context: StepContext, finished: threading.Event) -> None:
        """Poll the queue's state; once it is cancelled or failed stop the work and its child processes."""
        while not finished.wait(self.cancel_poll_seconds):
            try:
                status = self.app.get_queue(job.queue_id).status
            except Exception:  # the database may be restarting; the work goes on
                logger.warning("queue %s: could not check for cancellation", job.queue_id, exc_info=True)
                continue
            if status in ("cancelled", "failed"):  # failed: another step, running beside this one, failed
                logger.info("queue %s: %s while %s ran; stopping it", job.queue_id, status, job.step)
                context.cancel()
                return
