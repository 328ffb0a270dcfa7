"""When to try a failed delivery again: pure functions, no I/O.

Covers the retry part of the protocol: QStash's default exponential backoff,
the destination's ``Retry-After`` header, and the order in which they and a
message's ``Upstash-Retry-Delay`` expression are applied.
"""

from __future__ import annotations

import email.utils
import math
from datetime import datetime, timezone

from local.qstash.durations import GO_UNITS, parse_duration
from local.qstash.expressions import RetryDelayExpression

MAX_BACKOFF_S = 86400.0
"""QStash never waits more than a day between attempts."""


def default_backoff(failures: int) -> float:
    """Seconds to wait after the ``failures``-th failed attempt: ``min(86400, e^(2.5 n))``.

    ``default_backoff(1)`` is about 12 s, then 2 m 28 s, 30 m, ...
    """
    exponent = 2.5 * max(failures, 0)
    if exponent >= math.log(MAX_BACKOFF_S):
        return MAX_BACKOFF_S
    return math.exp(exponent)


def parse_retry_after(value: str, now: datetime) -> float | None:
    """Seconds from ``now`` that a ``Retry-After`` value asks for, or ``None`` to ignore it.

    Accepts integer seconds, an HTTP date, or a Go duration (``6m5s``).
    ``0`` means now; a wait over a day, a negative one, or garbage is ignored.
    """
    text = value.strip()
    seconds = _retry_after_seconds(text, now)
    if seconds is None or seconds < 0 or seconds > MAX_BACKOFF_S:
        return None
    return seconds


def _retry_after_seconds(text: str, now: datetime) -> float | None:
    if text.isdigit():
        return float(text)
    try:
        return parse_duration(text, GO_UNITS)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - now).total_seconds())


def next_delay(
    *,
    retried: int,
    retry_after: float | None,
    expression: RetryDelayExpression | None,
    scale: float = 1.0,
) -> float:
    """Seconds until the next attempt after a failure of attempt number ``retried`` (0-based).

    A destination's ``Retry-After`` wins; otherwise the message's
    ``Upstash-Retry-Delay`` (milliseconds, evaluated with ``retried``);
    otherwise the default backoff, multiplied by ``scale``.
    """
    if retry_after is not None:
        return retry_after
    if expression is not None:
        millis = expression.evaluate(retried)
        if millis is not None:
            return min(max(millis, 0.0) / 1000.0, MAX_BACKOFF_S)
    return default_backoff(retried + 1) * scale
