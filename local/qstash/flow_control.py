"""``Upstash-Flow-Control-Key`` / ``Upstash-Flow-Control-Value``: bounding deliveries per key.

Messages published with the same key share its limits, whatever their
destination: ``parallelism=N`` (at most N deliveries in flight at once),
``rate=R`` (at most R deliveries started per period) and ``period=P`` (the
rate's window, ``<n><s|m|h|d>`` or seconds; default 1 s). The values of the
latest publish with a key apply to the key. Messages held back by a limit wait
(the key's waitlist) and keep their order. Pure parsing; the store enforces.
"""

from __future__ import annotations

import dataclasses

from local.qstash.durations import DELAY_UNITS, parse_duration

DEFAULT_PERIOD_S = 1.0
MAX_KEY_LENGTH = 256


class FlowControlError(ValueError):
    """A flow-control header the server refuses (400), with a message naming it."""


@dataclasses.dataclass(frozen=True)
class FlowControl:
    """One key's limits; ``None`` means unlimited."""

    key: str
    parallelism: int | None = None
    rate: int | None = None
    period_s: float = DEFAULT_PERIOD_S


def parse_flow_control(key: str | None, value: str | None) -> FlowControl | None:
    """The limits a publish asks for, ``None`` without flow-control headers."""
    if key is None and value is None:
        return None
    if not key or not key.strip():
        raise FlowControlError("Upstash-Flow-Control-Value needs an Upstash-Flow-Control-Key")
    key = key.strip()
    if len(key) > MAX_KEY_LENGTH:
        raise FlowControlError(f"Upstash-Flow-Control-Key is longer than {MAX_KEY_LENGTH} characters")
    if value is None or not value.strip():
        raise FlowControlError(
            "Upstash-Flow-Control-Key needs Upstash-Flow-Control-Value, e.g. 'parallelism=2, rate=10, period=1m'"
        )
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, raw = part.strip().partition("=")
        name = name.strip().lower()
        if not sep or name not in ("parallelism", "rate", "period") or name in fields:
            raise FlowControlError(
                f"invalid Upstash-Flow-Control-Value {value[:128]!r}: expected"
                " 'parallelism=<n>, rate=<n>, period=<duration>' (each at most once)"
            )
        fields[name] = raw.strip()
    if "parallelism" not in fields and "rate" not in fields:
        raise FlowControlError("Upstash-Flow-Control-Value must set parallelism or rate")
    return FlowControl(
        key=key,
        parallelism=_positive(fields.get("parallelism"), "parallelism"),
        rate=_positive(fields.get("rate"), "rate"),
        period_s=_period(fields.get("period")),
    )


def _positive(raw: str | None, name: str) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) < 1:
        raise FlowControlError(f"invalid flow-control {name} {raw[:32]!r}: expected a positive integer")
    return int(raw)


def _period(raw: str | None) -> float:
    if raw is None:
        return DEFAULT_PERIOD_S
    try:
        seconds = float(raw) if raw.isdigit() else parse_duration(raw, DELAY_UNITS)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise FlowControlError(f"invalid flow-control period {raw[:32]!r}: expected <n><s|m|h|d> or seconds")
    return seconds
