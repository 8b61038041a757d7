"""How many orgs one user may create (MaxOrgsPerUser): each org is a customer-managed KMS key,
so past the allowance POST /orgs answers 429 before any key is made."""

from __future__ import annotations

from typing import Any

import boto3

from strongroom_local.provision import Stack
from strongroom_local.template import load_template
from tests.unit.credential_store.conftest import Call


def _create(call: Call, sub: str) -> tuple[int, Any]:
    return call("POST", "/orgs", sub=sub, body={"name": "Acme"})


def _key_count() -> int:
    return len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"])


def _org_items(stack: Stack) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = boto3.client("dynamodb", region_name="us-east-1").scan(
        TableName=stack.ref("Table"),
        FilterExpression="sk = :org",
        ExpressionAttributeValues={":org": {"S": "ORG"}},
    )["Items"]
    return items


def _created_by(stack: Stack, sub: str) -> int | None:
    item = (
        boto3.client("dynamodb", region_name="us-east-1")
        .get_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": f"ORGS_CREATED#{sub}"}, "sk": {"S": "ORGS_CREATED"}},
        )
        .get("Item")
    )
    return int(item["count"]["N"]) if item else None


def test_the_template_gives_credential_store_the_allowance(app_module: Any) -> None:
    default = load_template()["Parameters"]["MaxOrgsPerUser"]["Default"]
    assert app_module.services().settings.max_orgs_per_user == default == 10


def test_past_the_allowance_no_org_and_no_key_is_made(call: Call, stack: Stack) -> None:
    created = []
    for _ in range(10):
        status, body = _create(call, "alice")
        assert status == 201, body
        created.append(body["org_id"])
    keys, orgs = _key_count(), _org_items(stack)

    status, body = _create(call, "alice")

    assert status == 429
    assert body == {
        "error": {"code": "rate_limited", "message": "A user can create at most 10 orgs."}
    }
    assert _key_count() == keys  # refused before KMS CreateKey
    assert _org_items(stack) == orgs
    assert _created_by(stack, "alice") == 10
    # Another user has an allowance of their own, and alice's orgs still work.
    assert _create(call, "bob")[0] == 201
    org = created[-1]
    status, _ = call(
        "GET", f"/orgs/{org}", sub="alice", route="/orgs/{org_id}", path_parameters={"org_id": org}
    )
    assert status == 200


def test_being_added_to_orgs_uses_no_allowance(call: Call, stack: Stack) -> None:
    for _ in range(3):
        org = _create(call, "alice")[1]["org_id"]
        status, _ = call(
            "PUT",
            f"/orgs/{org}/members/bob",
            sub="alice",
            route="/orgs/{org_id}/members/{user_id}",
            path_parameters={"org_id": org, "user_id": "bob"},
            body={"role": "owner"},
        )
        assert status == 200
    assert _created_by(stack, "alice") == 3
    assert _created_by(stack, "bob") is None


def test_a_refused_body_uses_no_allowance(call: Call, stack: Stack) -> None:
    status, _ = call("POST", "/orgs", sub="alice", body={"name": "Acme", "plan": "enterprise"})
    assert status == 422
    assert _created_by(stack, "alice") is None
