"""Counters with a ceiling and all-or-nothing transactions, as plan limits will use them."""

from __future__ import annotations

import pytest

from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    Delete,
    Increment,
    ItemExists,
    ItemNotFound,
    LimitReached,
    TenantTable,
    Update,
)
from tests.unit.tenancy.conftest import NOW


def test_increment_stays_between_zero_and_its_ceiling(table: TenantTable, org_id: str) -> None:
    values = [
        table.increment(org_id, "ORG", attribute="connections", ceiling=3, now=NOW)
        for _ in range(3)
    ]
    assert values == [1, 2, 3]
    with pytest.raises(LimitReached):
        table.increment(org_id, "ORG", attribute="connections", ceiling=3, now=NOW)
    with pytest.raises(LimitReached):
        table.increment(org_id, "ORG", attribute="seats", by=5, ceiling=4, now=NOW)
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 3
    # Decrements never go below zero.
    assert table.increment(org_id, "ORG", attribute="connections", by=-3, now=NOW) == 0
    with pytest.raises(LimitReached):
        table.increment(org_id, "ORG", attribute="connections", by=-1, now=NOW)
    with pytest.raises(ValueError, match="non-zero"):
        table.increment(org_id, "ORG", attribute="connections", by=0, now=NOW)


def test_a_transaction_creates_and_counts_together_or_not_at_all(
    table: TenantTable, org_id: str
) -> None:
    table.create(org_id, "ORG", attributes={"name": "Acme"}, now=NOW)

    def add_connection(connection_id: str) -> None:
        table.transact(
            org_id,
            [
                Create("CONN", connection_id, attributes={"name": connection_id}),
                Increment("ORG", attribute="connections", ceiling=2),
            ],
            now=NOW,
        )

    add_connection("conn_1")
    add_connection("conn_2")
    with pytest.raises(LimitReached):
        add_connection("conn_3")
    with pytest.raises(ItemNotFound):
        table.get(org_id, "CONN", "conn_3", now=NOW)  # the create was rolled back
    with pytest.raises(ItemExists):
        add_connection("conn_1")
    org = table.get(org_id, "ORG", now=NOW)
    assert org.attributes["connections"] == 2

    table.transact(
        org_id,
        [Delete("CONN", "conn_2", expect={}), Increment("ORG", attribute="connections", by=-1)],
        now=NOW,
    )
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 1
    with pytest.raises(ItemNotFound):
        table.transact(
            org_id,
            [Delete("CONN", "conn_2", expect={}), Increment("ORG", attribute="connections", by=-1)],
            now=NOW,
        )
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 1


def test_a_transaction_reports_a_failed_expectation(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "ORG", attributes={"version": 1}, now=NOW)
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    with pytest.raises(ConditionFailed):
        table.transact(
            org_id,
            [
                Update("ORG", changes={"version": 2}, expect={"version": 7}),
                Update("MEMBER", "alice", changes={"role": "member"}),
            ],
            now=NOW,
        )
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"] == "owner"


def test_a_check_guards_a_transaction_without_writing(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "member"}, now=NOW)
    for guard, error in [
        (Check("MEMBER", "alice", expect={"role": "admin"}), ConditionFailed),
        (Check("MEMBER", "nobody", expect={"role": "owner"}), ItemNotFound),
    ]:
        with pytest.raises(error):
            table.transact(
                org_id, [Update("MEMBER", "bob", changes={"role": "admin"}), guard], now=NOW
            )
        assert table.get(org_id, "MEMBER", "bob", now=NOW).attributes["role"] == "member"
    table.transact(
        org_id,
        [
            Update("MEMBER", "bob", changes={"role": "admin"}),
            Check("MEMBER", "alice", expect={"role": "owner"}),
        ],
        now=NOW,
    )
    assert table.get(org_id, "MEMBER", "bob", now=NOW).attributes["role"] == "admin"
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes == {"role": "owner"}


def test_a_check_may_allow_one_of_several_values(table: TenantTable, org_id: str) -> None:
    table.create(org_id, "MEMBER", "alice", attributes={"role": "admin"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "member"}, now=NOW)
    bump = Update("MEMBER", "bob", changes={"seen": 1})
    table.transact(
        org_id, [bump, Check("MEMBER", "alice", one_of={"role": ["admin", "owner"]})], now=NOW
    )
    with pytest.raises(ConditionFailed):
        table.transact(
            org_id, [bump, Check("MEMBER", "alice", one_of={"role": ["owner"]})], now=NOW
        )
    with pytest.raises(ValueError, match="at least one"):
        table.transact(org_id, [bump, Check("MEMBER", "alice", one_of={"role": []})], now=NOW)


def test_a_transaction_touches_each_item_once_and_has_operations(
    offline_table: TenantTable, org_id: str
) -> None:
    with pytest.raises(ValueError, match="once"):
        offline_table.transact(
            org_id, [Update("ORG", changes={"a": 1}), Update("ORG", changes={"b": 2})], now=NOW
        )
    with pytest.raises(ValueError, match="1 to 100"):
        offline_table.transact(org_id, [], now=NOW)


def test_an_increment_holds_only_while_its_item_holds_what_it_expects(
    table: TenantTable, org_id: str
) -> None:
    """A counter on an item that also carries a state (an org being deleted): the increment is
    the transaction's one operation on that item, so the state's condition goes with it."""
    table.create(org_id, "ORG", attributes={"connections": 1}, now=NOW)

    def add_connection(connection_id: str, *, ceiling: int | None = 3) -> None:
        table.transact(
            org_id,
            [
                Create("CONN", connection_id, attributes={}),
                Increment(
                    "ORG", attribute="connections", ceiling=ceiling, expect={"closed_at": None}
                ),
            ],
            now=NOW,
        )

    add_connection("conn_2")
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 2
    table.update(org_id, "ORG", changes={"closed_at": "2026-01-02T03:04:05Z"}, now=NOW)
    # Refused for the expectation (not the ceiling), with or without a ceiling, and even with
    # the ceiling reached too: the item is not as the write needs it.
    for ceiling in (3, None, 2):
        with pytest.raises(ConditionFailed) as refused:
            add_connection("conn_3", ceiling=ceiling)
        assert not isinstance(refused.value, LimitReached)  # a ConditionFailed too
    with pytest.raises(ItemNotFound):
        table.get(org_id, "CONN", "conn_3", now=NOW)
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 2
    # The ceiling is still told apart while the expectation holds.
    table.update(org_id, "ORG", remove=["closed_at"], now=NOW)
    add_connection("conn_3")
    with pytest.raises(LimitReached):
        add_connection("conn_4")
    assert table.get(org_id, "ORG", now=NOW).attributes["connections"] == 3
