"""S3 work on the background thread: in order, one part in flight, errors back to the worker;
a checkpoint names only stored parts, a failure leaves nothing running and nothing complete."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from backup_jobs import worker
from backup_jobs.exceptions import StorageFailed, VerificationFailed
from backup_jobs.objects import BackgroundWrites, PartRecord
from botocore.exceptions import ClientError

from strongroom.backups import object_key
from strongroom.lazy import made
from strongroom_local.sandbox_okta import OrgSpec
from tests.support.iam_check import IamCheck
from tests.unit.scheduled_backup.conftest import SMALL_PART, BackupWorld, Context

PART = SMALL_PART


class _Objects:
    """BackupObjects stand-in: records what runs when; fails where told."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.fail_part: int | None = None
        self.fail_verify = False
        self.aborted: list[str] = []

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> PartRecord:
        self.log.append(f"start {number}")
        time.sleep(0.05)
        if number == self.fail_part:
            raise StorageFailed("S3 UploadPart failed")
        self.log.append(f"end {number}")
        return PartRecord(number, f"etag{number}", "sha", len(body))

    def complete(self, key: str, upload_id: str, parts: list[PartRecord]) -> str:
        self.log.append("complete " + ",".join(str(p.number) for p in parts))
        return "v1"

    def verify(self, key: str, version_id: str, parts: list[PartRecord]) -> str:
        if self.fail_verify:
            raise VerificationFailed("a stored part differs from what was sent")
        self.log.append("verify")
        return "ab" * 32

    def abort(self, key: str, upload_id: str) -> None:
        self.aborted.append(upload_id)


def _s3_threads() -> list[str]:
    """The worker's threads still alive: S3 writers, lanes, read-aheads."""
    prefixes = ("backup-s3", "backup-lane", "okta-read")
    return [t.name for t in threading.enumerate() if t.name.startswith(prefixes)]


def test_parts_go_one_at_a_time_then_the_file_is_completed_and_verified() -> None:
    objects = _Objects()
    with BackgroundWrites(objects) as writes:  # type: ignore[arg-type]
        first = writes.upload_part("k", "u", 1, b"a" * 10)
        second = writes.upload_part("k", "u", 2, b"b" * 5)
        # Handing over part 2 waited until part 1 was stored: one part in flight at most.
        assert "end 1" in objects.log
        stored = writes.finish("k", "u", [first.result(), second]).result()
    assert objects.log == ["start 1", "end 1", "start 2", "end 2", "complete 1,2", "verify"]
    assert (stored.key, stored.version_id, stored.size) == ("k", "v1", 15)
    assert objects.aborted == []
    assert _s3_threads() == []


def test_a_failed_part_reaches_the_caller_and_its_upload_is_aborted() -> None:
    objects = _Objects()
    objects.fail_part = 2
    with BackgroundWrites(objects) as writes:  # type: ignore[arg-type]
        first = writes.upload_part("k", "u", 1, b"a")
        second = writes.upload_part("k", "u", 2, b"b")
        finished = writes.finish("k", "u", [first, second])
        with pytest.raises(StorageFailed):
            second.result()
        with pytest.raises(StorageFailed):
            finished.result()
    assert "complete 1,2" not in " ".join(objects.log)
    assert objects.aborted == ["u"]


def test_a_failed_read_back_reaches_the_caller() -> None:
    objects = _Objects()
    objects.fail_verify = True
    with BackgroundWrites(objects) as writes:  # type: ignore[arg-type]
        part = writes.upload_part("k", "u", 1, b"a")
        with pytest.raises(VerificationFailed):
            writes.finish("k", "u", [part]).result()
    assert objects.aborted == []  # completed and locked: there is no upload left to abort


# ---- through the worker ------------------------------------------------------------------------


@pytest.fixture
def okta_spec() -> OrgSpec:
    return OrgSpec(users=450, groups=5, apps=4, admins=3)


class _SlowParts:
    """Wraps the worker's S3 UploadPart: slow, counted, and failing where told."""

    def __init__(
        self, world: BackupWorld, monkeypatch: pytest.MonkeyPatch, delay: float = 0.02
    ) -> None:
        self.s3 = made(world.services.s3)  # the client behind the worker's stand-in
        self.original = self.s3.upload_part
        self.delay = delay
        self.active = 0
        self.calls = 0
        self.fail: set[int] = set()  # which calls (1-based) fail
        self._lock = threading.Lock()
        monkeypatch.setattr(self.s3, "upload_part", self)

    def __call__(self, **kwargs: Any) -> Any:
        with self._lock:  # lanes upload side by side
            self.active += 1
            self.calls += 1
            call = self.calls
        try:
            time.sleep(self.delay)
            if call in self.fail:
                raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPart")
            return self.original(**kwargs)
        finally:
            with self._lock:
                self.active -= 1


def _start(world: BackupWorld) -> tuple[str, str]:
    org = world.new_org()
    _, body = world.start(org, world.connect(org))
    return org, str(body["backup_id"])


@pytest.mark.usefixtures("small_parts")
def test_a_checkpoint_names_only_parts_that_are_stored(
    world: BackupWorld, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _SlowParts(world, monkeypatch)
    s3, bucket = world.services.s3, world.settings.backup_bucket
    checked: list[int] = []
    save = worker._save_checkpoint

    def checked_save(services: Any, run: Any, budget: Any) -> None:
        assert slow.active == 0  # nothing still uploading
        # Every file written is verified and in run.files.
        assert all(lane.pending_files == [] for lane in run.lanes)
        for checkpoint in worker._checkpoints(run):
            key = object_key(str(run.record["prefix"]), checkpoint.resource)
            with iam_check.outside():  # the test's probe, not the worker's call
                listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=checkpoint.upload_id)
            stored = {p["PartNumber"]: p["ETag"] for p in listed.get("Parts", [])}
            assert {p.number: p.etag for p in checkpoint.parts}.items() <= stored.items()
            checked.append(len(checkpoint.parts))
        save(services, run, budget)

    monkeypatch.setattr(worker, "_save_checkpoint", checked_save)
    org, backup_id = _start(world)
    world.drain(context=lambda: Context(lambda: 0))
    assert world.record(org, backup_id)["status"] == "complete"
    assert any(count > 0 for count in checked)  # some checkpoints fell mid-file
    assert _s3_threads() == []


@pytest.mark.usefixtures("small_parts")
def test_a_part_that_fails_in_the_background_is_retried_through_the_queue(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _SlowParts(world, monkeypatch)
    slow.fail = {3}  # the third part sent, whichever lane's
    org, backup_id = _start(world)
    world.drain()
    assert [len(i["batchItemFailures"]) for i in world.invocations] == [1, 0]
    record = world.record(org, backup_id)
    assert record["status"] == "complete", record.get("failure_reason")
    assert _s3_threads() == []


@pytest.mark.usefixtures("small_parts")
def test_parts_that_keep_failing_fail_the_backup_and_leave_no_upload_open(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _SlowParts(world, monkeypatch)
    slow.fail = set(range(2, 10_000))
    org, backup_id = _start(world)
    world.drain()
    record = world.record(org, backup_id)
    assert record["status"] == "failed"
    assert record["failure_reason"] == "storage_failed"
    assert "manifest_sha256" not in record
    uploads = world.services.s3.list_multipart_uploads(Bucket=world.settings.backup_bucket)
    assert uploads.get("Uploads", []) == []
    assert _s3_threads() == []


@pytest.mark.usefixtures("small_parts")
def test_a_provider_failure_mid_file_first_waits_for_the_part_in_flight(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow = _SlowParts(world, monkeypatch, delay=0.3)
    s3 = made(world.services.s3)
    abort = s3.abort_multipart_upload
    uploading_at_abort: list[int] = []

    def recorded_abort(**kwargs: Any) -> Any:
        uploading_at_abort.append(slow.active)
        return abort(**kwargs)

    monkeypatch.setattr(s3, "abort_multipart_upload", recorded_abort)
    handler = world.backups.worker_handler
    running_after: list[list[str]] = []

    def checked_handler(event: Any, context: Any) -> Any:
        result = handler(event, context)
        running_after.append([*_s3_threads(), str(slow.active)])
        return result

    monkeypatch.setattr(world.backups, "worker_handler", checked_handler)
    # The first page of users fills a part; every later page fails.
    world.okta.set_faults(error_500_probability=1.0, skip=1, path_prefix="/api/v1/users")
    org, backup_id = _start(world)
    world.drain()
    record = world.record(org, backup_id)
    assert record["status"] == "failed"
    assert record["failure_reason"] == "provider_unavailable"
    assert slow.calls >= 1
    # Every upload left open (users', and any another lane had under way) was aborted once
    # nothing was uploading any more.
    assert uploading_at_abort
    assert set(uploading_at_abort) == {0}
    assert running_after == [["0"]] * 3  # each invocation left nothing running
    uploads = s3.list_multipart_uploads(Bucket=world.settings.backup_bucket)
    assert uploads.get("Uploads", []) == []


def test_a_file_that_fails_its_read_back_fails_the_backup(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backup_jobs.objects import BackupObjects

    verify = BackupObjects.verify

    def damaged(self: BackupObjects, key: str, version_id: str, parts: Any) -> str:
        if key.endswith("/group_members.json"):
            raise VerificationFailed("a stored part differs from what was sent")
        return verify(self, key, version_id, parts)

    monkeypatch.setattr(BackupObjects, "verify", damaged)
    org, backup_id = _start(world)
    assert world.drain() == 1  # not transient: no retry
    record = world.record(org, backup_id)
    assert record["status"] == "failed"
    assert record["failure_reason"] == "verification_failed"
    assert "manifest_sha256" not in record
    assert _s3_threads() == []
