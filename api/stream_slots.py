"""How many live streams (server-sent events) this process holds, per caller and in all.

Each open stream holds a connection, a file descriptor and a few tasks for as
long as its queue runs; one tutor token once opened 4,000 of them (the API
grew by 224 MB and ``/healthz`` took 12 s). :class:`StreamSlots` bounds them:
a stream takes a slot before anything else is done for it (no database read),
and gives it back when its response ends, however it ends. A caller over
``per_caller`` or a process over ``total`` gets 429 with ``Retry-After``, a
refusal that costs a counter lookup.

The limits are per API process: behind a load balancer with N replicas a
caller can hold up to N × ``per_caller`` streams.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from api.errors import TooManyRequests

RETRY_AFTER_SECONDS = 10
"""What a refused stream is told to wait: streams end when their queues do, in minutes."""


class StreamSlot:
    """One taken slot; :meth:`release` gives it back (once, however often it is called)."""

    def __init__(self, slots: StreamSlots, owner_id: str) -> None:
        self._slots = slots
        self.owner_id = owner_id
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._give_back(self.owner_id)  # noqa: SLF001


class StreamSlots:
    """Counts open streams per caller and in all, refusing past the limits."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller = per_caller
        self.total = total
        self._open: Counter[str] = Counter()
        self._count = 0

    @property
    def open(self) -> int:
        """Streams open now."""
        return self._count

    def of(self, owner_id: str) -> int:
        """Streams ``owner_id`` has open now."""
        return self._open[owner_id]

    def take(self, owner_id: str) -> StreamSlot:
        """A slot for a new stream of ``owner_id``, or :class:`TooManyRequests` (429)."""
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if self._open[owner_id] >= self.per_caller:
            raise TooManyRequests(
                f"you already have {self._open[owner_id]} live streams open, the most one caller may "
                f"(VIDPIPE_MAX_STREAMS_PER_CALLER={self.per_caller}); close one, or poll the status instead",
                headers=headers,
            )
        if self._count >= self.total:
            raise TooManyRequests(
                f"the server holds {self._count} live streams, its limit (VIDPIPE_MAX_STREAMS); "
                "retry later, or poll the status instead",
                headers=headers,
            )
        self._open[owner_id] += 1
        self._count += 1
        return StreamSlot(self, owner_id)

    def _give_back(self, owner_id: str) -> None:
        self._count -= 1
        self._open[owner_id] -= 1
        if self._open[owner_id] <= 0:
            del self._open[owner_id]


class SlottedEventSourceResponse(EventSourceResponse):
    """An event stream that gives its :class:`StreamSlot` back when the response ends."""

    def __init__(self, content: Any, slot: StreamSlot, **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()
