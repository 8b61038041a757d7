"""DELETE /orgs/{org_id} through the real local stack: a fresh owner sign-in only; the grants
revoked at the provider, the key shredded, the org gone for everyone, its audit chain intact."""

from __future__ import annotations

import json
import secrets

import pytest

from strongroom_local.authorization_server import LocalAuthorizationServer
from tests.e2e.conftest import LocalStackClient
from tests.e2e.test_oauth import (
    Recorder,
    _browse,
    _callback,
    _code_connection,
    _org_with_admin,
    _start,
)

pytestmark = pytest.mark.e2e


def test_org_deletion_over_http_revokes_shreds_and_leaves_only_the_audit_chain(
    local_stack: LocalStackClient, authorization_server: LocalAuthorizationServer
) -> None:
    rec = Recorder(local_stack)
    org, admin = _org_with_admin(rec)
    owner = rec.call("GET", f"/orgs/{org}/members", admin).json()["members"]
    (owner_id,) = [m["user_id"] for m in owner if m["role"] == "owner"]
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, client_id = _code_connection(rec, authorization_server, org, admin, secret)
    url, cookie = _start(rec, org, connection_id, admin)
    assert _callback(rec, _browse(rec, url), cookie)["result"] == "connected"
    [refresh_token] = authorization_server.current_refresh_tokens(client_id)

    def delete(sub: str, auth_age: int = 0) -> tuple[int, dict[str, str] | None]:
        response = local_stack.http.delete(
            local_stack.url(f"/orgs/{org}"),
            headers=local_stack.auth(sub, auth_age=auth_age),
            timeout=60,
        )
        return response.status_code, response.json() if response.content else None

    # An admin may not; the owner must have signed in within 5 minutes.
    assert delete(admin)[0] == 403
    status, body = delete(owner_id, auth_age=301)
    assert (status, body and body["error"]["code"]) == (401, "reauth_required")
    assert rec.call("GET", f"/orgs/{org}", admin).status_code == 200
    assert authorization_server.is_active(refresh_token)

    assert delete(owner_id) == (204, None)

    assert not authorization_server.is_active(refresh_token)
    for sub in (owner_id, admin):
        assert rec.call("GET", f"/orgs/{org}", sub).status_code == 404
        assert rec.call("GET", f"/orgs/{org}/connections/{connection_id}", sub).status_code == 404
    kms = local_stack.client("kms")
    key = kms.describe_key(KeyId=f"alias/strongroom-dev/org/{org}")["KeyMetadata"]
    assert key["KeyState"] == "PendingDeletion"
    dynamodb = local_stack.client("dynamodb")
    (table,) = [name for name in dynamodb.list_tables()["TableNames"] if "Table" in name]
    left = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :org",
        ExpressionAttributeValues={":org": {"S": org}},
    )["Items"]
    assert [item["sk"]["S"] for item in left] == ["AUDIT#HEAD"]
    # The finished deletion dropped its mark, and the sweep's schedule runs in the stack.
    mark = {"pk": {"S": f"ORG_DELETION#{org}"}, "sk": {"S": "ORG_DELETION"}}
    assert "Item" not in dynamodb.get_item(TableName=table, Key=mark, ConsistentRead=True)
    status, fired = local_stack.cli("fire-schedule", "CredentialStoreFunction")
    assert (status, fired["ok"]) == (0, True), fired

    # The chain outlives the org, whole, with the deletion in it.
    status, report = local_stack.cli("audit-verify", org)
    assert (status, report["ok"]) == (0, True), report
    s3 = local_stack.client("s3")
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "auditbucket" in b["Name"]]
    actions = [
        json.loads(s3.get_object(Bucket=bucket, Key=f"audit/{org}/{seq:012d}.json")["Body"].read())[
            "action"
        ]
        for seq in range(1, report["head_seq"] + 1)
    ]
    deletion = actions[actions.index("org.delete") :]
    assert sorted(deletion) == sorted(
        [
            "org.delete",
            "member.remove",  # the admin
            "credential.revoke",
            "credential.delete",
            "connection.delete",
            "member.remove",  # the owner, last
        ]
    )
