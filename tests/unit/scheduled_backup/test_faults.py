"""Faults mid-backup end in a failed backup or a successful retry, never a partial backup marked
complete; rate limits are never exceeded; pagination is followed; Object Lock holds."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from strongroom.backups import Manifest
from strongroom_local.sandbox_okta import OrgSpec, RateLimit, SandboxOkta
from tests.unit.scheduled_backup.conftest import BackupWorld, Context


def _started(world: BackupWorld) -> tuple[str, str]:
    """A new org's backup, started and queued: (org, backup id)."""
    org = world.new_org()
    connection = world.connect(org)
    status, body = world.start(org, connection)
    assert status == 202
    return org, str(body["backup_id"])


def _run(
    world: BackupWorld, context: Callable[[], Context] = Context
) -> tuple[str, dict[str, Any]]:
    org, backup_id = _started(world)
    world.drain(context=context)
    return org, world.record(org, backup_id)


def _audit_actions(world: BackupWorld, org: str) -> list[str]:
    page = world.services.audit.list_events(org, now=datetime.now(UTC))
    return [event.action for event in page.events]


def _assert_not_complete(record: dict) -> None:  # type: ignore[type-arg]
    assert record["status"] == "failed"
    assert record.get("manifest_sha256") is None
    assert "checkpoints" not in record


@pytest.fixture
def okta_spec() -> OrgSpec:
    return OrgSpec(users=450, groups=6, apps=5, admins=3)


def test_a_few_500s_and_truncated_bodies_are_retried_to_a_complete_backup(
    world: BackupWorld,
) -> None:
    world.okta.set_faults(error_500=2, truncate=2, skip=3)
    _org, record = _run(world)
    assert record["status"] == "complete", record.get("failure_reason")
    faults = world.okta.snapshot()["faults"]
    assert faults.get("error_500") == 2
    assert faults.get("truncate") == 2


def test_a_provider_that_keeps_failing_ends_in_a_failed_backup_after_the_queues_retries(
    world: BackupWorld,
) -> None:
    world.okta.set_faults(error_500_probability=1.0, skip=4, path_prefix="/api/v1/groups")
    org, record = _run(world)
    _assert_not_complete(record)
    assert record["failure_reason"] == "provider_unavailable"
    # Three receives (the queue's maxReceiveCount): two retried, the last one fails the backup.
    assert [len(i["batchItemFailures"]) for i in world.invocations] == [1, 1, 0]
    actions = _audit_actions(world, org)
    assert "backup.fail" in actions
    assert "backup.complete" not in actions
    # The connection is free again: a new backup can start (and completes once Okta recovers).
    world.okta.clear_faults()
    connection = record["connection_id"]
    status, body = world.start(org, connection)
    assert status == 202
    world.drain()
    assert world.record(org, body["backup_id"])["status"] == "complete"


def test_a_refused_credential_fails_at_once(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org, token="not-the-sandbox-token")
    _, body = world.start(org, connection)
    assert world.drain() == 1  # no retry: a wrong token does not get better
    record = world.record(org, body["backup_id"])
    _assert_not_complete(record)
    assert record["failure_reason"] == "provider_unauthorized"


def test_rate_limits_are_waited_for_never_exceeded_and_pagination_is_followed(
    world: BackupWorld,
) -> None:
    limits = {
        "/api/v1/users": RateLimit(2, window_seconds=1),
        "/api/v1/groups": RateLimit(5, window_seconds=1),
        "/api/v1/apps": RateLimit(4, window_seconds=1),
    }
    world.okta.set_rate_limits(limits)
    world.okta.reset_counters()
    _org, record = _run(world)
    assert record["status"] == "complete", record.get("failure_reason")
    snapshot = world.okta.snapshot()
    assert snapshot["rate_limited"] == 0
    for bucket, limit in limits.items():
        assert snapshot["rate_limits"][bucket]["peak_window_usage"] <= limit.limit
    assert snapshot["by_bucket"]["/api/v1/groups"] > 5  # so it had to wait for resets
    # Every page of users was read, through the next links.
    assert snapshot["by_route"]["/api/v1/users"] == math.ceil(world.okta.spec.users / 200)
    users = json.loads(world.read(record["files"]["users"]["key"]))["items"]
    assert len(users) == world.okta.spec.users


def test_a_lane_that_fails_wakes_a_lane_waiting_for_its_window(world: BackupWorld) -> None:
    from backup_jobs import worker
    from backup_jobs.models import BackupJob

    # The groups lane spends its bucket's one request, then waits for a window of a day; the
    # apps lane meets nothing but 500s. The run must end on the apps lane's failure, not a day on.
    world.okta.set_rate_limits({"/api/v1/groups": RateLimit(1, window_seconds=86_400)})
    world.okta.set_faults(error_500_probability=1.0, path_prefix="/api/v1/apps")
    world.okta.reset_counters()
    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    job = BackupJob(org_id=org, connection_id=connection, backup_id=body["backup_id"])
    outcomes: list[worker.Outcome] = []

    def last_attempt() -> None:
        budget = worker.Budget(time_left=lambda: 900.0)
        outcomes.append(
            worker.run_job(world.services, job, budget=budget, receive_count=3, request_id="r")
        )

    attempt = threading.Thread(target=last_attempt, daemon=True)
    attempt.start()
    attempt.join(120)
    assert not attempt.is_alive(), "a lane slept through another lane's failure"
    assert outcomes == [worker.Outcome("failed", reason="provider_unavailable")]
    snapshot = world.okta.snapshot()
    assert snapshot["by_bucket"]["/api/v1/groups"] == 1  # it did wait: the next was not sent
    assert snapshot["rate_limited"] == 0
    _assert_not_complete(world.record(org, body["backup_id"]))


def test_a_wait_the_invocation_cannot_afford_ends_in_a_checkpoint(world: BackupWorld) -> None:
    # A window whose end (the 429's reset) is minutes away, whatever the time of day: the
    # boundaries of these two lengths are hours apart.
    window = next(w for w in (86_400, 86_399) if w - time.time() % w > 300)
    world.okta.set_rate_limits({"/api/v1/apps": RateLimit(10_000, window_seconds=window)})
    # The apps listing passes, then one 429 whose reset (the window's end) is far off: the
    # client would wait its longest (65 s), and the first invocation has only 121 s left.
    world.okta.set_faults(storm_429=1, skip=1, path_prefix="/api/v1/apps")
    contexts = iter([Context(lambda: 121_000)])
    _org, record = _run(world, context=lambda: next(contexts, None) or Context())
    assert record["status"] == "complete", record.get("failure_reason")
    # The first invocation checkpointed rather than sleep into its reserve; nothing failed.
    assert world.invocations == [{"batchItemFailures": []}] * 2
    assert world.okta.snapshot()["rate_limited"] == 1


def test_honest_429_storms_are_waited_out(world: BackupWorld) -> None:
    world.okta.set_rate_limits({"/api/v1/users": RateLimit(600, window_seconds=1)})
    world.okta.set_faults(storm_429=2, skip=1, path_prefix="/api/v1/users")
    _org, record = _run(world)
    assert record["status"] == "complete", record.get("failure_reason")
    assert world.okta.snapshot()["rate_limited"] == 2


def test_object_lock_refuses_deleting_and_keeps_every_version(world: BackupWorld) -> None:
    org, record = _run(world)
    assert record["status"] == "complete"
    s3 = world.services.s3
    bucket = world.settings.backup_bucket
    manifest = Manifest.model_validate_json(world.read(record["manifest_key"]))
    files = dict(record["files"])
    keys = [(e.key, files[e.resource]["version_id"]) for e in manifest.files]
    keys.append((record["manifest_key"], record["manifest_version_id"]))
    for key, version in keys:
        head = s3.head_object(Bucket=bucket, Key=key, VersionId=version)
        assert head["ObjectLockMode"] == "COMPLIANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=89)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == world.services.keyrings.kms_key_arn(org)
        original = world.read(key, version)
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        # An overwrite is a new version on top: the locked one stays, byte for byte.
        s3.put_object(Bucket=bucket, Key=key, Body=b"tampered")
        assert world.read(key, version) == original
        with pytest.raises(ClientError):
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version)
    entry = manifest.files[0]
    stored = world.read(entry.key, files[entry.resource]["version_id"])
    assert hashlib.sha256(stored).hexdigest() == entry.sha256


def test_a_sharp_drop_in_items_marks_the_backup_suspect(
    world: BackupWorld, okta: SandboxOkta
) -> None:
    org, first = _run(world)
    assert first["status"] == "complete"
    assert first["suspect"] is False
    # The same org, now with a fraction of its users, on the same address.
    port, token, control = okta.port, okta.api_token, okta.control_token
    okta.stop()
    smaller = SandboxOkta(
        OrgSpec(users=40, groups=6, apps=5, admins=3),
        port=port,
        api_token=token,
        control_token=control,
    )
    with smaller:
        world.okta = smaller
        _, body = world.start(org, first["connection_id"])
        world.drain()
    second = world.record(org, body["backup_id"])
    assert second["status"] == "complete"
    assert second["suspect"] is True
    assert "users" in second["suspect_resources"]
    assert ("SuspectBackups", 1) in world.metrics.emitted


def test_a_job_that_crashes_every_time_goes_to_the_dead_letter_queue(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_jobs import worker

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the worker died")

    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    monkeypatch.setattr(worker, "run_job", crash)
    assert world.drain() == 3  # the queue's maxReceiveCount; the next receive moves it
    assert world.dead_letters() == 1
    assert all(len(i["batchItemFailures"]) == 1 for i in world.invocations)
    assert world.record(org, body["backup_id"])["status"] == "running"  # never marked complete


def test_an_audit_outage_as_a_backup_completes_leaves_it_complete_and_audited_by_the_sweep(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, backup_id = _started(world)
    down: dict[str, Any] = {"s3": "backup.complete", "marks": False}
    world.audit_outage(down)
    assert world.drain() == 1  # one run: the outage is not the job's failure
    down["s3"] = False
    assert world.record(org, backup_id)["status"] == "complete"
    assert "backup.complete" not in _audit_actions(world, org)
    assert world.sweep_later(monkeypatch)["audit_sweep"]["appended"] == 1
    assert _audit_actions(world, org).count("backup.complete") == 1


def test_an_audit_bucket_outage_does_not_stop_a_backup_and_its_credential_use_is_audited(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, backup_id = _started(world)
    down: dict[str, Any] = {"s3": True, "marks": False}
    world.audit_outage(down)
    assert world.drain() == 1
    down["s3"] = False
    assert world.record(org, backup_id)["status"] == "complete"
    assert "credential.use" not in _audit_actions(world, org)
    world.sweep_later(monkeypatch)
    actions = _audit_actions(world, org)
    assert actions.count("credential.use") == 1
    assert actions.count("backup.complete") == 1


def test_a_credential_use_that_cannot_be_recorded_is_not_made(world: BackupWorld) -> None:
    org, backup_id = _started(world)
    down: dict[str, Any] = {"s3": False, "marks": True}
    world.audit_outage(down)
    requests_before = world.okta.snapshot()["requests"]
    world.drain()
    # The token never reached the provider; the job was retried, then failed.
    assert world.okta.snapshot()["requests"] == requests_before
    record = world.record(org, backup_id)
    assert record["status"] != "complete"


def test_next_links_that_go_round_in_a_cycle_fail_the_backup_at_once(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_jobs import worker
    from backup_jobs.exceptions import ProviderRefused
    from backup_jobs.okta import Answer

    fetch = worker.OktaReader.fetch
    users: list[str] = []

    def cycling(self: Any, url: str, spec: Any) -> Answer:
        answer = fetch(self, url, spec)
        if spec.name != "users":
            return answer
        users.append(url)
        if len(users) > 30:  # unrefused, the cycle would go on for ever: stop it here
            raise ProviderRefused("the users listing went round too often")
        if answer.next_url is not None and url != users[0]:
            return Answer(answer.body, users[0])  # the second page leads back to the first
        return answer

    monkeypatch.setattr(worker.OktaReader, "fetch", cycling)
    org, record = _run(world)
    _assert_not_complete(record)
    assert record["failure_reason"] == "provider_response_invalid"
    assert world.invocations == [{"batchItemFailures": []}]  # not retried: it will not get better
    assert len(users) == 3  # the first page, the second, the first again: its link is refused
    actions = _audit_actions(world, org)
    assert "backup.fail" in actions
    assert "backup.complete" not in actions
    uploads = world.services.s3.list_multipart_uploads(Bucket=world.settings.backup_bucket)
    assert not uploads.get("Uploads")  # the unfinished files' uploads were aborted


def test_a_connection_deleted_while_its_backup_runs_fails_it_with_no_manifest(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_jobs import worker
    from backup_jobs.okta import Answer

    org, backup_id = _started(world)
    connection = str(world.record(org, backup_id)["connection_id"])
    fetch = worker.OktaReader.fetch
    deleted = threading.Event()
    deleting = threading.Lock()

    def deleted_midway(self: Any, url: str, spec: Any) -> Answer:
        answer = fetch(self, url, spec)
        with deleting:
            if spec.name == "apps" and not deleted.is_set():
                world.delete_connection(org, connection)  # by an admin, as the run reads on
                deleted.set()
        return answer

    monkeypatch.setattr(worker.OktaReader, "fetch", deleted_midway)
    assert world.drain() == 1  # one invocation: its reading ends after the deletion
    assert deleted.is_set()
    record = world.record(org, backup_id)
    _assert_not_complete(record)
    assert record["failure_reason"] == "connection_deleted"
    manifest = world.services.s3.list_objects_v2(
        Bucket=world.settings.backup_bucket, Prefix=record["manifest_key"]
    )
    assert not manifest.get("Contents")  # no manifest that would make its files look whole
    actions = _audit_actions(world, org)
    assert "backup.fail" in actions
    assert "backup.complete" not in actions


def test_a_connection_deleted_mid_step_stops_being_used_within_a_minute(
    world: BackupWorld,
) -> None:
    """An API token never expires, so it was read once per step (up to 15 minutes of reading):
    a connection deleted meanwhile kept being used until the step ended. It is looked up again
    every _CONNECTION_RECHECK_SECONDS (one read, no decryption and no audited use)."""
    from backup_jobs import exceptions as errors
    from backup_jobs import worker
    from backup_jobs.models import BackupJob

    org, backup_id = _started(world)
    connection = str(world.record(org, backup_id)["connection_id"])
    job = BackupJob(org_id=org, connection_id=connection, backup_id=backup_id)
    moment = [datetime.now(UTC)]
    budget = worker.Budget(time_left=lambda: 900.0, clock=lambda: moment[0])
    credential = worker._Credential(world.services, job, "req-1", budget)
    first = credential.authorization()
    moment[0] += timedelta(seconds=worker._CONNECTION_RECHECK_SECONDS - 1)
    assert credential.authorization() == first  # still there, not looked up again
    world.delete_connection(org, connection)
    assert credential.authorization() == first  # within the minute: not yet seen
    moment[0] += timedelta(seconds=1)
    with pytest.raises(errors.ConnectionGone):
        credential.authorization()
