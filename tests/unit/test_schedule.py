"""Business hours: weekly ranges, overnight, holidays, special days, time zones, DST."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.apps.schedule import Schedule, ScheduleError, parse_ranges

SH = ZoneInfo("Asia/Shanghai")
WEEKDAYS = {d: ["09:00-12:00", "13:00-18:00"] for d in ("mon", "tue", "wed", "thu", "fri")}


def at(y: int, mo: int, d: int, h: int, mi: int = 0, tz: ZoneInfo = SH) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=tz)


def test_weekly_ranges_with_lunch_break() -> None:
    s = Schedule("Asia/Shanghai", WEEKDAYS)
    assert not s.is_open(at(2026, 11, 30, 8, 59))      # Monday
    assert s.is_open(at(2026, 11, 30, 9, 0))
    assert not s.is_open(at(2026, 11, 30, 12, 30))
    assert s.is_open(at(2026, 11, 30, 17, 59))
    assert not s.is_open(at(2026, 11, 30, 18, 0))      # end is exclusive
    assert not s.is_open(at(2026, 12, 5, 10))          # Saturday


def test_time_zone_is_the_schedules_not_the_callers() -> None:
    s = Schedule("Asia/Shanghai", WEEKDAYS)
    assert s.is_open(datetime(2026, 11, 30, 1, 30, tzinfo=UTC))    # 09:30 in Shanghai
    assert not s.is_open(datetime(2026, 11, 30, 11, 0, tzinfo=UTC))  # 19:00
    with pytest.raises(ScheduleError):
        s.is_open(datetime(2026, 11, 30, 10, 0))        # naive


def test_overnight_range_runs_into_the_next_day() -> None:
    s = Schedule("Asia/Shanghai", {"fri": ["22:00-06:00"]})
    assert s.is_open(at(2026, 12, 4, 23))               # Friday night
    assert s.is_open(at(2026, 12, 5, 5, 59))            # Saturday early morning
    assert not s.is_open(at(2026, 12, 5, 6))
    assert not s.is_open(at(2026, 12, 4, 5))            # Friday morning: Thursday had none


def test_holidays_and_make_up_working_days() -> None:
    s = Schedule("Asia/Shanghai", WEEKDAYS, holidays=["2026-10-01", "2026-10-02"],
                 special={"2026-09-27": ["09:00-18:00"]})      # a working Sunday
    assert not s.is_open(at(2026, 10, 1, 10))           # Thursday, national day
    assert s.is_open(at(2026, 10, 5, 10))               # the Monday after... not a holiday
    assert s.is_open(at(2026, 9, 27, 12, 30))           # Sunday, special hours, no lunch break


def test_dst_zone_uses_local_wall_clock() -> None:
    s = Schedule("Europe/Berlin", {"mon": ["09:00-17:00"]})
    # 2026-03-30 is a Monday after the switch to summer time (UTC+2)
    assert s.is_open(datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    assert not s.is_open(datetime(2026, 3, 30, 6, 59, tzinfo=UTC))
    # 2026-11-30 is in winter time (UTC+1)
    assert s.is_open(datetime(2026, 11, 30, 8, 0, tzinfo=UTC))


@pytest.mark.parametrize(("kwargs", "text"), [
    ({"timezone": "Mars/Olympus"}, "Mars/Olympus"),
    ({"weekly": {"monday": ["09:00-10:00"]}}, "monday"),
    ({"weekly": {"mon": ["9-10"]}}, "9-10"),
    ({"weekly": {"mon": ["25:00-26:00"]}}, "25:00"),
    ({"weekly": {"mon": ["10:00-10:00"]}}, "empty"),
    ({"holidays": ["2026-13-01"]}, "2026-13-01"),
])
def test_bad_schedules_name_the_value(kwargs: dict[str, object], text: str) -> None:
    with pytest.raises(ScheduleError, match=text):
        Schedule(**kwargs)  # type: ignore[arg-type]


def test_parse_ranges() -> None:
    assert parse_ranges(["13:00-18:00", "09:00-12:00", "22:30-01:00"]) == (
        (540, 720), (780, 1080), (1350, 1500))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 6 * 24 * 60 - 1))
def test_matches_a_minute_by_minute_model(offset: int) -> None:
    s = Schedule("Asia/Shanghai", WEEKDAYS | {"sat": ["20:00-02:00"]})
    when = at(2026, 11, 30, 0) + timedelta(minutes=offset)           # Mon 00:00 + offset
    local = when.astimezone(SH)
    day, minute = local.weekday(), local.hour * 60 + local.minute
    expected = (day < 5 and (540 <= minute < 720 or 780 <= minute < 1080)) \
        or (day == 5 and minute >= 1200) or (day == 6 and minute < 120)
    assert s.is_open(when) == expected
