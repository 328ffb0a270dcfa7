"""Duration strings of the protocol.

``Upstash-Delay`` and ``Upstash-Timeout`` use ``<n><unit>`` (``10s``, ``5m``,
``2h``, ``1d``; parts may be chained: ``1h30m``). A destination's
``Retry-After`` may be a Go-style duration (``6m5s``, ``1.5h``, ``300ms``).
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(text: str, units: frozenset[str]) -> float:
    """Seconds in a chain of ``<number><unit>`` parts; ``ValueError`` if malformed.

    ``units`` limits which units are accepted, so each header gets its own grammar.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    position = 0
    total = 0.0
    for match in _PART.finditer(text):
        if match.start() != position or match.group(2) not in units:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"not a duration: {text!r}")
    return total


DELAY_UNITS = frozenset({"s", "m", "h", "d"})
"""Units of ``Upstash-Delay``."""

TIMEOUT_UNITS = frozenset({"s", "m", "h"})
"""Units of ``Upstash-Timeout``."""

GO_UNITS = frozenset({"ns", "us", "µs", "ms", "s", "m", "h"})
"""Units of Go's ``time.ParseDuration`` (used by ``Retry-After``)."""
