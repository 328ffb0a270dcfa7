"""The domain: the ProcessingQueue aggregate, its events and the VideoProcessing application.

Imports nothing of vidpipe's other packages and no web framework.
"""

from domain.application import ConcurrencyConflict, TimelineEntry, VideoProcessing
from domain.errors import (
    DomainError,
    InvalidProgress,
    QueueIsTerminal,
    QueueNotFound,
    StaleAttempt,
    StepNotRunning,
    StepOutOfOrder,
    UnknownStep,
    VidpipeError,
)
from domain.queue import STEPS, TERMINAL, ProcessingQueue, StepView

__all__ = [
    "STEPS",
    "TERMINAL",
    "ConcurrencyConflict",
    "DomainError",
    "InvalidProgress",
    "ProcessingQueue",
    "QueueIsTerminal",
    "QueueNotFound",
    "StaleAttempt",
    "StepNotRunning",
    "StepOutOfOrder",
    "StepView",
    "TimelineEntry",
    "UnknownStep",
    "VideoProcessing",
    "VidpipeError",
]
