"""Every sample event under events/scheduled_backup/ drives its handler: the route starts the
sample connection's backup, the schedule dispatches, the queue's job runs it, and the
dead-lettered job fails a backup that no attempt could finish."""

from __future__ import annotations

import json
from typing import Any

import pytest

from strongroom_local.routes import http_routes
from strongroom_local.template import load_template
from tests.support.events import EVENTS_DIR, load_event
from tests.unit.scheduled_backup.conftest import BackupWorld, Context

SAMPLES = EVENTS_DIR / "scheduled_backup"


def test_there_is_a_sample_event_for_every_route_and_source() -> None:
    routes = {
        r.route_key
        for r in http_routes(load_template())
        if r.function.logical_id == "BackupDispatcherFunction"
    }
    assert {load_event("scheduled_backup/start_backup")["routeKey"]} == routes
    assert {p.stem for p in SAMPLES.glob("*.json")} == {
        "start_backup",
        "dispatch",
        "backup_job",
        "dead_letter_job",
    }


def _use_sample_ids(monkeypatch: pytest.MonkeyPatch, sample: dict[str, Any]) -> None:
    """The org, connection and backup get the ids the sample events name."""
    from backup_jobs import runs
    from credential_store import connections, orgs

    monkeypatch.setattr(orgs, "new_org_id", lambda: sample["org_id"])
    monkeypatch.setattr(connections, "new_connection_id", lambda: sample["connection_id"])
    monkeypatch.setattr(runs, "new_backup_id", lambda: sample["backup_id"])


def test_sample_events_replay(world: BackupWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    route = load_event("scheduled_backup/start_backup")
    job = load_event("scheduled_backup/backup_job")
    sample = json.loads(job["Records"][0]["body"])
    _use_sample_ids(monkeypatch, sample)
    org = world.new_org()
    assert world.connect(org) == sample["connection_id"]
    route["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "bob"
    response = world.backups.lambda_handler(route, Context())
    assert response["statusCode"] == 202
    assert json.loads(response["body"]) == {"backup_id": sample["backup_id"]}
    # The queued job is the sample job; run the sample record itself.
    queued = world.sqs.receive_message(QueueUrl=world.settings.backup_queue_url)["Messages"]
    assert json.loads(queued[0]["Body"]) == sample
    assert world.backups.worker_handler(job, Context()) == {"batchItemFailures": []}
    assert world.record(org, sample["backup_id"])["status"] == "complete"
    report = world.backups.lambda_handler(load_event("scheduled_backup/dispatch"), Context())
    assert report["started"] == 0  # nothing due yet: the connection was created just now
    # The same job dead-lettered later (a duplicate) leaves the complete backup alone.
    dead = load_event("scheduled_backup/dead_letter_job")
    assert world.backups.dead_letter_handler(dead, Context()) == {"batchItemFailures": []}
    assert world.record(org, sample["backup_id"])["status"] == "complete"


def test_the_dead_letter_sample_fails_the_backup_no_attempt_finished(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = load_event("scheduled_backup/dead_letter_job")
    sample = json.loads(dead["Records"][0]["body"])
    _use_sample_ids(monkeypatch, sample)
    org = world.new_org()
    world.connect(org)
    assert world.start(org, sample["connection_id"])[0] == 202
    assert world.backups.dead_letter_handler(dead, Context()) == {"batchItemFailures": []}
    record = world.record(org, sample["backup_id"])
    assert record["status"] == "failed"
    assert record["failure_reason"] == "worker_lost"
