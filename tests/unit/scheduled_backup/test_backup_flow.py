"""A whole backup of a sandbox Okta org: every file equals what the sandbox serves minus the
secret fields, the manifest's hashes equal the files', pagination and rate limits respected."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from backup_jobs.okta import OKTA_RESOURCES

from strongroom.backups import Manifest
from strongroom_local.sandbox_okta import SECRET_MARKER
from tests.unit.scheduled_backup.conftest import BackupWorld


def _canonical(elements: list[object]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in elements)


def test_a_backup_stores_every_resource_without_secrets(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org)
    status, body = world.start(org, connection)
    assert status == 202, body
    backup_id = body["backup_id"]
    assert world.drain() == 1
    record = world.record(org, backup_id)
    assert record["status"] == "complete", record.get("failure_reason")
    manifest_bytes = world.read(record["manifest_key"])
    manifest = Manifest.model_validate_json(manifest_bytes)
    assert [f.resource for f in manifest.files] == sorted(spec.name for spec in OKTA_RESOURCES)
    for entry in manifest.files:
        stored = world.read(entry.key)
        assert hashlib.sha256(stored).hexdigest() == entry.sha256
        assert len(stored) == entry.bytes
        assert SECRET_MARKER.encode() not in stored
        document = json.loads(stored)
        assert document["resource"] == entry.resource
        assert len(document["items"]) == entry.items
        expected = world.expected(entry.resource)
        if entry.resource == "user_roles":
            assert _canonical(document["items"]) == _canonical(expected)
        else:
            assert document["items"] == expected, entry.resource
    assert manifest.removed_fields == world.expected_removed_fields()
    assert set(manifest.removed_fields) == {
        "apps",
        "app_users",
        "authenticators",
        "identity_providers",
    }
    counters = world.okta.snapshot()
    assert counters["rate_limited"] == 0
    events = world.services.audit.list_events(org, now=datetime.now(UTC)).events
    backup_events = [(e.action, e.details.get("backup_id")) for e in events if "backup" in e.action]
    assert backup_events == [("backup.complete", backup_id), ("backup.start", backup_id)]
