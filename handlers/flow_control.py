"""How many deliveries of one step kind run at once, across every replica: QStash flow control.

Each step message is published with a flow-control key per step kind
(``<prefix>-transcribe``) and that kind's parallelism. QStash then delivers at
most that many messages of the key at once, whichever replica receives them;
the rest wait in the key's waitlist *at QStash*, so a burst of 50 uploads
queues there instead of sending 50 requests to a Whisper server sized for two.

What a held message costs: nothing. QStash has not delivered it yet, so no
delivery timeout runs, no QStash retry (``Upstash-Retried``) is spent and no
step attempt is started; the step's retries (``StepRetried``) count only
failures of work that ran. A step's retry is published for the same step, so
it carries the same key and waits its turn like a first attempt (after its
``Upstash-Delay``).

The per-process limiter (``VIDPIPE_MAX_CONCURRENT_STEPS``, see
:mod:`handlers.webhooks`) still applies inside each replica: a delivery QStash
admitted may wait there for a free slot, holding its flow-control slot (and its
delivery's time) meanwhile. Keep each step's parallelism at most what the
replicas' slots can run, or the key's budget is spent waiting.

The key prefix tells deployments sharing a QStash account apart: keys are
account-wide, so staging and production with the same keys would share (and
set: the latest publish's limits apply) one budget.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

KEY_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
"""Letters, digits, ``.``, ``_``, ``-``: safe in a header and in ``/v2/flowControl/{key}`` paths."""


@dataclass(frozen=True)
class FlowLimit:
    """The limits one publish asks QStash for: at most ``parallelism`` deliveries of ``key`` in flight."""

    key: str
    parallelism: int


@dataclass(frozen=True)
class StepFlowControl:
    """Flow-control keys and limits per step kind; a step with parallelism 0 (or none) is unbounded."""

    key_prefix: str
    parallelism: Mapping[str, int] = field(default_factory=dict)

    def key(self, step: str) -> str:
        return f"{self.key_prefix}-{step}"

    def for_step(self, step: str) -> FlowLimit | None:
        """What a message of ``step`` is published with (``None``: no flow control for it)."""
        limit = self.parallelism.get(step, 0)
        return FlowLimit(self.key(step), limit) if limit > 0 else None


def default_key_prefix(public_base_url: str) -> str:
    """``vidpipe-<host>``: one prefix per public URL, so two deployments sharing a QStash
    account get different keys while every replica of one deployment (same URL) shares them."""
    parts = urlsplit(public_base_url)
    where = f"{parts.netloc}{parts.path}".strip("/") or "local"
    return "vidpipe-" + re.sub(r"[^A-Za-z0-9._-]+", "-", where).strip("-")[:180]
