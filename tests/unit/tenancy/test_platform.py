"""Platform items: no org, pk never starting with `org_`, conditional put, TTL, consume-once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from strongroom.settings import Settings
from strongroom.tenancy import InvalidKey, ItemExists, ItemNotFound, LimitReached, PlatformTable
from tests.unit.tenancy.conftest import NOW, raw_items


def test_platform_keys_never_look_like_an_org(
    platform: PlatformTable, dynamodb: Any, settings: Settings
) -> None:
    platform.create("WEBHOOK_EVENT", "evt_123", attributes={"source": "stripe"}, now=NOW)
    stored = raw_items(dynamodb, settings, "WEBHOOK_EVENT#evt_123")
    assert list(stored) == ["WEBHOOK_EVENT"]
    with pytest.raises(InvalidKey):
        platform.create("org_" + "a" * 26, "x", attributes={}, now=NOW)
    # Unconditional put, get and delete.
    platform.put("SCHEDULE", "conn_1", attributes={"expression": "rate(1 day)"}, now=NOW)
    platform.put("SCHEDULE", "conn_1", attributes={"expression": "rate(2 days)"}, now=NOW)
    assert platform.get("SCHEDULE", "conn_1", now=NOW).attributes["expression"] == "rate(2 days)"
    platform.delete("SCHEDULE", "conn_1", now=NOW)
    platform.delete("SCHEDULE", "conn_1", now=NOW)
    with pytest.raises(ItemNotFound):
        platform.get("SCHEDULE", "conn_1", now=NOW)


def test_a_replayed_id_is_refused_until_it_expires(platform: PlatformTable) -> None:
    ttl = timedelta(days=3)
    platform.create("WEBHOOK_EVENT", "evt_1", attributes={"source": "github"}, ttl=ttl, now=NOW)
    with pytest.raises(ItemExists):
        platform.create("WEBHOOK_EVENT", "evt_1", attributes={}, ttl=ttl, now=NOW + ttl / 2)
    platform.create("WEBHOOK_EVENT", "evt_1", attributes={}, ttl=ttl, now=NOW + ttl)


def test_oauth_state_is_consumed_once_and_not_after_expiry(platform: PlatformTable) -> None:
    ttl = timedelta(minutes=10)
    platform.create("OAUTH_STATE", "digest_a", attributes={"org_id": "o"}, ttl=ttl, now=NOW)
    platform.create("OAUTH_STATE", "digest_b", attributes={"org_id": "o"}, ttl=ttl, now=NOW)
    state = platform.consume("OAUTH_STATE", "digest_a", now=NOW + timedelta(minutes=1))
    assert (state.kind, state.item_id, state.attributes["org_id"]) == (
        "OAUTH_STATE",
        "digest_a",
        "o",
    )
    with pytest.raises(ItemNotFound):
        platform.consume("OAUTH_STATE", "digest_a", now=NOW + timedelta(minutes=1))
    with pytest.raises(ItemNotFound):
        platform.get("OAUTH_STATE", "digest_b", now=NOW + ttl)
    with pytest.raises(ItemNotFound):
        platform.consume("OAUTH_STATE", "digest_b", now=NOW + ttl)


def test_a_platform_counter_stays_between_zero_and_its_ceiling(
    platform: PlatformTable, dynamodb: Any, settings: Settings
) -> None:
    # One conditional update each: no interleaving of callers can pass the ceiling.
    taken = [
        platform.increment("ORGS_CREATED", "auth0|alice", attribute="count", ceiling=3, now=NOW)
        for _ in range(3)
    ]
    for _ in range(2):
        with pytest.raises(LimitReached):
            platform.increment("ORGS_CREATED", "auth0|alice", attribute="count", ceiling=3, now=NOW)
    assert taken == [1, 2, 3]
    assert platform.increment("ORGS_CREATED", "auth0|alice", attribute="count", by=-1, now=NOW) == 2
    for _ in range(2):
        platform.increment("ORGS_CREATED", "auth0|alice", attribute="count", by=-1, now=NOW)
    with pytest.raises(LimitReached):  # never below zero
        platform.increment("ORGS_CREATED", "auth0|alice", attribute="count", by=-1, now=NOW)
    stored = raw_items(dynamodb, settings, "ORGS_CREATED#auth0|alice")
    assert stored["ORGS_CREATED"]["count"] == {"N": "0"}
    with pytest.raises(InvalidKey):  # an id cannot reach another item's key
        platform.increment("ORGS_CREATED", "a#b", attribute="count", now=NOW)
