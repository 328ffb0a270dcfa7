"""The domain: the ProcessingQueue aggregate, its events and the VideoProcessing application.

Imports nothing of vidpipe's other packages and no web framework.
"""

from domain.application import ConcurrencyConflict, TimelineEntry, VideoProcessing
from domain.errors import (
    DomainError,
    InvalidGraph,
    InvalidProgress,
    NotResumable,
    QueueIsTerminal,
    QueueNotFound,
    StaleAttempt,
    StepNotRunning,
    StepOutOfOrder,
    UnknownStep,
    VidpipeError,
)
from domain.queue import (
    DEFAULT_GRAPH,
    STEPS,
    TERMINAL,
    ProcessingQueue,
    StepView,
    graph_for_options,
    validate_graph,
)

__all__ = [
    "DEFAULT_GRAPH",
    "STEPS",
    "TERMINAL",
    "ConcurrencyConflict",
    "DomainError",
    "InvalidGraph",
    "InvalidProgress",
    "NotResumable",
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
    "graph_for_options",
    "validate_graph",
]
