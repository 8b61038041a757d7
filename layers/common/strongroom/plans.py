"""What each plan allows, and the atomic per-day counter that enforces on-demand backups.

The org item's `plan` names one of these plans; billing webhooks change it (webhook_verifier).
An unknown name reads as the free plan, the most restrictive, so a typo or a plan this code does
not know yet never grants more.

Each limit is enforced atomically where it is used:
- connections: the org item's `connection_count`, incremented with the plan's ceiling in the
  same transaction as the connection's create (credential_store);
- minimum schedule interval: checked when a schedule is written (credential_store), and by the
  backup dispatcher against the org's current plan;
- on-demand backups per day: `use_on_demand_backup`, a conditional increment of a counter item
  per org and UTC day, so that concurrent requests can never pass the day's limit.

    plan = plan_named(org.attributes.get("plan"))
    used = use_on_demand_backup(table, org_id, plan=plan, now=now)   # RateLimited (429) past it
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from strongroom.errors import RateLimited
from strongroom.tenancy import ItemNotFound, LimitReached, TenantTable


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    max_connections: int
    # The shortest time allowed between two runs of a connection's backup schedule.
    min_schedule_interval: timedelta
    # Backups started by hand (POST .../backups) per org and UTC day.
    max_on_demand_backups_per_day: int


FREE = Plan(
    "free",
    max_connections=3,
    min_schedule_interval=timedelta(days=1),
    max_on_demand_backups_per_day=2,
)
STARTER = Plan(
    "starter",
    max_connections=5,
    min_schedule_interval=timedelta(hours=6),
    max_on_demand_backups_per_day=5,
)
TEAM = Plan(
    "team",
    max_connections=25,
    min_schedule_interval=timedelta(hours=1),
    max_on_demand_backups_per_day=25,
)
ENTERPRISE = Plan(
    "enterprise",
    max_connections=250,
    min_schedule_interval=timedelta(minutes=15),
    max_on_demand_backups_per_day=100,
)

PLANS = {plan.name: plan for plan in (FREE, STARTER, TEAM, ENTERPRISE)}

USAGE = "USAGE"
_ON_DEMAND_BACKUPS = "on_demand_backups"
# A day's counter outlives its day by this much, then DynamoDB's TTL sweeps it away.
_COUNTER_GRACE = timedelta(days=1)


def plan_named(name: object) -> Plan:
    """The plan called `name`; the free plan for anything unknown (fail closed)."""
    return PLANS.get(name, FREE) if isinstance(name, str) else FREE


def use_on_demand_backup(table: TenantTable, org_id: str, *, plan: Plan, now: datetime) -> int:
    """Count one on-demand backup for the org today (UTC) and return how many it has used.

    RateLimited (429) once the plan's daily allowance is used up; the refused request is not
    counted. The counter is one item per org and day (`USAGE#on_demand_backups:<date>`), moved
    by a single conditional update, so concurrent requests cannot pass the limit together.
    """
    day = now.astimezone(UTC).date()
    next_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    try:
        return table.increment(
            org_id,
            USAGE,
            f"{_ON_DEMAND_BACKUPS}:{day.isoformat()}",
            attribute="count",
            ceiling=plan.max_on_demand_backups_per_day,
            ttl=next_day - now + _COUNTER_GRACE,
            now=now,
        )
    except LimitReached:
        raise RateLimited(
            f"The {plan.name} plan allows {plan.max_on_demand_backups_per_day} on-demand backups"
            " a day; try again tomorrow (UTC)."
        ) from None


def on_demand_backups_used(table: TenantTable, org_id: str, *, now: datetime) -> int:
    """How many on-demand backups the org has started today (UTC)."""
    day = now.astimezone(UTC).date()
    try:
        item = table.get(org_id, USAGE, f"{_ON_DEMAND_BACKUPS}:{day.isoformat()}", now=now)
    except ItemNotFound:
        return 0
    return int(item.attributes.get("count", 0))
