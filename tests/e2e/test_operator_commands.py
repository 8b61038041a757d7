"""`strongroom rotate-dek` and `strongroom reseal` against the running stack: the org's secrets
move to the new DEK, still work (a backup decrypts its token), and both commands are audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.crypto.sealed import header
from tests.e2e.conftest import LocalStackClient
from tests.e2e.test_backups import TIMEOUT, _wait_for_end, sandbox_connection

pytestmark = pytest.mark.e2e


def test_a_rotated_dek_and_resealed_secrets_still_serve_a_backup(
    local_stack: LocalStackClient,
) -> None:
    org, connection, headers = sandbox_connection(local_stack, "Keys")
    http = local_stack.http
    dynamodb = local_stack.client("dynamodb")
    (table,) = [name for name in dynamodb.list_tables()["TableNames"] if "Table" in name]

    def sealed_token() -> bytes:
        item = dynamodb.get_item(
            TableName=table,
            Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection}"}},
            ConsistentRead=True,
        )["Item"]
        return bytes(item["sealed_token"]["B"])

    assert sealed_token().startswith(header(1))

    assert local_stack.cli("rotate-dek", org) == (0, {"org_id": org, "dek_version": 2})
    assert sealed_token().startswith(header(1))  # rotation alone moves nothing
    status, report = local_stack.cli("reseal", org)
    assert status == 0
    # Right after the rotation, warm functions may still seal under DEK 1 for a while.
    run_again_after = datetime.fromisoformat(report.pop("run_again_after").replace("Z", "+00:00"))
    assert run_again_after > datetime.now(UTC) + timedelta(minutes=15)
    assert report == {
        "org_id": org,
        "dek_version": 2,
        "connections": 1,
        "resealed": 1,
        "already_current": 0,
        "unopenable": [],
        "settled": False,
    }
    assert sealed_token().startswith(header(2))
    assert local_stack.cli("reseal", org)[1]["resealed"] == 0

    # The resealed token still opens: a backup authenticates to the sandbox with it.
    started = http.post(
        local_stack.url(f"/orgs/{org}/connections/{connection}/backups"),
        headers=headers,
        timeout=TIMEOUT,
    )
    assert started.status_code == 202, started.text
    assert _wait_for_end(local_stack, org, started.json()["backup_id"])["status"]["S"] == "complete"

    # Audited in the org's chain, which still verifies.
    status, verified = local_stack.cli("audit-verify", org)
    assert (status, verified["ok"]) == (0, True)
    s3 = local_stack.client("s3")
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "auditbucket" in b["Name"]]
    events = [
        json.loads(s3.get_object(Bucket=bucket, Key=f"audit/{org}/{seq:012d}.json")["Body"].read())
        for seq in range(1, verified["head_seq"] + 1)
    ]
    operator = [(e["action"], e["actor"]) for e in events if e["actor"].startswith("operator:")]
    # The rotation, and the one connection the first run rewrote (the second rewrote nothing).
    assert operator == [("dek.rotate", "operator:local"), ("credential.reseal", "operator:local")]
    # A malformed org id, and an org that does not exist, are refused (exit 2).
    assert local_stack.cli("rotate-dek", "not-an-org")[0] == 2
    assert local_stack.cli("rotate-dek", "org_" + "a" * 26)[0] == 2
