"""EventBridge schedule expressions: `rate()`, six-field AWS `cron()`, and Scheduler's `at()`.

Refuses what EventBridge refuses (so a typo fails here, not at deploy): `rate(1 minutes)`,
`rate(5 hour)`, a cron with a value in both day-of-month and day-of-week, out-of-range values.
Cron fields: minutes, hours, day-of-month, month, day-of-week (1-7 = SUN-SAT), year, with
`*`, `?`, `,`, `-`, `/`, names (JAN-DEC, SUN-SAT), `L` (last day of the month; `5L` last
Thursday), `W` (`15W` nearest weekday, `LW` last weekday) and `#` (`3#2` second Tuesday).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from strongroom.errors import StrongroomError

# The `source` of a scheduled invocation: an EventBridge rule's or EventBridge Scheduler's. An HTTP
# API event has no `source`, so a caller cannot make a request look like one.
SCHEDULE_SOURCES = frozenset({"aws.events", "aws.scheduler"})


def is_scheduled_invocation(event: Mapping[str, Any]) -> bool:
    """Whether a function was invoked by a schedule rather than by the HTTP API."""
    return event.get("source") in SCHEDULE_SOURCES


class ScheduleError(StrongroomError):
    """Root of the schedule-expression errors."""


class InvalidScheduleExpression(ScheduleError):
    """A rate(), cron() or at() expression EventBridge would refuse."""


# ASCII digits only (`\d` takes other scripts' digits); a rate of more than MAX_RATE_DAYS is
# refused before it can overflow a date.
_RATE = re.compile(r"^rate\(\s*([0-9]{1,7})\s+(minute|minutes|hour|hours|day|days)\s*\)$")
MAX_RATE_DAYS = 3650
# A cron number: ASCII digits (str.isdigit() passes "²", which int() refuses), never many.
_DIGITS = re.compile(r"[0-9]{1,4}")
_CRON = re.compile(r"^cron\((.*)\)$")
_AT = re.compile(r"^at\(([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: i + 1 for i, name in enumerate(_MONTH_NAMES)}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}
_LAST_YEAR = 2199


class ScheduleExpression(Protocol):
    """When a schedule fires next."""

    @property
    def text(self) -> str:
        """The expression as written."""
        ...

    def next_after(self, after: datetime, *, anchor: datetime) -> datetime | None:
        """The first firing strictly after `after` (UTC), or None if it never fires again.

        `anchor` is when the schedule was created: rate() schedules count from it.
        """
        ...


@dataclass(frozen=True)
class RateExpression:
    text: str
    interval: timedelta

    def next_after(self, after: datetime, *, anchor: datetime) -> datetime | None:
        elapsed = (after - anchor) // self.interval
        return anchor + max(elapsed + 1, 1) * self.interval


@dataclass(frozen=True)
class AtExpression:
    text: str
    when: datetime

    def next_after(self, after: datetime, *, anchor: datetime) -> datetime | None:
        return self.when if self.when > after else None


def _aws_weekday(year: int, month: int, day: int) -> int:
    """1 = Sunday ... 7 = Saturday, as AWS cron counts."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


@dataclass(frozen=True)
class _DayOfMonth:
    days: frozenset[int]
    last: bool = False
    last_weekday: bool = False
    nearest_weekday: frozenset[int] = frozenset()

    def matches(self, year: int, month: int) -> list[int]:
        last = calendar.monthrange(year, month)[1]
        chosen = {day for day in self.days if day <= last}
        if self.last:
            chosen.add(last)
        if self.last_weekday:
            chosen.add(_nearest_weekday(year, month, last, last))
        for day in self.nearest_weekday:
            if day <= last:
                chosen.add(_nearest_weekday(year, month, day, last))
        return sorted(chosen)


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """The weekday nearest `day` without leaving the month (Quartz's W)."""
    weekday = calendar.weekday(year, month, day)  # Monday = 0
    if weekday == 5:  # Saturday: Friday before, unless that leaves the month
        return day - 1 if day > 1 else day + 2
    if weekday == 6:  # Sunday: Monday after, unless that leaves the month
        return day + 1 if day < last else day - 2
    return day


@dataclass(frozen=True)
class _DayOfWeek:
    days: frozenset[int]
    last_of: frozenset[int] = frozenset()
    nth: frozenset[tuple[int, int]] = frozenset()

    def matches(self, year: int, month: int) -> list[int]:
        last = calendar.monthrange(year, month)[1]
        chosen = []
        for day in range(1, last + 1):
            weekday = _aws_weekday(year, month, day)
            if (
                weekday in self.days
                or (weekday in self.last_of and day + 7 > last)
                or (weekday, (day - 1) // 7 + 1) in self.nth
            ):
                chosen.append(day)
        return chosen


@dataclass(frozen=True)
class CronExpression:
    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: Callable[[int, int], list[int]]
    months: tuple[int, ...]
    years: tuple[int, ...]
    timezone: tzinfo = UTC

    def next_after(self, after: datetime, *, anchor: datetime) -> datetime | None:
        """The first firing later than `after`. Across daylight saving time, as EventBridge
        Scheduler does: a wall time the clocks skip does not fire, and one they repeat fires
        once (at its first occurrence)."""
        local = after.astimezone(self.timezone)
        start = local.replace(second=0, microsecond=0, tzinfo=None) + timedelta(minutes=1)
        for wall_time in self._wall_times_from(start):
            moment = wall_time.replace(tzinfo=self.timezone)
            instant = moment.astimezone(UTC)
            skipped = instant.astimezone(self.timezone).replace(tzinfo=None) != wall_time
            if not skipped and instant > after:
                return instant
        return None

    def _wall_times_from(self, start: datetime) -> Iterator[datetime]:
        """Every matching wall time in the zone from `start` on, in order (naive)."""
        for year in self.years:
            if year < start.year:
                continue
            for month in self.months:
                if (year, month) < (start.year, start.month):
                    continue
                for day in self.days(year, month):
                    if (year, month, day) < (start.year, start.month, start.day):
                        continue
                    for hour in self.hours:
                        for minute in self.minutes:
                            candidate = datetime(year, month, day, hour, minute)
                            if candidate >= start:
                                yield candidate


def _number(text: str, low: int, high: int, names: dict[str, int] | None) -> int:
    value = names.get(text.upper()) if names else None
    if value is None:
        if not _DIGITS.fullmatch(text):
            raise InvalidScheduleExpression(f"not a number: {text!r}")
        value = int(text)
    if not low <= value <= high:
        raise InvalidScheduleExpression(f"{value} is outside {low}-{high}")
    return value


def _values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    """`*`, `a`, `a-b` (wrapping when a > b), each optionally `/step`, comma-separated."""
    chosen: set[int] = set()
    for part in field.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not _DIGITS.fullmatch(step_text) or int(step_text) < 1:
                raise InvalidScheduleExpression(f"bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first_text, _, last_text = base.partition("-")
            first = _number(first_text, low, high, names)
            last = _number(last_text, low, high, names)
        else:
            first = _number(base, low, high, names)
            last = high if slash else first
        span = (last - first) % (high - low + 1)
        for offset in range(0, span + 1, step):
            chosen.add(low + (first - low + offset) % (high - low + 1))
    return frozenset(chosen)


def _day_of_month(field: str) -> _DayOfMonth:
    days: set[int] = set()
    last = last_weekday = False
    nearest: set[int] = set()
    for part in field.split(","):
        if part == "L":
            last = True
        elif part == "LW":
            last_weekday = True
        elif part.endswith("W"):
            nearest.add(_number(part[:-1], 1, 31, None))
        else:
            days |= _values(part, 1, 31)
    return _DayOfMonth(frozenset(days), last, last_weekday, frozenset(nearest))


def _day_of_week(field: str) -> _DayOfWeek:
    """Day-of-week as EventBridge documents it: `, - * ? L #` and no step; a `#` expression
    stands alone (its reference calls "3#1,6#3" invalid)."""
    if "/" in field:
        raise InvalidScheduleExpression("/ is not allowed in day-of-week")
    if "#" in field and "," in field:
        raise InvalidScheduleExpression("a # expression must be the only day-of-week")
    days: set[int] = set()
    last_of: set[int] = set()
    nth: set[tuple[int, int]] = set()
    for part in field.split(","):
        if part == "L":
            days.add(7)
        elif part.endswith("L"):
            last_of.add(_number(part[:-1], 1, 7, _DAYS))
        elif "#" in part:
            day_text, _, index_text = part.partition("#")
            nth.add((_number(day_text, 1, 7, _DAYS), _number(index_text, 1, 5, None)))
        else:
            days |= _values(part, 1, 7, _DAYS)
    return _DayOfWeek(frozenset(days), frozenset(last_of), frozenset(nth))


def _parse_cron(text: str, body: str, timezone: tzinfo) -> CronExpression:
    fields = body.split()
    if len(fields) != 6:
        raise InvalidScheduleExpression("cron() takes six fields")
    minutes, hours, dom, months, dow, years = fields
    if (dom == "?") == (dow == "?"):
        raise InvalidScheduleExpression("exactly one of day-of-month and day-of-week must be ?")
    for name, value in (("minutes", minutes), ("hours", hours), ("month", months), ("year", years)):
        if "?" in value:
            raise InvalidScheduleExpression(f"? is not allowed in {name}")
    days = _day_of_week(dow).matches if dom == "?" else _day_of_month(dom).matches
    return CronExpression(
        text=text,
        minutes=tuple(sorted(_values(minutes, 0, 59))),
        hours=tuple(sorted(_values(hours, 0, 23))),
        days=days,
        months=tuple(sorted(_values(months, 1, 12, _MONTHS))),
        years=tuple(sorted(_values(years, 1970, _LAST_YEAR))),
        timezone=timezone,
    )


def parse_schedule_expression(
    text: str, *, timezone: str | None = None, allow_at: bool = False
) -> ScheduleExpression:
    """Parse `rate(...)`, `cron(...)` or (EventBridge Scheduler only) `at(...)`."""
    text = text.strip()
    try:
        zone: tzinfo = ZoneInfo(timezone) if timezone else UTC
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidScheduleExpression(f"unknown time zone {timezone!r}") from None
    rate = _RATE.match(text)
    if rate:
        value, unit = int(rate.group(1)), rate.group(2)
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise InvalidScheduleExpression("rate(1 unit) is singular, rate(n units) plural")
        interval = timedelta(seconds=value * _UNITS[unit.rstrip("s")])
        if interval > timedelta(days=MAX_RATE_DAYS):
            raise InvalidScheduleExpression(f"a rate is at most {MAX_RATE_DAYS} days")
        return RateExpression(text, interval)
    cron = _CRON.match(text)
    if cron:
        return _parse_cron(text, cron.group(1), zone)
    at = _AT.match(text)
    if at and allow_at:
        try:
            when = datetime.fromisoformat(at.group(1)).replace(tzinfo=zone).astimezone(UTC)
        except ValueError:
            raise InvalidScheduleExpression("at() needs yyyy-mm-ddThh:mm:ss") from None
        return AtExpression(text, when)
    expected = "rate(...), cron(...) or at(...)" if allow_at else "rate(...) or cron(...)"
    raise InvalidScheduleExpression(f"expected {expected}")
