"""`strongroom audit-verify` against the running stack: an untouched chain verifies, and an event
overwritten in the audit bucket (a new version, as Object Lock still allows) is reported."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.e2e.conftest import LocalStackClient

pytestmark = pytest.mark.e2e


def test_audit_verify_reports_an_untouched_chain_ok_and_an_overwritten_event(
    local_stack: LocalStackClient,
) -> None:
    owner, member = f"alice-{uuid.uuid4().hex[:8]}", f"bob-{uuid.uuid4().hex[:8]}"
    response = local_stack.http.post(
        local_stack.url("/orgs"), json={"name": "Acme"}, headers=local_stack.auth(owner), timeout=30
    )
    assert response.status_code == 201, response.text
    org_id = response.json()["org_id"]
    response = local_stack.http.put(
        local_stack.url(f"/orgs/{org_id}/members/{member}"),
        json={"role": "member"},
        headers=local_stack.auth(owner),
        timeout=30,
    )
    assert response.status_code == 200, response.text

    status, report = local_stack.cli("audit-verify", org_id)
    assert status == 0, report
    assert isinstance(report, dict)
    assert (report["ok"], report["problems"]) == (True, [])
    assert report["head_seq"] == report["checked"] >= 2

    s3 = local_stack.client("s3")
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "auditbucket" in b["Name"]]
    key = f"audit/{org_id}/{1:012d}.json"
    event = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    event["actor"] = "someone-else"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(event).encode())

    status, report = local_stack.cli("audit-verify", org_id)
    assert status == 1
    assert isinstance(report, dict)
    assert report["ok"] is False
    assert {(p["kind"], p["seq"]) for p in report["problems"]} >= {
        ("overwritten", 1),
        ("edited", 1),
    }

    status, message = local_stack.cli("audit-verify", "org_not-an-org")
    assert status == 2
    assert "not an org id" in str(message)
