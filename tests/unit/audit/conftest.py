"""Audit fixtures: clients on the emulated stack, the log, entries, fault injection.

The concurrency test uses `atomic_aws` (tests/conftest.py): moto's conditional writes are not
atomic across threads as S3's and DynamoDB's are.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from strongroom.audit import AuditAction, AuditEntry, AuditLog
from strongroom.settings import Settings
from strongroom.tenancy import new_org_id
from strongroom_local.provision import Stack

# S3 enforces Object Lock by its own clock and refuses a retain-until date in the past, so the
# injected now lies ahead of any real clock this suite will meet.
NOW = datetime(2096, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


class SimulatedCrash(BaseException):
    """The process dies here: no handler in the code under test may catch it."""


def entry(**overrides: Any) -> AuditEntry:
    fields: dict[str, Any] = {
        "actor": "auth0|alice",
        "action": AuditAction.CREDENTIAL_WRITE,
        "target_kind": "connection",
        "target_id": "conn_1",
        "request_id": "req-0001",
        "outcome": "success",
        "details": {"method": "client_credentials"},
    }
    fields.update(overrides)
    return AuditEntry(**fields)


@pytest.fixture
def s3(stack: Stack) -> Any:
    return boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def dynamodb(stack: Stack) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def make_log(settings: Settings) -> Callable[..., AuditLog]:
    """A new AuditLog on its own clients (as in another process), optionally faulty."""

    def make(
        *, settings_: Settings | None = None, s3: Any = None, dynamodb: Any = None
    ) -> AuditLog:
        return AuditLog(
            s3=s3 or boto3.client("s3", region_name="us-east-1"),
            dynamodb=dynamodb or boto3.client("dynamodb", region_name="us-east-1"),
            settings=settings_ or settings,
        )

    return make


@pytest.fixture
def audit(make_log: Callable[..., AuditLog]) -> AuditLog:
    return make_log()


@pytest.fixture
def org_id() -> str:
    return new_org_id()


def fail_on(client: Any, operation: str, error: Callable[[], BaseException]) -> None:
    """Make `client` raise `error()` whenever it is about to send `operation`."""
    service = client.meta.service_model.service_id.hyphenize()

    def refuse(**_: Any) -> None:
        raise error()

    client.meta.events.register(f"before-call.{service}.{operation}", refuse)


def head_item(dynamodb: Any, settings: Settings, org_id: str) -> dict[str, Any] | None:
    response = dynamodb.get_item(
        TableName=settings.table_name,
        Key={"pk": {"S": org_id}, "sk": {"S": "AUDIT#HEAD"}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    return None if item is None else {"seq": int(item["seq"]["N"]), "hash": item["hash"]["S"]}


def event_keys(s3: Any, bucket: str, org_id: str) -> list[str]:
    response = s3.list_objects_v2(Bucket=bucket, Prefix=f"audit/{org_id}/")
    return [item["Key"] for item in response.get("Contents", [])]


def without_list_bucket(s3: Any) -> Any:
    """`s3`, answering 403 for a missing key as S3 does to a role without s3:ListBucket (the
    functions' roles may list only credential_store's prefix, or nothing)."""
    probe = boto3.client("s3", region_name="us-east-1")

    def forbidden_if_missing(params: dict[str, Any], **_: Any) -> None:
        try:
            probe.head_object(Bucket=params["Bucket"], Key=params["Key"])
        except ClientError:
            raise ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject") from None

    s3.meta.events.register("before-parameter-build.s3.GetObject", forbidden_if_missing)
    return s3
