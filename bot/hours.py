"""Business hours: a weekly schedule in a time zone, e.g. ``mon-fri 09:00-17:30; sat 10:00-14:00``."""

from __future__ import annotations

import re
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_PART = re.compile(
    r"^(?P<first>[a-z]{3})(-(?P<last>[a-z]{3}))?\s+"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})$"
)

Schedule = dict[int, list[tuple[time, time]]]  # weekday (0 = Monday) -> open intervals


def _clock(value: str, part: str) -> time:
    hours, minutes = (int(x) for x in value.split(":"))
    if hours == 24 and minutes == 0:
        return time.max
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"{part!r}: {value} is not a time of day")
    return time(hours, minutes)


def parse_hours(spec: str) -> Schedule:
    """The schedule ``spec`` describes (empty: an empty schedule, meaning always open)."""
    schedule: Schedule = {}
    for part in filter(None, (p.strip().lower() for p in spec.split(";"))):
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part!r}: expected e.g. 'mon-fri 09:00-17:30'")
        first, last = match["first"], match["last"] or match["first"]
        if first not in DAYS or last not in DAYS:
            raise ValueError(f"{part!r}: days are {', '.join(DAYS)}")
        start, end = _clock(match["start"], part), _clock(match["end"], part)
        if end <= start:
            raise ValueError(f"{part!r}: the end must be after the start")
        i, j = DAYS.index(first), DAYS.index(last)
        for day in range(i, j + 1) if i <= j else [*range(i, 7), *range(j + 1)]:
            schedule.setdefault(day, []).append((start, end))
    return schedule


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (e.g. UTC, Europe/Berlin)") from None


def is_open(schedule: Schedule, tz: ZoneInfo, now: datetime) -> bool:
    """Whether ``now`` (aware) falls in the schedule; an empty schedule is always open."""
    if not schedule:
        return True
    local = now.astimezone(tz)
    clock = local.time()
    return any(start <= clock < end for start, end in schedule.get(local.weekday(), []))
