"""Guarantees across the whole path: the plan limit under concurrency, and no secret anywhere.

moto handles requests from several threads without a lock, so its transactions are not atomic
across threads as DynamoDB's are; `atomic_aws` serialises moto's request handling (one request
at a time, each atomic as in AWS), the same way tests/unit/audit/conftest.py does.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from strongroom.api import Caller
from strongroom.errors import RateLimited
from strongroom_local.provision import Stack
from tests.unit.credential_store.conftest import Call
from tests.unit.credential_store.connection_helpers import (
    DEV_HOST,
    canary,
    create,
    created,
    delete,
    ec_jwk,
    get,
    listing,
    new_org,
    okta_body,
    pem_body_lines,
    rotate,
    rsa_pem,
)


@pytest.fixture(autouse=True)
def _dev_allow_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRONGROOM_DEV_ALLOW_HOSTS", DEV_HOST)


def test_twenty_concurrent_creates_give_exactly_the_plan_limit(
    call: Call, stack: Stack, app_module: Any, atomic_aws: None
) -> None:
    from credential_store import connections
    from credential_store.models import CreateConnection

    from strongroom.plans import FREE

    org = new_org(call)
    services = app_module.services()
    caller = Caller(sub="bob")

    def attempt(index: int) -> str:
        body = CreateConnection.model_validate(okta_body(name=f"c{index}"))
        try:
            connections.create_connection(
                services, caller, org, body, now=datetime.now(UTC), request_id=f"req-{index}"
            )
        except RateLimited:
            return "limited"
        return "created"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = list(pool.map(attempt, range(20)))
    assert outcomes.count("created") == FREE.max_connections
    assert outcomes.count("limited") == 20 - FREE.max_connections
    assert len(listing(call, org)[1]["connections"]) == FREE.max_connections
    count = boto3.client("dynamodb").get_item(
        TableName=stack.ref("Table"), Key={"pk": {"S": org}, "sk": {"S": "ORG"}}
    )["Item"]["connection_count"]
    assert count == {"N": str(FREE.max_connections)}


def _scan_table(stack: Stack) -> list[dict[str, Any]]:
    client = boto3.client("dynamodb")
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": stack.ref("Table")}
    while True:
        page = client.scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _s3_objects() -> list[bytes]:
    s3 = boto3.client("s3")
    bodies = []
    for bucket in s3.list_buckets()["Buckets"]:
        versions = s3.list_object_versions(Bucket=bucket["Name"]).get("Versions", [])
        for version in versions:
            obj = s3.get_object(
                Bucket=bucket["Name"], Key=version["Key"], VersionId=version["VersionId"]
            )
            bodies.append(obj["Body"].read())
    return bodies


def _raw_text(value: Any) -> str:
    """Every string and binary value of a raw item, binaries read as Latin-1 (byte for byte)."""
    if isinstance(value, dict):
        return " ".join(_raw_text(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_raw_text(v) for v in value)
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("latin-1")
    return str(value)


def test_canaries_never_appear_in_responses_logs_items_or_objects(
    call: Call, stack: Stack, app_module: Any
) -> None:
    log_stream = io.StringIO()
    handler = app_module.logger.registered_handler
    previous = handler.setStream(log_stream)
    app_module.logger.setLevel("DEBUG")
    try:
        canaries, responses = _exercise_every_route(call, stack)
    finally:
        handler.setStream(previous)
    logs = log_stream.getvalue()
    # The scan below reads real lines: one per create, rotation and delete.
    assert logs.count('"connection created"') == 4
    assert '"credentials replaced"' in logs
    items = _scan_table(stack)
    assert any("sealed_private_key" in item for item in items)
    haystacks = {
        "responses": json.dumps(responses),
        "logs": logs,
        "items": _raw_text(items),
        "objects": b"\n".join(_s3_objects()).decode("latin-1"),
    }
    for where, text in haystacks.items():
        for secret in canaries:
            assert secret not in text, where


def _exercise_every_route(call: Call, stack: Stack) -> tuple[list[str], list[Any]]:
    org = new_org(call)
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": "ORG"}},
        UpdateExpression="SET #p = :p",
        ExpressionAttributeNames={"#p": "plan"},
        ExpressionAttributeValues={":p": {"S": "team"}},
    )
    token, secret, code_secret, rotated, refused = (canary(n) for n in "tscrx")
    pem = rsa_pem()
    jwk = ec_jwk()
    canaries = [token, secret, code_secret, rotated, refused, *pem_body_lines(pem)]
    canaries.append(json.loads(jwk)["d"])
    responses: list[Any] = []

    def keep(answer: tuple[int, Any]) -> tuple[int, Any]:
        responses.append(answer)
        return answer

    ids = [
        created(call, org, okta_body(token)),
        created(
            call,
            org,
            okta_body(
                auth={"method": "client_credentials", "client_id": "0oa1", "client_secret": secret}
            ),
        ),
        created(
            call,
            org,
            okta_body(
                auth={
                    "method": "private_key_jwt",
                    "client_id": "0oa2",
                    "private_key": pem,
                    "key_id": "k1",
                }
            ),
        ),
        created(
            call,
            org,
            okta_body(
                provider="oauth2",
                domain=None,
                authorization_endpoint=f"http://{DEV_HOST}/authorize",
                token_endpoint=f"http://{DEV_HOST}/token",
                auth={
                    "method": "authorization_code",
                    "client_id": "app",
                    "client_secret": code_secret,
                },
            ),
        ),
    ]
    jwk_auth = {
        "method": "private_key_jwt",
        "client_id": "0oa2",
        "private_key": jwk,
        "key_id": "k2",
    }
    keep(rotate(call, org, ids[2], jwk_auth))
    keep(
        rotate(
            call,
            org,
            ids[1],
            {"method": "client_credentials", "client_id": "0oa1", "client_secret": rotated},
        )
    )
    # Refused bodies carry secrets too: they must not come back or be logged.
    keep(create(call, org, okta_body(refused, domain="evil.example.com")))
    keep(create(call, org, okta_body(refused, unknown=refused)))
    keep(rotate(call, org, ids[0], {"method": "api_token", "token": refused + " x"}))
    keep(listing(call, org))
    for connection_id in ids:
        keep(get(call, org, connection_id))
    keep(delete(call, org, ids[3]))
    return canaries, responses
