"""The transcript so far: what the transcribe step has heard, kept beside the final one while it runs.

While the transcribe step runs, :class:`PartialTranscriptWriter` keeps the
segments decoded so far (start, end, text, with their times in the whole
audio) in the queue's storage folder as ``transcript.partial.json``, through
the same :class:`~handlers.storage.Storage` as the final transcript, so a
deleted lecture's words go with its folder and the event log never holds
them. Writes are throttled (at most one per ``every_seconds``, 5 s by
default, plus one at the end of each piece the server streamed) so MEGA is
not asked to store a file per segment. The step deletes the file once the
final transcript is stored (or when it fails for good or is cancelled); a
transient failure keeps it for the next attempt, which resumes at the failed
piece.

The API answers it at ``GET .../transcript?partial=true`` while the step runs
(:func:`read_partial`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from handlers.storage import ArtifactNotFound, Storage, artifact_key
from handlers.transcripts import Transcript, encoded

logger = logging.getLogger(__name__)

PARTIAL_NAME = "transcript.partial.json"
"""The file's name in the queue's storage folder."""
DEFAULT_EVERY_SECONDS = 5.0
"""Least time between two writes of the partial transcript."""


def partial_key(owner_id: str, queue_id: str) -> str:
    """``<owner>/<queue>/transcript.partial.json``."""
    return artifact_key(owner_id, queue_id, PARTIAL_NAME)


def partial_document(transcript: Transcript) -> dict[str, Any]:
    """The stored shape: :meth:`Transcript.to_dict` with ``complete: false``."""
    return {"complete": False, **transcript.to_dict()}


class PartialTranscriptWriter:
    """Writes the transcript so far to ``key``, at most once per ``every_seconds``; best effort.

    :meth:`offer` takes a function that builds the transcript so far (called only when a write is due,
    so merging the pieces costs nothing between writes). A write that fails is logged and skipped: the
    partial transcript is a courtesy, the step goes on. ``allowed`` is asked before every write (the
    step passes "not cancelled", so a cancelled or deleted lecture's folder is not written again).
    """

    def __init__(
        self,
        storage: Storage,
        key: str,
        *,
        every_seconds: float = DEFAULT_EVERY_SECONDS,
        allowed: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.key = key
        self.every_seconds = every_seconds
        self.allowed = allowed
        self.clock = clock
        self.writes = 0
        self._last_write = float("-inf")
        self._written_segments = -1
        self._lock = threading.Lock()

    def offer(self, build: Callable[[], Transcript], *, force: bool = False) -> bool:
        """Write ``build()`` if a write is due (or ``force``) and it has segments not yet written."""
        with self._lock:
            if not force and self.clock() - self._last_write < self.every_seconds:
                return False
            transcript = build()
            if len(transcript.segments) == self._written_segments or not transcript.segments:
                return False
            if not self.allowed():
                return False
            try:
                body = json.dumps(partial_document(transcript), ensure_ascii=False)
                self.storage.put_stream(self.key, encoded([body]))
            except Exception:  # noqa: BLE001 - the partial transcript is best effort
                logger.warning("could not store the partial transcript %s; carrying on", self.key, exc_info=True)
                self._last_write = self.clock()  # and do not try again at once
                return False
            self._last_write = self.clock()
            self._written_segments = len(transcript.segments)
            self.writes += 1
            return True

    def clear(self) -> None:
        """Remove the partial transcript (the final one replaces it, or the step ended without one)."""
        with self._lock:
            self._written_segments = -1
            try:
                self.storage.delete(self.key)
            except Exception:  # noqa: BLE001 - a stale partial file is only served while the step runs
                logger.warning("could not remove the partial transcript %s", self.key, exc_info=True)


def read_partial(storage: Storage, owner_id: str, queue_id: str) -> Transcript | None:
    """The stored transcript so far; None when there is none (nothing decoded yet, or already replaced)."""
    try:
        data = b"".join(storage.iter_bytes(partial_key(owner_id, queue_id)))
    except ArtifactNotFound:
        return None
    try:
        return Transcript.from_dict(json.loads(data))
    except (ValueError, KeyError, TypeError):
        logger.warning("the partial transcript of queue %s is unreadable; answering none", queue_id)
        return None
