"""Business hours: a weekly schedule in a time zone, with holidays and special days.

Pure: ``is_open(when)`` takes an aware ``datetime``. A day's hours are ranges like
``"09:00-12:00"``; a range may cross midnight (``"22:00-06:00"`` is open until 06:00 the next
morning). Holidays close a whole day; ``special`` days replace the weekly hours of that date
(for example a working Saturday that makes up for a holiday, 调休).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DAYS", "Schedule", "ScheduleError", "parse_ranges"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Ranges = tuple[tuple[int, int], ...]   # (start minute, end minute) of the day; end may be 1440+


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the offending value."""


def parse_ranges(values: Iterable[str]) -> Ranges:
    """``["09:00-12:00", "22:00-06:00"]`` -> minute ranges (an overnight one ends past 1440)."""
    out: list[tuple[int, int]] = []
    for value in values:
        m = _RANGE.match(value)
        if m is None:
            raise ScheduleError(f"not a time range HH:MM-HH:MM: {value!r}")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or (h1 == 24 and m1) or (h2 == 24 and m2):
            raise ScheduleError(f"no such time in {value!r}")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ScheduleError(f"empty range {value!r}")
        if end < start:
            end += 24 * 60          # crosses midnight
        out.append((start, end))
    return tuple(sorted(out))


@dataclass(frozen=True)
class Schedule:
    """Opening hours. ``weekly`` maps ``"mon"``..``"sun"`` to ranges (missing day: closed)."""

    timezone: str = "UTC"
    weekly: Mapping[str, Sequence[str]] = field(default_factory=dict)
    holidays: Iterable[date | str] = ()
    special: Mapping[date | str, Sequence[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {self.timezone!r}") from None
        bad = set(self.weekly) - set(DAYS)
        if bad:
            raise ScheduleError(f"unknown day {sorted(bad)[0]!r} (use {', '.join(DAYS)})")
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_week", tuple(parse_ranges(self.weekly.get(d, ()))
                                                for d in DAYS))
        object.__setattr__(self, "_holidays", frozenset(_date(d) for d in self.holidays))
        object.__setattr__(self, "_special", {_date(d): parse_ranges(r)
                                              for d, r in self.special.items()})

    def _ranges(self, day: date) -> Ranges:
        special: dict[date, Ranges] = self._special  # type: ignore[attr-defined]
        if day in special:
            return special[day]
        if day in self._holidays:  # type: ignore[attr-defined]
            return ()
        week: tuple[Ranges, ...] = self._week  # type: ignore[attr-defined]
        return week[day.weekday()]

    def is_open(self, when: datetime) -> bool:
        """True if ``when`` (an aware datetime) falls in opening hours."""
        if when.tzinfo is None:
            raise ScheduleError("is_open needs an aware datetime (with a time zone)")
        local = when.astimezone(self._zone)  # type: ignore[attr-defined]
        minute = local.hour * 60 + local.minute
        today = local.date()
        if any(s <= minute < e for s, e in self._ranges(today)):
            return True
        # an overnight range of yesterday still running this morning
        yesterday = today - timedelta(days=1)
        return any(e > 1440 and minute < e - 1440 for _, e in self._ranges(yesterday))

    def local_time(self, when: datetime) -> time:
        """``when`` on this schedule's clock (for logs and call records)."""
        return when.astimezone(self._zone).timetz()  # type: ignore[attr-defined]


def _date(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ScheduleError(f"not a date YYYY-MM-DD: {value!r}") from None
