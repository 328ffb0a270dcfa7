"""Which due messages may start now: FIFO queues and flow control, as pure rules.

A message of a **queue** starts only while it is among the first
``parallelism`` unfinished messages of its queue (in enqueue order), so the
next one waits for the retries and callbacks of those before it; a paused
queue starts nothing. A message with a **flow-control key** starts only while
fewer than ``parallelism`` messages of the key are in flight and fewer than
``rate`` started within the last ``period``, and none while the key is
paused. Messages held back stay pending
(the waitlist) and are offered again on the next pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from local.qstash.message import Message


@dataclasses.dataclass(frozen=True)
class QueueState:
    """One queue as admission sees it: paused, and the ids allowed to run now."""

    paused: bool
    window: frozenset[str]


@dataclasses.dataclass
class FlowState:
    """One flow-control key's limits and current use."""

    parallelism: int | None
    rate: int | None
    in_flight: int
    started_in_period: int
    paused: bool = False

    def has_room(self) -> bool:
        if self.paused:
            return False
        if self.parallelism is not None and self.in_flight >= self.parallelism:
            return False
        return self.rate is None or self.started_in_period < self.rate

    def take(self) -> None:
        self.in_flight += 1
        self.started_in_period += 1


def admit(
    candidates: Iterable[Message],
    *,
    limit: int,
    queues: Mapping[str, QueueState],
    flows: Mapping[str, FlowState],
) -> tuple[list[Message], int]:
    """Up to ``limit`` of ``candidates`` (in order) allowed to start, and how many were held."""
    admitted: list[Message] = []
    held = 0
    for message in candidates:
        if len(admitted) >= limit:
            break
        if message.queue is not None:
            queue = queues.get(message.queue)
            if queue is None or queue.paused or message.id not in queue.window:
                held += 1
                continue
        flow = flows.get(message.flow_control_key) if message.flow_control_key else None
        if flow is not None:
            if not flow.has_room():
                held += 1
                continue
            flow.take()
        admitted.append(message)
    return admitted, held
