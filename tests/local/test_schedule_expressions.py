"""rate(), six-field AWS cron() and at() expressions: what fires when, and what is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strongroom.schedules import parse_schedule_expression
from strongroom_local.exceptions import InvalidScheduleExpression

ANCHOR = datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)


def firings(expression: str, after: datetime, count: int, **kwargs: str) -> list[datetime]:
    parsed = parse_schedule_expression(expression, **kwargs)  # type: ignore[arg-type]
    times = []
    for _ in range(count):
        nxt = parsed.next_after(after, anchor=ANCHOR)
        assert nxt is not None
        times.append(nxt)
        after = nxt
    return times


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "interval"),
    [
        ("rate(1 minute)", timedelta(minutes=1)),
        ("rate(5 minutes)", timedelta(minutes=5)),
        ("rate(1 hour)", timedelta(hours=1)),
        ("rate(12 hours)", timedelta(hours=12)),
        ("rate(1 day)", timedelta(days=1)),
        ("rate(7 days)", timedelta(days=7)),
    ],
)
def test_rate_counts_from_the_anchor(expression: str, interval: timedelta) -> None:
    assert firings(expression, ANCHOR, 3) == [ANCHOR + interval * k for k in (1, 2, 3)]
    # From the middle of a period, the next firing is still on the anchor's grid.
    assert firings(expression, ANCHOR + interval * 2.5, 1) == [ANCHOR + interval * 3]


def test_cron_across_daylight_saving_time_as_eventbridge_scheduler() -> None:
    """As AWS documents EventBridge Scheduler: a cron wall time that the spring change skips
    does not fire, and one that the autumn change repeats fires only once."""
    zone = {"timezone": "America/New_York"}
    # 2026-03-08 02:30 does not exist in New York: the next firing is the day after.
    assert firings("cron(30 2 * * ? *)", utc(2026, 3, 8), 2, **zone) == [
        utc(2026, 3, 9, 6, 30),
        utc(2026, 3, 10, 6, 30),
    ]
    # 2026-11-01 01:45 happens twice (EDT 05:45Z, then EST 06:45Z): it fires once.
    assert firings("cron(45 1 * * ? *)", utc(2026, 11, 1), 2, **zone) == [
        utc(2026, 11, 1, 5, 45),
        utc(2026, 11, 2, 6, 45),
    ]
    # Asked from inside the repeated hour, the next firing is never in the past.
    inside = utc(2026, 11, 1, 6, 30)  # 01:30 EST, the second 01:30
    assert firings("cron(45 1 * * ? *)", inside, 1, **zone) == [utc(2026, 11, 2, 6, 45)]
    every_minute = firings("cron(* * * * ? *)", inside, 1, **zone)
    assert every_minute == [utc(2026, 11, 1, 7, 0)]  # 02:00 EST: the repeated wall times ran


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(2 weeks)", "rate(x hours)"],
)
def test_rate_refuses_what_eventbridge_refuses(expression: str) -> None:
    with pytest.raises(InvalidScheduleExpression):
        parse_schedule_expression(expression)


def test_cron_daily_at_three() -> None:
    assert firings("cron(0 3 * * ? *)", utc(2026, 11, 23, 10, 0), 2) == [
        utc(2026, 11, 24, 3, 0),
        utc(2026, 11, 25, 3, 0),
    ]


def test_cron_is_strictly_after() -> None:
    assert firings("cron(0 3 * * ? *)", utc(2026, 11, 24, 3, 0), 1) == [utc(2026, 11, 25, 3, 0)]
    assert firings("cron(0 3 * * ? *)", utc(2026, 11, 24, 2, 59, 59), 1) == [
        utc(2026, 11, 24, 3, 0)
    ]


def test_cron_steps_ranges_and_lists() -> None:
    assert firings("cron(0/15 * * * ? *)", utc(2026, 1, 1, 0, 7), 3) == [
        utc(2026, 1, 1, 0, 15),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 0, 45),
    ]
    assert firings("cron(*/20 9-10 * * ? *)", utc(2026, 1, 1, 10, 41), 2) == [
        utc(2026, 1, 2, 9, 0),
        utc(2026, 1, 2, 9, 20),
    ]
    assert firings("cron(5,35 12 * * ? *)", utc(2026, 1, 1, 12, 6), 2) == [
        utc(2026, 1, 1, 12, 35),
        utc(2026, 1, 2, 12, 5),
    ]


def test_cron_day_of_week_numbers_and_names() -> None:
    # 2026-11-23 is a Monday. AWS counts 1 = SUN ... 7 = SAT.
    weekdays = firings("cron(0 8 ? * MON-FRI *)", utc(2026, 11, 27, 9, 0), 2)
    assert weekdays == [utc(2026, 11, 30, 8, 0), utc(2026, 12, 1, 8, 0)]
    assert firings("cron(0 8 ? * 2-6 *)", utc(2026, 11, 27, 9, 0), 2) == weekdays
    assert firings("cron(0 0 ? * 1 *)", utc(2026, 11, 23), 1) == [utc(2026, 11, 29)]


def test_cron_month_names_day_of_month_and_years() -> None:
    assert firings("cron(30 6 1 JAN,JUL ? 2027-2028)", utc(2026, 11, 23), 3) == [
        utc(2027, 1, 1, 6, 30),
        utc(2027, 7, 1, 6, 30),
        utc(2028, 1, 1, 6, 30),
    ]
    parsed = parse_schedule_expression("cron(0 0 1 1 ? 2027)")
    assert parsed.next_after(utc(2027, 1, 1, 0, 0), anchor=ANCHOR) is None


def test_cron_last_day_nearest_weekday_and_nth_weekday() -> None:
    assert firings("cron(0 0 L * ? *)", utc(2028, 1, 31, 1), 2) == [
        utc(2028, 2, 29),  # leap year
        utc(2028, 3, 31),
    ]
    # 2026-11-15 is a Sunday: the nearest weekday is Monday the 16th.
    assert firings("cron(0 0 15W * ? *)", utc(2026, 11, 1), 1) == [utc(2026, 11, 16)]
    # 2026-02-28 is a Saturday: the last weekday of February is Friday the 27th.
    assert firings("cron(0 0 LW * ? *)", utc(2026, 2, 1), 1) == [utc(2026, 2, 27)]
    # Second Tuesday (3#2) and last Friday (6L) of November 2026.
    assert firings("cron(0 0 ? * 3#2 *)", utc(2026, 11, 1), 1) == [utc(2026, 11, 10)]
    assert firings("cron(0 0 ? * 6L *)", utc(2026, 11, 1), 1) == [utc(2026, 11, 27)]


def test_cron_in_a_time_zone() -> None:
    # 09:00 in Paris is 08:00 UTC in winter and 07:00 UTC in summer.
    assert firings("cron(0 9 * * ? *)", utc(2026, 11, 23), 1, timezone="Europe/Paris") == [
        utc(2026, 11, 23, 8, 0)
    ]
    assert firings("cron(0 9 * * ? *)", utc(2026, 7, 1), 1, timezone="Europe/Paris") == [
        utc(2026, 7, 1, 7, 0)
    ]


@pytest.mark.parametrize(
    "expression",
    [
        "cron(0 3 * * * *)",  # both day fields given
        "cron(0 3 ? * ? *)",  # neither given
        "cron(0 3 * * ?)",  # five fields
        "cron(60 3 * * ? *)",
        "cron(0 24 * * ? *)",
        "cron(0 3 32 * ? *)",
        "cron(0 3 ? * 8 *)",
        "cron(0 3 * 13 ? *)",
        "cron(0/0 3 * * ? *)",
        "cron(? 3 * * ? *)",
        # EventBridge's reference: day-of-week takes `, - * ? L #`, no step, and one # alone.
        "cron(0 0 ? * 2/2 *)",
        "cron(0 0 ? * MON-FRI/2 *)",
        "cron(0 0 ? * */2 *)",
        "cron(0 0 ? * 3#1,6#3 *)",
        "cron(0 0 ? * 3#1,MON *)",
        "every day",
        "at(2027-01-01T00:00:00)",  # only EventBridge Scheduler has at()
        # Digits int() refuses ("²"), other scripts' digits, and rates past any date.
        "cron(0 \u00b2 * * ? *)",
        "cron(0 0 ? * 2#\u00b2 *)",
        "cron(0/\u00b2 3 * * ? *)",
        "cron(0 3 * * ? 99999)",
        "rate(\u0663 days)",
        "rate(3651 days)",
        "rate(999999999 days)",
        "rate(99999999999999 days)",
    ],
)
def test_cron_refuses_what_eventbridge_refuses(expression: str) -> None:
    with pytest.raises(InvalidScheduleExpression):
        parse_schedule_expression(expression)


def test_at_fires_once_in_its_time_zone() -> None:
    parsed = parse_schedule_expression(
        "at(2027-01-01T09:00:00)", timezone="America/New_York", allow_at=True
    )
    assert parsed.next_after(utc(2026, 12, 31), anchor=ANCHOR) == utc(2027, 1, 1, 14, 0)
    assert parsed.next_after(utc(2027, 1, 1, 14, 0), anchor=ANCHOR) is None


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(InvalidScheduleExpression):
        parse_schedule_expression("rate(1 day)", timezone="Mars/Olympus_Mons")
