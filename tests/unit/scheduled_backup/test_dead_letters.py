"""A backup never stays "running" for ever: a job that dies on every attempt is dead-lettered and
the dead-letter function fails its backup; a defect fails it on the last attempt; only the one
message that carries a backup on can do either."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from backup_jobs import worker
from backup_jobs.models import BackupJob
from botocore.exceptions import ClientError

from strongroom_local.sandbox_okta import OrgSpec
from tests.unit.scheduled_backup.conftest import SMALL_PART, BackupWorld, Context, sqs_record

PART = SMALL_PART
pytestmark = pytest.mark.usefixtures("small_parts")


@pytest.fixture
def okta_spec() -> OrgSpec:
    return OrgSpec(users=450, groups=5, apps=4, admins=3)


def _start(world: BackupWorld) -> tuple[str, str, str]:
    org = world.new_org()
    connection = world.connect(org)
    status, body = world.start(org, connection)
    assert status == 202
    return org, connection, str(body["backup_id"])


def _one_step(world: BackupWorld) -> dict[str, Any]:
    """One worker invocation with no time to spare: one part, then a checkpoint."""
    queue = world.settings.backup_queue_url
    (message,) = world.sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
    result: dict[str, Any] = world.backups.worker_handler(
        {"Records": [sqs_record(message)]}, Context(lambda: 0)
    )
    assert result == {"batchItemFailures": []}
    world.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return json.loads(message["Body"])  # type: ignore[no-any-return]


def _open_uploads(world: BackupWorld) -> set[str]:
    listing = world.services.s3.list_multipart_uploads(Bucket=world.settings.backup_bucket)
    return {upload["UploadId"] for upload in listing.get("Uploads", [])}


def _audit_actions(world: BackupWorld, org: str) -> list[str]:
    page = world.services.audit.list_events(org, now=datetime.now(UTC))
    return [event.action for event in page.events]


def test_a_job_lost_on_every_attempt_is_failed_by_the_dead_letter_function(
    world: BackupWorld,
) -> None:
    org, connection, backup_id = _start(world)
    _one_step(world)
    uploads = {c["upload_id"] for c in world.record(org, backup_id)["checkpoints"]}
    assert uploads
    assert uploads <= _open_uploads(world)

    world.lose_attempts(3)  # the continuation's every attempt dies without an answer
    assert world.dead_letters() == 1
    assert world.drain_dead_letters() == [{"batchItemFailures": []}]

    record = world.record(org, backup_id)
    assert record["status"] == "failed"
    assert record["failure_reason"] == "worker_lost"
    assert "checkpoints" not in record
    assert record.get("manifest_sha256") is None
    assert not uploads & _open_uploads(world)
    assert _audit_actions(world, org).count("backup.fail") == 1
    assert ("LostBackupJobs", 1) in world.metrics.emitted
    assert world.dead_letters() == 0
    # The connection is free: the next backup starts and completes.
    status, body = world.start(org, connection)
    assert status == 202
    assert body["backup_id"] != backup_id
    world.drain()
    assert world.record(org, body["backup_id"])["status"] == "complete"


def test_a_message_that_a_continuation_replaced_neither_runs_nor_fails_the_backup(
    world: BackupWorld,
) -> None:
    org, _connection, backup_id = _start(world)
    first = _one_step(world)
    assert first["continuation"] == 0
    before = world.record(org, backup_id)
    assert before["continuation"] == 1
    replaced = {"Records": [{"messageId": "m-replaced", "body": json.dumps(first)}]}

    # Dead-lettered, or delivered again to the worker: either way it is skipped.
    assert world.backups.dead_letter_handler(replaced, Context()) == {"batchItemFailures": []}
    assert world.backups.worker_handler(replaced, Context()) == {"batchItemFailures": []}
    assert world.record(org, backup_id) == before

    world.drain()
    assert world.record(org, backup_id)["status"] == "complete"
    assert world.metrics.emitted.count(("LostBackupJobs", 1)) == 0


def test_a_defect_on_every_attempt_fails_the_backup_on_the_last_one(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a defect")

    monkeypatch.setattr(worker.OktaReader, "fetch", broken)
    org, _connection, backup_id = _start(world)
    world.drain()
    assert [len(i["batchItemFailures"]) for i in world.invocations] == [1, 1, 0]
    record = world.record(org, backup_id)
    assert record["status"] == "failed"
    assert record["failure_reason"] == "internal_error"
    assert world.dead_letters() == 0
    assert "backup.fail" in _audit_actions(world, org)


def test_aws_trouble_in_the_dead_letter_function_is_retried_and_changes_nothing(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _connection, backup_id = _start(world)
    world.lose_attempts(3)
    before = world.record(org, backup_id)

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "InternalServerError"}}, "TransactWriteItems")

    with monkeypatch.context() as patch:
        # The record's final state is written in a transaction with its audit entry.
        patch.setattr(world.services.table, "transact", unavailable)
        (result,) = world.drain_dead_letters()
        assert len(result["batchItemFailures"]) == 1
    assert world.record(org, backup_id) == before

    # The dead-letter queue delivers it again: this time it goes through.
    assert world.drain_dead_letters() == [{"batchItemFailures": []}]
    assert world.record(org, backup_id)["failure_reason"] == "worker_lost"


def test_a_continuation_that_cannot_be_queued_leaves_the_backup_with_its_message(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = worker.enqueue
    refusals = []

    def refuse_once(services: Any, job: Any) -> None:
        if not refusals:
            refusals.append(job)
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessage")
        sent(services, job)

    monkeypatch.setattr(worker, "enqueue", refuse_once)
    org, _connection, backup_id = _start(world)
    world.drain(context=lambda: Context(lambda: 0))
    assert [job.continuation for job in refusals] == [1]
    # The first message was retried (its checkpoint kept) and carried the backup on.
    assert len(world.invocations[0]["batchItemFailures"]) == 1
    record = world.record(org, backup_id)
    assert record["status"] == "complete", record.get("failure_reason")
    assert world.dead_letters() == 0


def _versions(world: BackupWorld, prefix: str) -> dict[str, list[str]]:
    """Every stored version under `prefix`, by key."""
    bucket = world.settings.backup_bucket
    listing = world.services.s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    versions: dict[str, list[str]] = {}
    for version in listing.get("Versions", []):
        versions.setdefault(version["Key"], []).append(version["VersionId"])
    return versions


def test_a_second_delivery_of_a_running_step_does_nothing_and_is_dropped(
    world: BackupWorld, atomic_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _connection, backup_id = _start(world)
    queue = world.settings.backup_queue_url
    (message,) = world.sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
    first = sqs_record(message)
    # A SendMessage retried after a read timeout: the same job in a second message, delivered
    # (for the first time) while the first one's invocation reads the provider.
    second = {**first, "messageId": "m-second"}
    fetch = worker.OktaReader.fetch
    delivered: list[dict[str, Any]] = []
    once = threading.Lock()

    def fetch_and_deliver_again(self: Any, url: str, spec: Any) -> Any:
        if once.acquire(blocking=False):
            before = world.record(org, backup_id)
            result = world.backups.worker_handler({"Records": [second]}, Context())
            delivered.append({"result": result, "changed": world.record(org, backup_id) != before})
        return fetch(self, url, spec)

    monkeypatch.setattr(worker.OktaReader, "fetch", fetch_and_deliver_again)
    assert world.backups.worker_handler({"Records": [first]}, Context()) == {
        "batchItemFailures": []
    }
    # The second did nothing, and its message is deleted rather than retried.
    assert delivered == [{"result": {"batchItemFailures": []}, "changed": False}]
    record = world.record(org, backup_id)
    assert record["status"] == "complete"
    # Every file and the manifest were written once: the version the record names, the only one.
    versions = _versions(world, record["prefix"])
    assert versions[record["manifest_key"]] == [record["manifest_version_id"]]
    for entry in record["files"].values():
        assert versions[entry["key"]] == [entry["version_id"]]
    assert len(versions) == len(record["files"]) + 1


class _Died(BaseException):
    """The invocation ends mid-step as Lambda ends one that times out or runs out of memory:
    nothing more of the worker runs, nothing is given up."""


def test_a_step_whose_invocation_died_is_taken_over_once_its_claim_runs_out(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection, backup_id = _start(world)
    job = BackupJob(org_id=org, connection_id=connection, backup_id=backup_id)
    visibility = world.sqs.get_queue_attributes(
        QueueUrl=world.settings.backup_queue_url, AttributeNames=["VisibilityTimeout"]
    )["Attributes"]["VisibilityTimeout"]
    started = datetime.now(UTC)

    def attempt(receive_count: int, at: datetime) -> worker.Outcome:
        budget = worker.Budget(time_left=lambda: 900.0, clock=lambda: at)
        return worker.run_job(
            world.services, job, budget=budget, receive_count=receive_count, request_id="r"
        )

    def die(*_args: Any, **_kwargs: Any) -> Any:
        raise _Died

    with monkeypatch.context() as patch:
        patch.setattr(worker.OktaReader, "fetch", die)
        with pytest.raises(_Died):
            attempt(1, started)
    held = world.record(org, backup_id)
    # While its claim stands, a second message of the step is dropped, and this one delivered
    # again goes back to the queue (it may be the only one left to carry the backup on).
    meanwhile = started + timedelta(minutes=10)
    assert attempt(1, meanwhile) == worker.Outcome("skipped")
    with pytest.raises(worker.StepHeld):
        attempt(2, meanwhile)
    assert world.record(org, backup_id) == held
    # The queue brings the message back once its visibility timeout is over: by then the
    # claim has run out, and the retry resumes the backup.
    redelivered = started + timedelta(seconds=int(visibility))
    assert attempt(2, redelivered) == worker.Outcome("complete")
    assert world.record(org, backup_id)["status"] == "complete"


def test_a_redelivery_that_loses_the_claim_to_a_step_held_since_it_read_goes_back_to_the_queue(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection, backup_id = _start(world)
    job = BackupJob(org_id=org, connection_id=connection, backup_id=backup_id)
    now = datetime.now(UTC)
    budget = worker.Budget(time_left=lambda: 900.0, clock=lambda: now)
    read = worker._running
    claimed: list[Any] = []

    def read_then_lose_the_race(services: Any, job: BackupJob, **kwargs: Any) -> Any:
        run = read(services, job, **kwargs)  # the step as this delivery read it: not held
        monkeypatch.setattr(worker, "_running", read)
        # The same message, handed out twice, is claimed by the other delivery meanwhile.
        claimed.append(
            worker._claim(services, job, request_id="other", budget=budget, receive_count=1)
        )
        return run

    monkeypatch.setattr(worker, "_running", read_then_lose_the_race)
    # Delivered again, it may be the holder's own message: kept (StepHeld), never deleted.
    with pytest.raises(worker.StepHeld):
        worker.run_job(world.services, job, budget=budget, receive_count=2, request_id="r")
    (holder,) = claimed
    assert holder is not None
    # A first delivery losing the same race is a second message of the step: dropped.
    monkeypatch.setattr(worker, "_running", read_then_lose_the_race)
    worker._give_up_claim(world.services, holder, now)
    claimed.clear()
    outcome = worker.run_job(world.services, job, budget=budget, receive_count=1, request_id="r")
    assert outcome == worker.Outcome("skipped")


def test_a_redelivery_that_loses_the_claim_to_one_given_up_since_claims_the_step(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection, backup_id = _start(world)
    job = BackupJob(org_id=org, connection_id=connection, backup_id=backup_id)
    now = datetime.now(UTC)
    budget = worker.Budget(time_left=lambda: 900.0, clock=lambda: now)
    read = worker._running

    def read_then_lose_to_a_claim_given_up(services: Any, job: BackupJob, **kwargs: Any) -> Any:
        run = read(services, job, **kwargs)
        monkeypatch.setattr(worker, "_running", read)
        # The other delivery of the message claims the step, then fails transiently before any
        # progress and gives the claim up: the step is free, and still needs this message.
        held = worker._claim(services, job, request_id="other", budget=budget, receive_count=1)
        assert held is not None
        worker._save_for_retry(services, held, budget)
        return run

    monkeypatch.setattr(worker, "_running", read_then_lose_to_a_claim_given_up)
    outcome = worker.run_job(world.services, job, budget=budget, receive_count=2, request_id="r")
    assert outcome == worker.Outcome("complete")
    assert world.record(org, backup_id)["status"] == "complete"
