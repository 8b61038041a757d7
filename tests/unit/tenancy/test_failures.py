"""DynamoDB failures are StoreUnavailable, never ItemNotFound, and their text holds no keys."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from strongroom.tenancy import (
    Create,
    ItemExists,
    ItemNotFound,
    StoreUnavailable,
    TenantTable,
    Update,
)
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


def test_botocore_retries_a_transaction_with_its_one_request_token(
    table: TenantTable, dynamodb: Any, org_id: str
) -> None:
    """A transaction that commits but whose answer is lost is retried by botocore. With the
    same token DynamoDB answers the retry with the first attempt's success; moto ignores the
    token, so here the retry fails its condition, and what is checked is the token itself."""
    attempts: list[str] = []

    def lose_the_first_answer(request: Any, **_: Any) -> AWSResponse | None:
        # Every before-send handler runs: moto has committed the write when this answers 500.
        attempts.append(json.loads(request.body)["ClientRequestToken"])
        if len(attempts) == 1:
            return AWSResponse(request.url, 500, {}, _RawBody(b'{"__type": "InternalServerError"}'))
        return None

    event = "before-send.dynamodb.TransactWriteItems"
    dynamodb.meta.events.register(event, lose_the_first_answer)
    try:
        with pytest.raises(ItemExists):  # DynamoDB: success, from the token
            table.transact(org_id, [Create("MEMBER", "carol", attributes={})], now=NOW)
        table.transact(org_id, [Create("MEMBER", "dave", attributes={})], now=NOW)
    finally:
        dynamodb.meta.events.unregister(event, lose_the_first_answer)
    first, retry, second_call = attempts
    assert first == retry  # the retry is the same request
    assert second_call != first  # each call its own token
    assert re.fullmatch(r"[0-9a-f]{32}", first)  # within DynamoDB's 1-36 characters
    assert table.get(org_id, "MEMBER", "carol", now=NOW)  # the first attempt did commit


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data
