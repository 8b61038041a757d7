"""Backup listings and manifests through the handler: roles, other orgs, states, pagination."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from strongroom.backups import backup_listing, new_backup_id
from strongroom.tenancy import IndexKey
from tests.unit.signed_url_issuer.conftest import CONNECTION_ID, BackupWorld

NOT_FOUND = {"error": {"code": "not_found", "message": "Not found."}}


def test_a_member_lists_a_connections_backups_newest_first_in_pages(world: BackupWorld) -> None:
    org = world.new_org()
    start = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    planted = [world.plant(org, started_at=start + timedelta(days=day)) for day in range(5)]
    world.plant(org, connection_id="conn_" + "d" * 26, started_at=start + timedelta(days=9))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        reply = world.list(org, **query)
        assert reply.status == 200, reply.body
        assert len(reply.body["backups"]) <= 2
        seen += [backup["backup_id"] for backup in reply.body["backups"]]
        pages += 1
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert seen == [backup.backup_id for backup in reversed(planted)]
    assert pages >= 3
    first = world.list(org).body["backups"][0]
    # Metadata only: no object keys, no file list.
    assert first == {
        "backup_id": planted[-1].backup_id,
        "connection_id": CONNECTION_ID,
        "provider": "okta",
        "trigger": "schedule",
        "requested_by": "system:scheduler",
        "status": "complete",
        "suspect": False,
        "started_at": "2026-11-05T03:00:00Z",
        "finished_at": "2026-11-05T03:02:00Z",
        "failure_reason": None,
    }


def test_listing_a_connection_without_backups_or_of_another_org_is_empty(
    world: BackupWorld,
) -> None:
    org, other = world.new_org(), world.new_org("olivia")
    world.plant(other)
    reply = world.list(org)
    assert (reply.status, reply.body) == (200, {"backups": [], "next_cursor": None})


def test_a_cursor_of_another_listing_or_garbage_is_a_422(world: BackupWorld) -> None:
    org = world.new_org()
    for day in range(3):
        world.plant(org, started_at=datetime(2026, 11, 1 + day, tzinfo=UTC))
    cursor = world.list(org, limit=1).body["next_cursor"]
    assert cursor
    elsewhere = world.list(org, "conn_" + "e" * 26, cursor=cursor)
    assert elsewhere.status == 422
    assert elsewhere.body["error"]["code"] == "invalid_cursor"  # as every listing answers it
    garbage = world.list(org, cursor="not-a-cursor")
    assert (garbage.status, garbage.body["error"]["code"]) == (422, "invalid_cursor")
    assert world.list(org, limit=101).status == 422


def test_a_member_reads_a_complete_backups_manifest(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    reply = world.get(org, planted.backup_id, sub="carol")
    assert reply.status == 200, reply.body
    manifest = reply.body["manifest"]
    assert manifest["backup_id"] == planted.backup_id
    assert manifest["org_id"] == org
    assert manifest["removed_fields"] == {"users": ["credentials.password"]}
    assert [entry["resource"] for entry in manifest["files"]] == ["groups", "users"]

    for entry in manifest["files"]:
        body = planted.contents[entry["resource"]]
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
        assert entry["bytes"] == len(body)
        assert entry["items"] == 1


@pytest.mark.parametrize(
    ("status", "reason"), [("running", None), ("failed", "provider_unavailable")]
)
def test_a_running_or_failed_backup_answers_its_state_without_a_manifest(
    world: BackupWorld, status: str, reason: str | None
) -> None:
    org = world.new_org()
    planted = world.plant(org, status=status, failure_reason=reason)
    reply = world.get(org, planted.backup_id)
    assert reply.status == 200, reply.body
    assert reply.body["status"] == status
    assert reply.body["manifest"] is None
    assert reply.body["failure_reason"] == reason
    assert (reply.body["finished_at"] is None) == (status == "running")


def test_roles_and_strangers(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    for sub in ("alice", "bob", "carol"):
        assert world.get(org, planted.backup_id, sub=sub).status == 200
        assert world.list(org, sub=sub).status == 200
    for reply in (world.get(org, planted.backup_id, sub="mallory"), world.list(org, sub="mallory")):
        assert (reply.status, reply.body) == (404, NOT_FOUND)


def test_another_orgs_backup_answers_exactly_like_a_missing_one(world: BackupWorld) -> None:
    org, other = world.new_org(), world.new_org("olivia")
    theirs = world.plant(other)
    # alice asks for olivia's backup under her own org: it is not in alice's org.
    through_own_org = world.get(org, theirs.backup_id, sub="alice")
    missing = world.get(org, new_backup_id(), sub="alice")
    # ... and under olivia's org, of which she is not a member.
    through_their_org = world.get(other, theirs.backup_id, sub="alice")
    for reply in (through_own_org, missing, through_their_org):
        assert (reply.status, reply.body) == (404, NOT_FOUND)


def test_malformed_ids_are_refused_before_any_read(world: BackupWorld) -> None:
    org = world.new_org()
    reply = world.get(org, "bkp_NOT-VALID")
    assert reply.status == 422
    assert world.list(org, "conn_NOT_VALID").status == 422


def test_only_backup_items_of_the_listing_partition_are_listed(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    world.table.create(
        org,
        "NOTE",
        "n1",
        attributes={"text": "not a backup"},
        now=datetime.now(UTC),
        index=IndexKey(partition=backup_listing(CONNECTION_ID), sort="2027-01-01T00:00:00Z#n1"),
    )
    assert [b["backup_id"] for b in world.list(org).body["backups"]] == [planted.backup_id]
