"""What each plan allows: how many connections an org may have and how often they may run.

The org item's `plan` names one of these. An unknown name reads as the free plan, the most
restrictive, so a typo or a plan this code does not know yet never grants more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    max_connections: int
    # The shortest time allowed between two runs of a connection's backup schedule.
    min_schedule_interval: timedelta


FREE = Plan("free", max_connections=3, min_schedule_interval=timedelta(days=1))
TEAM = Plan("team", max_connections=25, min_schedule_interval=timedelta(hours=1))
ENTERPRISE = Plan("enterprise", max_connections=250, min_schedule_interval=timedelta(minutes=15))

PLANS = {plan.name: plan for plan in (FREE, TEAM, ENTERPRISE)}


def plan_named(name: object) -> Plan:
    """The plan called `name`; the free plan for anything unknown (fail closed)."""
    return PLANS.get(name, FREE) if isinstance(name, str) else FREE
