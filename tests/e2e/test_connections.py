"""Connections through the real local stack over HTTP: secrets never read back, roles, 404s."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from tests.e2e.conftest import LocalStackClient, call, new_user

pytestmark = pytest.mark.e2e


def _body(token: str) -> dict[str, Any]:
    return {
        "name": "Acme Okta",
        "provider": "okta",
        "domain": "acme.okta.com",
        "scopes": ["okta.users.read"],
        "auth": {"method": "api_token", "token": token},
        "schedule": "cron(0 3 * * ? *)",
    }


def test_connection_lifecycle_over_http(local_stack: LocalStackClient) -> None:
    alice, carol, mallory = new_user("alice"), new_user("carol"), new_user("mallory")
    status, body = call(local_stack, "POST", "/orgs", alice, json={"name": "Acme"})
    assert status == 201
    org = body["org_id"]
    path = f"/orgs/{org}/members/{carol}"
    assert call(local_stack, "PUT", path, alice, json={"role": "member"})[0] == 200
    token = "CANARY" + secrets.token_hex(16)
    status, body = call(local_stack, "POST", f"/orgs/{org}/connections", alice, json=_body(token))
    assert status == 201, body
    connection = f"/orgs/{org}/connections/{body['connection_id']}"

    status, body = call(local_stack, "GET", connection, carol)
    assert status == 200
    assert body["credentials"][0]["value"] == "[REDACTED]"
    assert body["credentials"][0]["fingerprint"] == "..." + token[-4:]
    assert token not in json.dumps(body)
    status, body = call(local_stack, "GET", f"/orgs/{org}/connections", carol)
    assert status == 200
    assert token not in json.dumps(body)

    rotated = {"auth": {"method": "api_token", "token": "CANARY" + secrets.token_hex(16)}}
    assert call(local_stack, "PUT", f"{connection}/credentials", carol, json=rotated)[0] == 403
    status, body = call(local_stack, "PUT", f"{connection}/credentials", alice, json=rotated)
    assert status == 200
    assert rotated["auth"]["token"] not in json.dumps(body)

    # Another org's admin and a stranger see exactly what a missing connection looks like.
    status, body = call(local_stack, "POST", "/orgs", mallory, json={"name": "Evil"})
    other = body["org_id"]
    foreign = connection.replace(org, other)
    answers = [
        call(local_stack, "GET", foreign, mallory),
        call(local_stack, "DELETE", foreign, mallory),
        call(local_stack, "GET", connection, mallory),
        call(local_stack, "GET", f"/orgs/{org}/connections/conn_{'a' * 26}", alice),
    ]
    assert {status for status, _ in answers} == {404}
    assert len({json.dumps(answer) for _, answer in answers}) == 1

    assert call(local_stack, "DELETE", connection, carol)[0] == 403
    assert call(local_stack, "DELETE", connection, alice)[0] == 204
    assert call(local_stack, "GET", connection, alice)[0] == 404


def test_the_free_plan_stops_at_three_connections(local_stack: LocalStackClient) -> None:
    alice = new_user("alice")
    org = call(local_stack, "POST", "/orgs", alice, json={"name": "Acme"})[1]["org_id"]
    statuses = [
        call(local_stack, "POST", f"/orgs/{org}/connections", alice, json=_body("x" * 12))[0]
        for _ in range(4)
    ]
    assert statuses == [201, 201, 201, 429]
    refused = _body("y" * 12) | {"domain": "acme.okta.com.evil.example"}
    status, body = call(local_stack, "POST", f"/orgs/{org}/connections", alice, json=refused)
    assert status == 422
    assert body["error"]["message"].startswith("domain:")
