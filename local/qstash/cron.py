"""Cron expressions of QStash schedules (``Upstash-Cron``): parsing and the next fire time.

Five fields, ``minute hour day-of-month month day-of-week``, each ``*``, a
number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those;
months ``JAN``-``DEC`` and weekdays ``SUN``-``SAT`` (0 or 7 is Sunday) by name.
As in Vixie cron, when both day fields are restricted a day matching either
one fires. An optional ``CRON_TZ=<IANA zone>`` prefix evaluates the fields in
that zone (UTC otherwise). Pure; no I/O.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}
_SEARCH_DAYS = 366 * 5


class CronError(ValueError):
    """An expression the server refuses (400), with a message naming the bad part."""


@dataclasses.dataclass(frozen=True)
class Cron:
    """A parsed expression: the allowed values of each field, and its zone."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool
    zone: ZoneInfo | timezone

    def next_after(self, moment: float) -> float:
        """The first fire time strictly after ``moment`` (unix seconds), as unix seconds."""
        start = datetime.fromtimestamp(moment, self.zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for offset in range(_SEARCH_DAYS):
            date = day + timedelta(days=offset)
            if not self._day_matches(date):
                continue
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    candidate = datetime(date.year, date.month, date.day, hour, minute, tzinfo=self.zone)
                    if candidate >= start:
                        return candidate.timestamp()
        raise CronError(f"cron {self.text!r} never fires")

    def _day_matches(self, date: datetime) -> bool:
        if date.month not in self.months:
            return False
        by_day = date.day in self.days
        by_weekday = (date.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return by_day or by_weekday
        return by_day and by_weekday


def parse_cron(text: str) -> Cron:
    """``text`` parsed, or ``CronError`` naming what is wrong."""
    expression = text.strip()
    zone: ZoneInfo | timezone = timezone.utc
    if expression.startswith(("CRON_TZ=", "TZ=")):
        prefix, _, expression = expression.partition(" ")
        name = prefix.split("=", 1)[1]
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise CronError(f"unknown time zone {name[:64]!r} in cron {text[:128]!r}") from None
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"invalid cron {text[:128]!r}: expected 5 fields 'minute hour day-of-month month day-of-week'"
            " (optionally prefixed by CRON_TZ=<zone>)"
        )
    minute, hour, day, month, weekday = fields
    weekdays = _field(weekday, "day-of-week", 0, 7, _DAYS)
    cron = Cron(
        text=text.strip(),
        minutes=_field(minute, "minute", 0, 59, {}),
        hours=_field(hour, "hour", 0, 23, {}),
        days=_field(day, "day-of-month", 1, 31, {}),
        months=_field(month, "month", 1, 12, _MONTHS),
        weekdays=frozenset(value % 7 for value in weekdays),
        days_restricted=day != "*",
        weekdays_restricted=weekday != "*",
        zone=zone,
    )
    cron.next_after(0.0 if zone is timezone.utc else 86400.0)  # refuses what never fires (e.g. 30 FEB)
    return cron


def _field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        values.update(_part(part, name, low, high, names))
    return frozenset(values)


def _part(part: str, name: str, low: int, high: int, names: dict[str, int]) -> range:
    base, _, step_text = part.partition("/")
    step = 1
    if step_text:
        if not step_text.isdigit() or int(step_text) < 1:
            raise CronError(f"invalid step {part!r} in the {name} field")
        step = int(step_text)
    if base == "*":
        first, last = low, high
    elif "-" in base:
        start, _, end = base.partition("-")
        first, last = _value(start, name, low, high, names), _value(end, name, low, high, names)
        if first > last:
            raise CronError(f"invalid range {part!r} in the {name} field")
    else:
        first = _value(base, name, low, high, names)
        last = high if step_text else first
    return range(first, last + 1, step)


def _value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit() or not low <= int(text) <= high:
        raise CronError(f"invalid {name} {text[:16]!r}: expected {low}-{high}")
    return int(text)
