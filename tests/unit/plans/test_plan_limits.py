"""Plans and the per-day on-demand backup counter: atomic under concurrency, per UTC day."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from strongroom.errors import RateLimited
from strongroom.plans import (
    ENTERPRISE,
    FREE,
    PLANS,
    STARTER,
    TEAM,
    on_demand_backups_used,
    plan_named,
    use_on_demand_backup,
)
from strongroom.settings import Settings
from strongroom.tenancy import TenantTable, new_org_id

NOW = datetime(2026, 11, 23, 23, 59, 30, tzinfo=UTC)


@pytest.fixture
def table(settings: Settings) -> TenantTable:
    return TenantTable(dynamodb=boto3.client("dynamodb"), table_name=settings.table_name)


def test_every_limit_grows_with_the_plan() -> None:
    ordered = [FREE, STARTER, TEAM, ENTERPRISE]
    assert [plan.name for plan in ordered] == list(PLANS)
    for smaller, larger in itertools.pairwise(ordered):
        assert smaller.max_connections < larger.max_connections
        assert smaller.min_schedule_interval > larger.min_schedule_interval
        assert smaller.max_on_demand_backups_per_day < larger.max_on_demand_backups_per_day
    assert STARTER.max_connections == 5
    assert plan_named("starter") is STARTER
    assert plan_named("Starter") is FREE


def test_the_day_allowance_is_counted_and_then_refused(table: TenantTable) -> None:
    org_id = new_org_id()
    used = [
        use_on_demand_backup(table, org_id, plan=FREE, now=NOW)
        for _ in range(FREE.max_on_demand_backups_per_day)
    ]
    assert used == list(range(1, FREE.max_on_demand_backups_per_day + 1))
    with pytest.raises(RateLimited) as refused:
        use_on_demand_backup(table, org_id, plan=FREE, now=NOW)
    assert "2 on-demand backups a day" in str(refused.value.detail)
    assert on_demand_backups_used(table, org_id, now=NOW) == 2  # the refusal was not counted
    # An upgrade during the day raises the ceiling at once; the day's count carries over.
    assert use_on_demand_backup(table, org_id, plan=TEAM, now=NOW) == 3
    # Thirty-one seconds later it is tomorrow (UTC): a new count.
    tomorrow = NOW + timedelta(seconds=31)
    assert on_demand_backups_used(table, org_id, now=tomorrow) == 0
    assert use_on_demand_backup(table, org_id, plan=FREE, now=tomorrow) == 1
    # Other orgs count on their own.
    assert on_demand_backups_used(table, new_org_id(), now=NOW) == 0


def test_a_day_counter_expires_a_day_after_its_day(table: TenantTable, settings: Settings) -> None:
    org_id = new_org_id()
    use_on_demand_backup(table, org_id, plan=FREE, now=NOW)
    use_on_demand_backup(table, org_id, plan=FREE, now=NOW + timedelta(seconds=10))
    item = boto3.client("dynamodb").get_item(
        TableName=settings.table_name,
        Key={"pk": {"S": org_id}, "sk": {"S": "USAGE#on_demand_backups:2026-11-23"}},
    )["Item"]
    # The end of 2026-11-23 UTC plus one day; set when the item was made, kept afterwards.
    assert int(item["expires_at"]["N"]) == int(datetime(2026, 11, 25, tzinfo=UTC).timestamp())
    assert item["count"] == {"N": "2"}


def test_concurrent_requests_never_pass_the_day_allowance(
    table: TenantTable, atomic_aws: None
) -> None:
    org_id = new_org_id()
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def request() -> None:
        start.wait()
        try:
            use_on_demand_backup(table, org_id, plan=STARTER, now=NOW)
            outcomes.append("counted")
        except RateLimited:
            outcomes.append("refused")

    threads = [threading.Thread(target=request) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("counted") == STARTER.max_on_demand_backups_per_day
    assert outcomes.count("refused") == 20 - STARTER.max_on_demand_backups_per_day
    assert on_demand_backups_used(table, org_id, now=NOW) == STARTER.max_on_demand_backups_per_day
