"""DynamoDB failures are StoreUnavailable, never ItemNotFound, and their text holds no keys."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.tenancy import ItemNotFound, StoreUnavailable, TenantTable, Update
from tests.unit.tenancy.conftest import NOW


def _refuse(**_: Any) -> None:
    raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")


def test_a_missing_table_is_an_outage_not_a_missing_item(dynamodb: Any, org_id: str) -> None:
    table = TenantTable(dynamodb=dynamodb, table_name="no-such-table")
    with pytest.raises(StoreUnavailable) as caught:
        table.get(org_id, "MEMBER", "alice", now=NOW)
    assert not isinstance(caught.value, ItemNotFound)
    assert "ResourceNotFoundException" in str(caught.value)
    assert org_id not in str(caught.value)
    assert "alice" not in str(caught.value)


def test_a_connection_failure_is_an_outage_and_changes_nothing(
    table: TenantTable, dynamodb: Any, org_id: str
) -> None:
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    calls = {
        "GetItem": lambda: table.get(org_id, "MEMBER", "alice", now=NOW),
        "PutItem": lambda: table.create(org_id, "MEMBER", "bob", attributes={}, now=NOW),
        "UpdateItem": lambda: table.update(
            org_id, "MEMBER", "alice", changes={"role": "x"}, now=NOW
        ),
        "DeleteItem": lambda: table.consume(org_id, "MEMBER", "alice", now=NOW),
        "Query": lambda: table.query(org_id, "MEMBER", now=NOW),
        "TransactWriteItems": lambda: table.transact(
            org_id, [Update("MEMBER", "alice", changes={"role": "x"})], now=NOW
        ),
    }
    for operation, call in calls.items():
        event = f"before-call.dynamodb.{operation}"
        dynamodb.meta.events.register(event, _refuse)
        with pytest.raises(StoreUnavailable, match=f"{operation} failed"):
            call()
        dynamodb.meta.events.unregister(event, _refuse)
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"] == "owner"
    with pytest.raises(ItemNotFound):
        table.get(org_id, "MEMBER", "bob", now=NOW)
