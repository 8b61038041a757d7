"""Backups through the real local stack over HTTP: list, read the manifest, download by link.

The backup itself is planted in the stack's emulated AWS as scheduled_backup writes one (files
SSE-KMS under the org's key, manifest last, then the BACKUP record with its listing entry), so
this exercises signed_url_issuer on its own. moto serves presigned URLs without checking their
signatures: that the signature is right is tested in tests/unit/signed_url_issuer (recomputed
with botocore's signer); here the URL's target, lifetime and bytes are what is checked.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from strongroom.backups import (
    BACKUP_KIND,
    MANIFEST_FILE,
    backup_index,
    backup_prefix,
    new_backup_id,
    object_key,
)
from strongroom.tenancy import TenantTable
from tests.e2e.conftest import LocalStackClient, call, new_user

pytestmark = pytest.mark.e2e
TIMEOUT = 30


def _one(names: list[str], suffix: str) -> str:
    [name] = [name for name in names if name.endswith(suffix)]
    return name


def _plant_complete_backup(
    stack: LocalStackClient, org: str, connection_id: str, files: dict[str, bytes]
) -> str:
    s3, kms, dynamodb = stack.client("s3"), stack.client("kms"), stack.client("dynamodb")
    bucket = _one([b["Name"] for b in s3.list_buckets()["Buckets"]], "-backupbucket")
    table_name = _one(dynamodb.list_tables()["TableNames"], "-Table")
    alias = _one([a["AliasName"] for a in kms.list_aliases()["Aliases"]], f"/org/{org}")
    started_at = datetime.now(UTC).replace(microsecond=0)
    backup_id = new_backup_id()
    prefix = backup_prefix(org, connection_id, started_at, backup_id)
    entries: dict[str, dict[str, Any]] = {}
    versions: dict[str, str] = {}  # in the record only, as the worker keeps them
    for resource, body in files.items():
        key = object_key(prefix, resource)
        written = s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=alias,
        )
        versions[resource] = written["VersionId"]
        entries[resource] = {
            "key": key,
            "sha256": hashlib.sha256(body).hexdigest(),
            "bytes": len(body),
            "items": len(json.loads(body)),
        }
    stamp = started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {
        "schema_version": 1,
        "backup_id": backup_id,
        "org_id": org,
        "connection_id": connection_id,
        "provider": "okta",
        "started_at": stamp,
        "finished_at": stamp,
        "files": [{"resource": r, **entry} for r, entry in sorted(entries.items())],
        "removed_fields": {},
    }
    manifest_written = s3.put_object(
        Bucket=bucket,
        Key=prefix + MANIFEST_FILE,
        Body=json.dumps(manifest).encode(),
        ContentType="application/json",
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=alias,
    )
    TenantTable(dynamodb=dynamodb, table_name=table_name).create(
        org,
        BACKUP_KIND,
        backup_id,
        attributes={
            "connection_id": connection_id,
            "provider": "okta",
            "trigger": "on_demand",
            "requested_by": "e2e",
            "status": "complete",
            "suspect": False,
            "started_at": stamp,
            "finished_at": stamp,
            "prefix": prefix,
            "manifest_key": prefix + MANIFEST_FILE,
            "manifest_version_id": manifest_written["VersionId"],
            "files": {r: {**entry, "version_id": versions[r]} for r, entry in entries.items()},
            "removed_fields": {},
            "schema_version": 1,
        },
        now=started_at,
        index=backup_index(connection_id, started_at, backup_id),
    )
    return backup_id


def test_list_read_and_download_a_backup_over_http(local_stack: LocalStackClient) -> None:
    alice, carol, mallory = new_user("alice"), new_user("carol"), new_user("mallory")
    status, body = call(local_stack, "POST", "/orgs", alice, json={"name": "Acme"})
    assert status == 201, body
    org = body["org_id"]
    assert (
        call(local_stack, "PUT", f"/orgs/{org}/members/{carol}", alice, json={"role": "member"})[0]
        == 200
    )
    connection = {
        "name": "Acme Okta",
        "provider": "okta",
        "domain": "acme.okta.com",
        "scopes": ["okta.users.read"],
        "auth": {"method": "api_token", "token": "e2e-" + uuid.uuid4().hex},
        "schedule": "rate(1 day)",
    }
    status, body = call(local_stack, "POST", f"/orgs/{org}/connections", alice, json=connection)
    assert status == 201, body
    connection_id = body["connection_id"]
    files = {
        "users": json.dumps([{"id": f"00u{i}", "status": "ACTIVE"} for i in range(50)]).encode(),
        "groups": json.dumps([{"id": "00g1", "profile": {"name": "Everyone"}}]).encode(),
    }
    backup_id = _plant_complete_backup(local_stack, org, connection_id, files)

    status, body = call(
        local_stack, "GET", f"/orgs/{org}/connections/{connection_id}/backups", carol
    )
    assert status == 200, body
    assert [(b["backup_id"], b["status"]) for b in body["backups"]] == [(backup_id, "complete")]

    status, detail = call(local_stack, "GET", f"/orgs/{org}/backups/{backup_id}", carol)
    assert status == 200, detail
    manifest = {entry["resource"]: entry for entry in detail["manifest"]["files"]}
    assert set(manifest) == {"users", "groups"}

    issue = f"/orgs/{org}/backups/{backup_id}/download-url"
    assert call(local_stack, "POST", issue, carol, json={"resource": "users"})[0] == 403
    assert call(local_stack, "POST", issue, mallory, json={"resource": "users"})[0] == 404
    assert call(local_stack, "POST", issue, alice, json={"resource": "apps"})[0] == 422
    for resource, entry in manifest.items():
        status, link = call(local_stack, "POST", issue, alice, json={"resource": resource})
        assert status == 200, link
        assert link["expires_in"] == 900
        query = {k: v[0] for k, v in parse_qs(urlsplit(link["url"]).query).items()}
        assert query["X-Amz-Expires"] == "900"
        assert query["response-content-disposition"] == (
            f'attachment; filename="{backup_id}-{resource}.json"'
        )
        assert link["url"].startswith(local_stack.aws_url + "/")
        # Fetched as a browser would: no AWS credentials, only what the URL carries.
        download = local_stack.http.get(link["url"], timeout=TIMEOUT)
        assert download.status_code == 200
        assert download.content == files[resource]
        assert hashlib.sha256(download.content).hexdigest() == entry["sha256"]
        assert len(download.content) == entry["bytes"]

    status, link = call(local_stack, "POST", issue, alice, data=b"")
    assert status == 200, link
    downloaded = local_stack.http.get(link["url"], timeout=TIMEOUT).json()
    assert downloaded["backup_id"] == backup_id
    assert downloaded["files"] == detail["manifest"]["files"]
