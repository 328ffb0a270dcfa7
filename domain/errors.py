"""The domain's refusals.

Every refused command raises one of these, and nothing is written. Each error
says what was refused and why, in words an operator (or, through the API, a
tutor) can act on. The tree is small on purpose:

    VidpipeError
    └── DomainError
        ├── QueueNotFound
        ├── UnknownStep
        ├── InvalidProgress
        ├── InvalidGraph           (a queue's steps and their predecessors are not a safe pipeline)
        ├── QueueIsTerminal        (completed, failed or cancelled: nothing changes any more)
        ├── NotResumable           (a retry of a queue that is not failed or cancelled)
        ├── StepOutOfOrder         (a predecessor of the step has not completed)
        ├── StepNotRunning         (progress/completion/retry for a step that is not running)
        └── StaleAttempt           (a message about an attempt that is no longer the current one)
"""

from __future__ import annotations


class VidpipeError(Exception):
    """Root of every error vidpipe raises on purpose."""


class DomainError(VidpipeError):
    """A command the ProcessingQueue aggregate refused; nothing was recorded."""


class QueueNotFound(DomainError):
    def __init__(self, queue_id: object) -> None:
        super().__init__(f"processing queue {queue_id} does not exist")
        self.queue_id = queue_id


class UnknownStep(DomainError):
    def __init__(self, step: str, known: list[str]) -> None:
        super().__init__(f"unknown step {step!r}; this queue's steps are {', '.join(known)}")
        self.step = step


class InvalidProgress(DomainError):
    def __init__(self, percent: object) -> None:
        super().__init__(f"progress must be a number from 0 to 100, got {percent!r}")
        self.percent = percent


class InvalidGraph(DomainError):
    """A queue's steps or predecessors outside the safe bounds; no queue was created."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid processing pipeline: {reason}")
        self.reason = reason


class NotResumable(DomainError):
    """Only a failed or cancelled queue can be retried."""

    def __init__(self, queue_id: object, status: str) -> None:
        super().__init__(
            f"cannot retry processing queue {queue_id}: it is {status}; "
            "only failed or cancelled queues can be retried"
        )
        self.queue_id = queue_id
        self.status = status


class QueueIsTerminal(DomainError):
    """The queue has ended; later commands change nothing."""

    def __init__(self, queue_id: object, status: str, command: str) -> None:
        super().__init__(
            f"cannot {command}: processing queue {queue_id} is already {status}"
        )
        self.queue_id = queue_id
        self.status = status


class StepOutOfOrder(DomainError):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"cannot start step {step!r}: {reason}")
        self.step = step


class StepNotRunning(DomainError):
    def __init__(self, step: str, status: str, command: str) -> None:
        super().__init__(f"cannot {command} step {step!r}: it is {status}, not running")
        self.step = step
        self.status = status


class StaleAttempt(DomainError):
    """A (re)delivered message about an attempt that is not the step's current one."""

    def __init__(self, step: str, attempt: int, current: int, command: str) -> None:
        super().__init__(
            f"cannot {command} attempt {attempt} of step {step!r}: "
            f"the current attempt is {current}"
        )
        self.step = step
        self.attempt = attempt
        self.current = current
