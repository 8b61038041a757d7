"""The local timer: when schedules fire, and the events EventBridge would deliver."""

from __future__ import annotations

import itertools
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.schedules import parse_schedule_expression
from strongroom_local.scheduler import FIRING_GRACE, Scheduler, scheduled_event
from strongroom_local.wiring import ScheduleSource

START = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def source(
    expression: str, *, kind: str = "Schedule", input: str | None = None, enabled: bool = True
) -> ScheduleSource:
    return ScheduleSource(
        function_id="TickFunction",
        event_name=f"{kind}-{expression}",
        kind=kind,
        expression=parse_schedule_expression(expression, allow_at=kind == "ScheduleV2"),
        input=input,
        enabled=enabled,
        arn=f"arn:aws:events:us-east-1:123456789012:rule/{expression}",
    )


def test_due_schedules_fire_once_and_move_on(caplog: pytest.LogCaptureFixture) -> None:
    fired: list[tuple[str, datetime]] = []
    every_hour = source("rate(1 hour)")
    at_three = source("cron(0 3 * * ? *)")
    disabled = source("rate(1 minute)", enabled=False)
    scheduler = Scheduler(
        [every_hour, at_three, disabled],
        lambda s, when: fired.append((s.event_name, when)),
        started_at=START,
    )
    assert scheduler.next_due() == START + timedelta(hours=1)
    assert scheduler.tick(START + timedelta(minutes=59)) == []
    assert scheduler.tick(START + timedelta(hours=1)) == [(every_hour, START + timedelta(hours=1))]
    assert scheduler.tick(START + timedelta(hours=1, minutes=1)) == []
    # A long sleep: what each schedule missed is skipped, not replayed; each resumes its grid.
    late = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
    with caplog.at_level(logging.INFO, logger="strongroom_local.scheduler"):
        assert scheduler.tick(late) == []
    assert caplog.messages == [
        "TickFunction.Schedule-rate(1 hour): 18 missed firing(s) skipped"
        " (due from 2026-11-23T12:00:00+00:00)",
        "TickFunction.Schedule-cron(0 3 * * ? *): 1 missed firing(s) skipped"
        " (due from 2026-11-24T03:00:00+00:00)",
    ]
    assert scheduler.next_due() == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert fired == [(every_hour.event_name, START + timedelta(hours=1))]
    assert disabled.event_name not in {name for name, _ in fired}


def test_a_firing_seen_a_little_late_fires_with_its_scheduled_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    every_five = source("rate(5 minutes)")
    scheduler = Scheduler([every_five], lambda s, when: None, started_at=START)
    # Within FIRING_GRACE of its time: the timer's lateness, not a missed firing.
    late = START + timedelta(minutes=5) + FIRING_GRACE - timedelta(seconds=1)
    with caplog.at_level(logging.INFO, logger="strongroom_local.scheduler"):
        assert scheduler.tick(late) == [(every_five, START + timedelta(minutes=5))]
    assert "skipped" not in caplog.text
    assert scheduler.next_due() == START + timedelta(minutes=10)


def test_after_a_sleep_only_a_firing_within_the_grace_fires(
    caplog: pytest.LogCaptureFixture,
) -> None:
    every_five = source("rate(5 minutes)")
    # Asleep from 10:00 to 13:00:10: 13:00 is 10 s late and fires with its own time; the 35
    # from 10:05 to 12:55 are skipped.
    woke = Scheduler([every_five], lambda s, when: None, started_at=START)
    with caplog.at_level(logging.INFO, logger="strongroom_local.scheduler"):
        assert woke.tick(START + timedelta(hours=3, seconds=10)) == [
            (every_five, START + timedelta(hours=3))
        ]
    assert (
        "TickFunction.Schedule-rate(5 minutes): 35 missed firing(s) skipped"
        " (due from 2026-11-23T10:05:00+00:00)"
    ) in caplog.messages
    assert woke.next_due() == START + timedelta(hours=3, minutes=5)
    # Awake at 13:02 instead: 13:00 is two minutes late too, so nothing fires; 13:05 is next.
    caplog.clear()
    later = Scheduler([every_five], lambda s, when: None, started_at=START)
    with caplog.at_level(logging.INFO, logger="strongroom_local.scheduler"):
        assert later.tick(START + timedelta(hours=3, minutes=2)) == []
    assert caplog.messages == [
        "TickFunction.Schedule-rate(5 minutes): 36 missed firing(s) skipped"
        " (due from 2026-11-23T10:05:00+00:00)"
    ]
    assert later.next_due() == START + timedelta(hours=3, minutes=5)


def test_a_month_asleep_counts_its_missed_firings_only_so_far(
    caplog: pytest.LogCaptureFixture,
) -> None:
    every_minute = source("cron(* * * * ? *)")
    scheduler = Scheduler([every_minute], lambda s, when: None, started_at=START)
    woke = START + timedelta(days=30, seconds=30)
    with caplog.at_level(logging.INFO, logger="strongroom_local.scheduler"):
        assert scheduler.tick(woke) == [(every_minute, START + timedelta(days=30))]
    # 43,199 were missed: counting each would keep the timer busy for seconds.
    assert caplog.messages[0] == (
        "TickFunction.Schedule-cron(* * * * ? *): 1000+ missed firing(s) skipped"
        " (due from 2026-11-23T10:01:00+00:00)"
    )
    assert scheduler.next_due() == START + timedelta(days=30, minutes=1)


def test_the_timer_thread_fires_on_its_clock() -> None:
    stop = threading.Event()
    fired: list[datetime] = []

    def fire(_: ScheduleSource, when: datetime) -> None:
        fired.append(when)
        stop.set()

    scheduler = Scheduler([source("rate(5 minutes)")], fire, started_at=START)
    # Not due at the first look; five minutes later from then on.
    clock = itertools.chain([START], itertools.repeat(START + timedelta(minutes=5)))
    scheduler.run(stop, lambda: next(clock))
    assert fired == [START + timedelta(minutes=5)]


def test_an_eventbridge_rule_sends_a_scheduled_event() -> None:
    rule = source("cron(0 3 * * ? *)")
    event = scheduled_event(
        rule, scheduled_time=START, account_id="123456789012", region="us-east-1"
    )
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-23T10:00:00Z",
        "region": "us-east-1",
        "resources": [rule.arn],
        "detail": {},
    }
    again = scheduled_event(rule, scheduled_time=START, account_id="1", region="us-east-1")
    assert again["id"] != event["id"]


def test_eventbridge_scheduler_sends_its_input_or_its_default_notification() -> None:
    plain = source("rate(1 hour)", kind="ScheduleV2")
    event = scheduled_event(
        plain, scheduled_time=START, account_id="123456789012", region="eu-west-1"
    )
    assert event["source"] == "aws.scheduler"
    assert event["detail"] == "{}"
    assert event["resources"] == [plain.arn]
    assert event["region"] == "eu-west-1"
    templated = source(
        "rate(1 hour)",
        kind="ScheduleV2",
        input='{"job": "hourly", "at": "<aws.scheduler.scheduled-time>",'
        ' "arn": "<aws.scheduler.schedule-arn>"}',
    )
    assert scheduled_event(templated, scheduled_time=START, account_id="1", region="us-east-1") == {
        "job": "hourly",
        "at": "2026-11-23T10:00:00Z",
        "arn": templated.arn,
    }
    constant = source("rate(1 hour)", input='{"k": [1, 2]}')
    assert scheduled_event(constant, scheduled_time=START, account_id="1", region="r") == {
        "k": [1, 2]
    }
