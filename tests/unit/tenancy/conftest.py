"""Tenancy fixtures: a DynamoDB client on the emulated stack, the repositories, a fixed now.

Every test that uses a repository runs with a guard that records the client's calls and fails
the test if one was a `Scan`: the repositories read only with GetItem and Query.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from strongroom.settings import Settings
from strongroom.tenancy import PlatformTable, TenantTable, new_org_id
from strongroom_local.provision import Stack

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


class OperationLog:
    """The names of the API calls a client really made (botocore `before-call`)."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", self._record)

    def _record(self, model: Any, **_: Any) -> None:
        self.names.append(model.name)


@pytest.fixture
def dynamodb(stack: Stack) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def operations(dynamodb: Any) -> Iterator[OperationLog]:
    log = OperationLog(dynamodb)
    yield log
    assert "Scan" not in log.names, "a repository made a Scan"


@pytest.fixture
def table(dynamodb: Any, settings: Settings, operations: OperationLog) -> TenantTable:
    return TenantTable(dynamodb=dynamodb, table_name=settings.table_name)


@pytest.fixture
def platform(dynamodb: Any, settings: Settings, operations: OperationLog) -> PlatformTable:
    return PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)


@pytest.fixture
def offline_table() -> Iterator[TenantTable]:
    """A repository whose client refuses every call: for checks that must fail before I/O."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    with Stubber(client):
        yield TenantTable(dynamodb=client, table_name="unused")


@pytest.fixture
def org_id() -> str:
    return new_org_id()


@pytest.fixture
def other_org_id() -> str:
    return new_org_id()


def raw_items(dynamodb: Any, settings: Settings, pk: str) -> dict[str, dict[str, Any]]:
    """Every stored item of partition `pk`, by sk, as DynamoDB holds it."""
    response = dynamodb.query(
        TableName=settings.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": pk}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item for item in response["Items"]}
