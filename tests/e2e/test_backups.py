"""Backups through the real local stack: a connection to the stack's sandbox Okta is backed up
on demand; the API serves the stored manifest; every file, downloaded by the signed URL the API
issues, equals what the sandbox serves minus the secret fields and hashes as the manifest says;
no rate-limit bucket is exceeded; a provider that keeps failing ends in a failed backup with
nothing marked complete."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import pytest

from strongroom_local.sandbox_okta import (
    SECRET_MARKER,
    OrgSpec,
    SandboxOrg,
    resource_listings,
    without_secret_fields,
)
from tests.e2e.conftest import LocalStackClient

pytestmark = pytest.mark.e2e
TIMEOUT = 30
# Resources whose items are listed as they come; the others wrap each item with its parent.
TOP_LEVEL = {
    "users",
    "groups",
    "group_rules",
    "apps",
    "authorization_servers",
    "network_zones",
    "trusted_origins",
    "identity_providers",
    "authenticators",
    "behaviors",
    "user_schema",
    "custom_roles",
    "role_assignees",
}


def sandbox_connection(
    stack: LocalStackClient, name: str = "Backups"
) -> tuple[str, str, dict[str, str]]:
    """A new org with an api_token connection to the stack's sandbox Okta: (org, connection,
    the owner's headers)."""
    sandbox = stack.running.sandbox_okta
    headers = stack.auth(f"alice-{uuid.uuid4().hex[:8]}")
    org = stack.http.post(
        stack.url("/orgs"), json={"name": name}, headers=headers, timeout=TIMEOUT
    ).json()["org_id"]
    created = stack.http.post(
        stack.url(f"/orgs/{org}/connections"),
        json={
            "name": "Sandbox Okta",
            "provider": "okta",
            "domain": sandbox["domain"],
            "auth": {"method": "api_token", "token": sandbox["api_token"]},
            "schedule": "rate(1 day)",
        },
        headers=headers,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    return org, created.json()["connection_id"], headers


def _start(stack: LocalStackClient) -> tuple[str, str, str, dict[str, str]]:
    """A new org with a connection to the sandbox; a backup started: (org, connection, backup
    id, headers)."""
    org, connection, headers = sandbox_connection(stack)
    started = stack.http.post(
        stack.url(f"/orgs/{org}/connections/{connection}/backups"), headers=headers, timeout=TIMEOUT
    )
    assert started.status_code == 202, started.text
    return org, connection, started.json()["backup_id"], headers


def _wait_for_end(stack: LocalStackClient, org: str, backup_id: str) -> dict[str, Any]:
    dynamodb = stack.client("dynamodb")
    table = dynamodb.list_tables()["TableNames"][0]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        item = dynamodb.get_item(
            TableName=table,
            Key={"pk": {"S": org}, "sk": {"S": f"BACKUP#{backup_id}"}},
            ConsistentRead=True,
        ).get("Item")
        if item and item["status"]["S"] != "running":
            return item
        time.sleep(0.5)
    raise AssertionError("the backup did not end in time:\n" + stack.log()[-4000:])


def _bucket(stack: LocalStackClient) -> str:
    names = [b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]]
    return next(name for name in names if "backup" in name.lower())


def test_a_sandbox_org_is_backed_up_whole_and_without_secrets(
    local_stack: LocalStackClient,
) -> None:
    control = local_stack.running.sandbox_control()
    # Small windows on the busiest buckets, so the backup must wait for resets.
    control.set_rate_limits(
        {
            "/api/v1/groups": {"limit": 4, "window_seconds": 1},
            "/api/v1/apps": {"limit": 4, "window_seconds": 1},
        }
    )
    control.reset_counters()
    try:
        org, _, backup_id, headers = _start(local_stack)
        item = _wait_for_end(local_stack, org, backup_id)
        counters = control.counters()
    finally:
        control.reset_rate_limits()
        control.set_rate_limits(
            {
                "/api/v1/groups": {"limit": 500, "window_seconds": 60},
                "/api/v1/apps": {"limit": 100, "window_seconds": 60},
            }
        )
    assert item["status"]["S"] == "complete", item.get("failure_reason")
    assert counters["rate_limited"] == 0
    for bucket in ("/api/v1/groups", "/api/v1/apps"):
        assert counters["rate_limits"][bucket]["peak_window_usage"] <= 4
    assert counters["by_bucket"]["/api/v1/groups"] > 4  # so it waited for a reset

    s3 = local_stack.client("s3")
    bucket = _bucket(local_stack)
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=item["manifest_key"]["S"])["Body"].read()
    )
    sandbox = local_stack.running.sandbox_okta
    org_data = SandboxOrg(OrgSpec(**sandbox["sizes"]), sandbox["url"])
    assert len(manifest["files"]) == 25
    # The API's manifest (signed_url_issuer, from the record the worker completed) is the
    # stored one.
    detail = local_stack.http.get(
        local_stack.url(f"/orgs/{org}/backups/{backup_id}"), headers=headers, timeout=TIMEOUT
    )
    assert detail.status_code == 200, detail.text
    assert detail.json()["manifest"] == manifest
    for entry in manifest["files"]:
        stored = s3.head_object(Bucket=bucket, Key=entry["key"])
        assert stored["ServerSideEncryption"] == "aws:kms"
        assert stored["ObjectLockMode"] == "COMPLIANCE"
        # Every file downloaded as a user would: by the signed URL the API issues for it.
        link = local_stack.http.post(
            local_stack.url(f"/orgs/{org}/backups/{backup_id}/download-url"),
            json={"resource": entry["resource"]},
            headers=headers,
            timeout=TIMEOUT,
        )
        assert link.status_code == 200, link.text
        download = local_stack.http.get(link.json()["url"], timeout=TIMEOUT)
        assert download.status_code == 200
        body = download.content
        assert hashlib.sha256(body).hexdigest() == entry["sha256"]
        assert len(body) == entry["bytes"]
        assert SECRET_MARKER.encode() not in body
        resource = entry["resource"]
        expected = [
            without_secret_fields(resource, i)
            if resource in TOP_LEVEL
            else {"parent": parameters, "item": without_secret_fields(resource, i)}
            for parameters, listing in resource_listings(org_data, resource)
            for i in listing.items()
        ]
        items = json.loads(body)["items"]
        assert sorted(json.dumps(x, sort_keys=True) for x in items) == sorted(
            json.dumps(x, sort_keys=True) for x in expected
        ), resource
    assert "apps" in manifest["removed_fields"]


def test_a_provider_failing_mid_backup_ends_in_a_failed_backup(
    local_stack: LocalStackClient,
) -> None:
    control = local_stack.running.sandbox_control()
    control.set_faults(path_prefix="/api/v1/apps", skip=2, error_500_probability=1.0)
    try:
        org, _, backup_id, _ = _start(local_stack)
        item = _wait_for_end(local_stack, org, backup_id)
    finally:
        control.clear_faults()
    assert item["status"]["S"] == "failed"
    assert item["failure_reason"]["S"] == "provider_unavailable"
    s3 = local_stack.client("s3")
    listed = s3.list_objects_v2(Bucket=_bucket(local_stack), Prefix=item["prefix"]["S"])
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert item["manifest_key"]["S"] not in keys  # nothing looks complete
