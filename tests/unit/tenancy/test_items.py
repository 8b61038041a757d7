"""Single items: get, create, put, update, delete, consume, and expiry by the injected now."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from strongroom.settings import Settings
from strongroom.tenancy import (
    ConditionFailed,
    ItemExists,
    ItemNotFound,
    TenantTable,
)
from tests.unit.tenancy.conftest import NOW, raw_items


def test_create_get_and_create_again(table: TenantTable, org_id: str) -> None:
    created = table.create(
        org_id,
        "CONN",
        "conn_1",
        attributes={"name": "Acme Okta", "scopes": ["okta.users.read"], "version": 1},
        now=NOW,
    )
    read = table.get(org_id, "CONN", "conn_1", now=NOW)
    assert read == created
    assert (read.kind, read.item_id, read.expires_at) == ("CONN", "conn_1", None)
    assert dict(read.attributes) == {
        "name": "Acme Okta",
        "scopes": ["okta.users.read"],
        "version": 1,
    }
    assert type(read.attributes["version"]) is int
    # Singletons have a bare kind.
    table.create(org_id, "ORG", attributes={"name": "Acme"}, now=NOW)
    org = table.get(org_id, "ORG", now=NOW)
    assert (org.kind, org.item_id, org.attributes["name"]) == ("ORG", None, "Acme")
    # Create refuses an existing item and keeps it.
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    with pytest.raises(ItemExists):
        table.create(org_id, "MEMBER", "alice", attributes={"role": "member"}, now=NOW)
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"] == "owner"
    with pytest.raises(ItemNotFound):
        table.get(org_id, "MEMBER", "nobody", now=NOW)


def test_put_replaces_and_update_sets_and_removes(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "MEMBER", "bob", attributes={"role": "admin", "note": "x"}, now=NOW)
    table.put(org_id, "MEMBER", "bob", attributes={"role": "member"}, now=NOW)
    assert dict(table.get(org_id, "MEMBER", "bob", now=NOW).attributes) == {"role": "member"}
    table.create(org_id, "ORG", attributes={"name": "Acme", "plan": "free", "v": 1}, now=NOW)
    updated = table.update(
        org_id, "ORG", changes={"name": "Acme Inc", "v": 2}, remove=["plan"], now=NOW
    )
    assert dict(updated.attributes) == {"name": "Acme Inc", "v": 2}
    assert table.get(org_id, "ORG", now=NOW) == updated


def test_update_expectations_are_optimistic_locking(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "ORG", attributes={"name": "Acme", "version": 1}, now=NOW)
    table.update(org_id, "ORG", changes={"name": "A", "version": 2}, expect={"version": 1}, now=NOW)
    # A writer that read version 1 loses, and changes nothing.
    with pytest.raises(ConditionFailed) as lost:
        table.update(
            org_id, "ORG", changes={"name": "B", "version": 2}, expect={"version": 1}, now=NOW
        )
    assert not isinstance(lost.value, ItemNotFound)
    assert dict(table.get(org_id, "ORG", now=NOW).attributes) == {"name": "A", "version": 2}
    # None expects the attribute to be absent.
    table.create(org_id, "CONN", "c1", attributes={"name": "x"}, now=NOW)
    table.update(
        org_id, "CONN", "c1", changes={"revoked_at": "t1"}, expect={"revoked_at": None}, now=NOW
    )
    with pytest.raises(ConditionFailed):
        table.update(
            org_id, "CONN", "c1", changes={"revoked_at": "t2"}, expect={"revoked_at": None}, now=NOW
        )
    assert table.get(org_id, "CONN", "c1", now=NOW).attributes["revoked_at"] == "t1"


def test_update_of_a_missing_item_is_not_found_and_creates_nothing(
    table: TenantTable, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    with pytest.raises(ItemNotFound):
        table.update(org_id, "CONN", "ghost", changes={"name": "x"}, now=NOW)
    with pytest.raises(ItemNotFound):
        table.update(org_id, "CONN", "ghost", changes={"name": "x"}, expect={"v": 1}, now=NOW)
    assert raw_items(dynamodb, settings, org_id) == {}


def test_an_update_needs_a_change(offline_table: TenantTable, org_id: str) -> None:
    table = offline_table
    with pytest.raises(ValueError, match="at least one"):
        table.update(org_id, "ORG", now=NOW)
    with pytest.raises(ValueError, match="both"):
        table.update(org_id, "ORG", changes={"a": 1}, remove=["a"], now=NOW)


def test_delete_is_unconditional_unless_told_otherwise_and_then_conditional(
    table: TenantTable, org_id: str
) -> None:
    table.delete(org_id, "MEMBER", "never-was", now=NOW)  # nothing to delete is fine
    table.create(org_id, "MEMBER", "carol", attributes={"role": "admin"}, now=NOW)
    table.delete(org_id, "MEMBER", "carol", now=NOW)
    with pytest.raises(ItemNotFound):
        table.get(org_id, "MEMBER", "carol", now=NOW)
    # With `expect` (even empty) the item must be there and hold the values.
    with pytest.raises(ItemNotFound):
        table.delete(org_id, "MEMBER", "dave", expect={}, now=NOW)
    table.create(org_id, "MEMBER", "dave", attributes={"role": "owner"}, now=NOW)
    with pytest.raises(ConditionFailed):
        table.delete(org_id, "MEMBER", "dave", expect={"role": "member"}, now=NOW)
    assert table.get(org_id, "MEMBER", "dave", now=NOW).attributes["role"] == "owner"
    table.delete(org_id, "MEMBER", "dave", expect={"role": "owner"}, now=NOW)
    with pytest.raises(ItemNotFound):
        table.get(org_id, "MEMBER", "dave", now=NOW)


def test_consume_returns_the_item_exactly_once(table: TenantTable, org_id: str) -> None:
    table.create(
        org_id, "NONCE", "n1", attributes={"user": "alice"}, ttl=timedelta(minutes=10), now=NOW
    )
    consumed = table.consume(org_id, "NONCE", "n1", now=NOW)
    assert consumed.attributes["user"] == "alice"
    with pytest.raises(ItemNotFound):
        table.consume(org_id, "NONCE", "n1", now=NOW)


def test_consume_with_an_expectation_leaves_a_mismatching_item(
    table: TenantTable, org_id: str
) -> None:
    table.create(org_id, "STATE", "s1", attributes={"binding": "a"}, now=NOW)
    with pytest.raises(ConditionFailed):
        table.consume(org_id, "STATE", "s1", now=NOW, expect={"binding": "b"})
    assert (
        table.consume(org_id, "STATE", "s1", now=NOW, expect={"binding": "a"}).attributes["binding"]
        == "a"
    )
    with pytest.raises(ItemNotFound):
        table.consume(org_id, "STATE", "s1", now=NOW, expect={"binding": "a"})


def test_binary_attributes_read_back_as_exactly_bytes(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "BLOB", "b1", attributes={"sealed": b"\x00\x01\xff"}, now=NOW)
    value = table.get(org_id, "BLOB", "b1", now=NOW).attributes["sealed"]
    assert value.__class__ is bytes
    assert value == b"\x00\x01\xff"


def test_ttl_items_expire_at_now_plus_ttl_before_any_sweep(
    table: TenantTable, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    ttl = timedelta(minutes=10)
    table.create(org_id, "NONCE", "n1", attributes={"user": "alice"}, ttl=ttl, now=NOW)
    expires_at = int((NOW + ttl).timestamp())
    assert raw_items(dynamodb, settings, org_id)["NONCE#n1"]["expires_at"] == {"N": str(expires_at)}

    just_before = NOW + ttl - timedelta(seconds=1)
    assert table.get(org_id, "NONCE", "n1", now=just_before).expires_at == expires_at
    assert [i.item_id for i in table.query(org_id, "NONCE", now=just_before).items] == ["n1"]

    at_expiry = NOW + ttl
    # Still stored (TTL deletion lags), but absent to every read and conditional write.
    assert "NONCE#n1" in raw_items(dynamodb, settings, org_id)
    with pytest.raises(ItemNotFound):
        table.get(org_id, "NONCE", "n1", now=at_expiry)
    assert table.query(org_id, "NONCE", now=at_expiry).items == ()
    with pytest.raises(ItemNotFound):
        table.update(org_id, "NONCE", "n1", changes={"user": "mallory"}, now=at_expiry)
    with pytest.raises(ItemNotFound):
        table.consume(org_id, "NONCE", "n1", now=at_expiry)
    with pytest.raises(ItemNotFound):
        table.delete(org_id, "NONCE", "n1", expect={}, now=at_expiry)
    # An expired item does not block creating it anew.
    table.create(org_id, "NONCE", "n1", attributes={"user": "bob"}, ttl=ttl, now=at_expiry)
    assert table.get(org_id, "NONCE", "n1", now=at_expiry).attributes["user"] == "bob"


def test_an_update_with_a_ttl_keeps_a_live_item_alive_but_not_an_expired_one(
    table: TenantTable, org_id: str
) -> None:
    ttl = timedelta(hours=6)
    table.create(org_id, "LEASE", "l1", attributes={"holder": "a"}, ttl=ttl, now=NOW)
    later = NOW + timedelta(hours=5)
    # The expiry alone may move, with the holder checked; the item then outlives its first TTL.
    kept = table.update(org_id, "LEASE", "l1", expect={"holder": "a"}, ttl=ttl, now=later)
    assert kept.expires_at == int((later + ttl).timestamp())
    assert kept.attributes == {"holder": "a"}
    assert table.get(org_id, "LEASE", "l1", now=NOW + ttl + timedelta(hours=1)).item_id == "l1"
    with pytest.raises(ConditionFailed):
        table.update(org_id, "LEASE", "l1", expect={"holder": "b"}, ttl=ttl, now=later)
    # Once expired it is absent: it cannot be revived, only created anew.
    gone = later + ttl
    with pytest.raises(ItemNotFound):
        table.update(org_id, "LEASE", "l1", ttl=ttl, now=gone)
    assert table.get(org_id, "LEASE", "l1", now=later).expires_at == int((later + ttl).timestamp())


def test_time_must_be_timezone_aware_and_ttl_positive(
    offline_table: TenantTable, org_id: str
) -> None:
    table = offline_table
    with pytest.raises(ValueError, match="timezone-aware"):
        table.get(org_id, "ORG", now=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        table.create(org_id, "NONCE", "n", attributes={}, ttl=timedelta(0), now=NOW)
