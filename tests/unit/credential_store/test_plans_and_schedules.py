"""Plans and the shortest interval of a schedule, without the stack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from strongroom.schedules import parse_schedule_expression


@pytest.mark.parametrize(
    ("expression", "shortest"),
    [
        ("rate(1 day)", timedelta(days=1)),
        ("rate(15 minutes)", timedelta(minutes=15)),
        ("cron(0 3 * * ? *)", timedelta(days=1)),
        ("cron(0 3 ? * MON *)", timedelta(days=1)),  # on the safe side: as if daily
        ("cron(0,30 9-17 ? * MON-FRI *)", timedelta(minutes=30)),
        ("cron(0 */6 * * ? *)", timedelta(hours=6)),
        # 23:50 then 00:10 the next day: the gap across midnight is the shortest.
        ("cron(10,50 0,23 * * ? *)", timedelta(minutes=20)),
    ],
)
def test_shortest_interval(expression: str, shortest: timedelta) -> None:
    from credential_store.connections import shortest_interval

    assert shortest_interval(parse_schedule_expression(expression)) == shortest


def test_plans_by_name_and_unknown_names_get_the_free_plan() -> None:
    from strongroom.plans import ENTERPRISE, FREE, TEAM, plan_named

    assert plan_named("team") is TEAM
    assert plan_named("enterprise") is ENTERPRISE
    for unknown in ("free", "platinum", "", None, 3):
        assert plan_named(unknown) is FREE
    assert FREE.max_connections < TEAM.max_connections < ENTERPRISE.max_connections
    assert FREE.min_schedule_interval > TEAM.min_schedule_interval
    assert TEAM.min_schedule_interval > ENTERPRISE.min_schedule_interval
