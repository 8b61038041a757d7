"""DynamoDB failures are StoreUnavailable, never ItemNotFound, and their text holds no keys."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    ItemExists,
    ItemNotFound,
    StoreUnavailable,
    TenantTable,
    Update,
)
from strongroom.tenancy.exceptions import WriteConflict
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


def _cancelled(*codes: str) -> Any:
    """A before-call handler answering TransactWriteItems as DynamoDB does a cancelled
    transaction, with these reasons, one per item; nothing is written."""

    def answer(params: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        reasons = [{"Code": code} for code in codes]
        error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
        parsed = {"Error": error, "CancellationReasons": reasons, "ResponseMetadata": {}}
        return AWSResponse(params["url"], 400, {}, None), parsed

    return answer


def _member_moves(table: TenantTable, org_id: str) -> None:
    table.transact(
        org_id,
        [
            Update("MEMBER", "alice", changes={"role": "member"}, expect={"role": "owner"}),
            Check("MEMBER", "bob", expect={"role": "owner"}),
        ],
        now=NOW,
    )


def test_a_transaction_cancelled_for_another_under_way_is_a_write_conflict(
    table: TenantTable, dynamodb: Any, org_id: str
) -> None:
    """DynamoDB cancels one of two transactions under way on one item (TransactionConflict):
    WriteConflict, told apart from other outages, yet one for every caller that does not ask
    for it by name (the other transaction may fail: nothing may be taken as done)."""
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "owner"}, now=NOW)
    event = "before-call.dynamodb.TransactWriteItems"
    conflict = _cancelled("None", "TransactionConflict")
    dynamodb.meta.events.register(event, conflict)
    try:
        with pytest.raises(WriteConflict) as caught:
            _member_moves(table, org_id)
    finally:
        dynamodb.meta.events.unregister(event, conflict)
    assert isinstance(caught.value, StoreUnavailable)
    assert not isinstance(caught.value, ConditionFailed)
    assert org_id not in str(caught.value)
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"] == "owner"


def _conflicts(times: int) -> tuple[Any, list[int]]:
    """A before-call handler cancelling the first `times` TransactWriteItems calls for a
    conflict (letting later ones through), and the list of calls it saw."""
    calls: list[int] = []
    cancel = _cancelled("None", "TransactionConflict")

    def answer(params: Any, **kwargs: Any) -> Any:
        calls.append(len(calls))
        return cancel(params, **kwargs) if len(calls) <= times else None

    return answer, calls


@pytest.mark.parametrize(("times", "lands"), [(1, True), (2, True), (3, False)])
def test_a_conflict_is_tried_again_and_only_a_lasting_one_is_raised(
    table: TenantTable, dynamodb: Any, org_id: str, times: int, lands: bool
) -> None:
    """Nothing of a cancelled transaction was written and its conditions are checked anew:
    running it again is the same request a moment later. Three runs in all."""
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "owner"}, now=NOW)
    event = "before-call.dynamodb.TransactWriteItems"
    conflict, calls = _conflicts(times)
    dynamodb.meta.events.register(event, conflict)
    try:
        if lands:
            _member_moves(table, org_id)
        else:
            with pytest.raises(WriteConflict):
                _member_moves(table, org_id)
    finally:
        dynamodb.meta.events.unregister(event, conflict)
    assert len(calls) == min(times + 1, 3)
    role = table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"]
    assert role == ("member" if lands else "owner")


def test_a_conflict_tried_again_meets_the_conditions_as_they_are_now(
    table: TenantTable, dynamodb: Any, org_id: str
) -> None:
    """The other transaction committed meanwhile: the run again fails on its condition."""
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "owner"}, now=NOW)
    event = "before-call.dynamodb.TransactWriteItems"
    cancel = _cancelled("None", "TransactionConflict")
    seen: list[int] = []

    def rival_commits_first(params: Any, **kwargs: Any) -> Any:
        seen.append(1)
        if len(seen) > 1:
            return None
        # The rival's transaction: bob demoted (alice's move now requires bob to be owner).
        dynamodb.update_item(
            TableName=table._store.table,
            Key={"pk": {"S": org_id}, "sk": {"S": "MEMBER#bob"}},
            UpdateExpression="SET #r = :m",
            ExpressionAttributeNames={"#r": "role"},
            ExpressionAttributeValues={":m": {"S": "member"}},
        )
        return cancel(params, **kwargs)

    dynamodb.meta.events.register(event, rival_commits_first)
    try:
        with pytest.raises(ConditionFailed):
            _member_moves(table, org_id)
    finally:
        dynamodb.meta.events.unregister(event, rival_commits_first)
    assert table.get(org_id, "MEMBER", "alice", now=NOW).attributes["role"] == "owner"


@pytest.mark.parametrize(
    ("codes", "error"),
    [
        # A failed condition decides, as it would alone (no item returned: it is absent).
        (("ConditionalCheckFailed", "TransactionConflict"), ItemNotFound),
        # Another reason beside the conflict: DynamoDB refused more than the race.
        (("ThrottlingError", "TransactionConflict"), StoreUnavailable),
        (("None", "ValidationError"), StoreUnavailable),
    ],
)
def test_a_conflict_with_other_reasons_is_what_they_say(
    table: TenantTable, dynamodb: Any, org_id: str, codes: tuple[str, ...], error: type
) -> None:
    table.create(org_id, "MEMBER", "alice", attributes={"role": "owner"}, now=NOW)
    table.create(org_id, "MEMBER", "bob", attributes={"role": "owner"}, now=NOW)
    event = "before-call.dynamodb.TransactWriteItems"
    cancelled = _cancelled(*codes)
    dynamodb.meta.events.register(event, cancelled)
    try:
        with pytest.raises(error) as caught:
            _member_moves(table, org_id)
    finally:
        dynamodb.meta.events.unregister(event, cancelled)
    assert not isinstance(caught.value, WriteConflict)


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data
