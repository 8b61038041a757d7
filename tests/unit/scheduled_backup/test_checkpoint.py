"""A backup that runs out of time checkpoints, continues through the queue, and writes the same
bytes as one that never stopped."""

from __future__ import annotations

import json
from typing import Any

import pytest
from backup_jobs import worker

from strongroom.backups import Manifest
from strongroom_local.sandbox_okta import OrgSpec
from tests.unit.scheduled_backup.conftest import SMALL_PART, BackupWorld, Context

PART = SMALL_PART
pytestmark = pytest.mark.usefixtures("small_parts")


@pytest.fixture
def okta_spec() -> OrgSpec:
    # Three pages of users, groups with many members, apps with users.
    return OrgSpec(users=450, groups=5, apps=4, admins=3)


def _manifest(world: BackupWorld, org: str, backup_id: str) -> Manifest:
    record = world.record(org, backup_id)
    assert record["status"] == "complete", record.get("failure_reason")
    return Manifest.model_validate_json(world.read(record["manifest_key"]))


def _tiny_budget() -> Context:
    # No time at all: every invocation makes its one step of progress (a part or a file), then
    # checkpoints.
    return Context(lambda: 0)


def test_a_checkpointed_backup_writes_the_same_bytes(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    assert world.drain() == 1
    whole = _manifest(world, org, body["backup_id"])

    save = worker._save_checkpoint
    in_flight: list[int] = []

    def counted_save(services: Any, run: Any, budget: Any) -> None:
        in_flight.append(len(worker._checkpoints(run)))
        save(services, run, budget)

    monkeypatch.setattr(worker, "_save_checkpoint", counted_save)
    _, body = world.start(org, connection)
    invocations = world.drain(context=_tiny_budget)
    resumed = _manifest(world, org, body["backup_id"])

    assert invocations > len(whole.files)  # it did stop mid-resource, more than once
    assert max(in_flight) >= 2  # some stops left files of several lanes unfinished
    record = world.record(org, body["backup_id"])
    assert "checkpoints" not in record
    multi_part = [e for e in resumed.files if e.bytes > 2 * PART]
    assert multi_part, "some files span several parts"
    for before, after in zip(whole.files, resumed.files, strict=True):
        assert (after.resource, after.sha256, after.bytes, after.items) == (
            before.resource,
            before.sha256,
            before.bytes,
            before.items,
        )
        assert world.read(after.key) == world.read(before.key)
        json.loads(world.read(after.key))
