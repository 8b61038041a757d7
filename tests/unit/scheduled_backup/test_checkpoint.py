"""A backup that runs out of time checkpoints, continues through the queue, and writes the same
bytes as one that never stopped."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from backup_jobs import worker
from backup_jobs.objects import BackgroundWrites, BackupObjects, PartRecord
from backup_jobs.okta import OKTA_RESOURCES, OktaReader, RateGate, first_url
from botocore.exceptions import ClientError

from strongroom.backups import Manifest, object_key
from strongroom.lazy import made
from strongroom.outbound import OutboundResponse, ResponseHeaders
from strongroom_local.sandbox_okta import OrgSpec
from tests.unit.scheduled_backup.conftest import SMALL_PART, BackupWorld, Context, sqs_record

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


@pytest.mark.parametrize("gone", ["completed", "aborted"])
def test_a_resumed_upload_that_is_gone_starts_its_file_again(world: BackupWorld, gone: str) -> None:
    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    backup_id = body["backup_id"]
    queue = world.settings.backup_queue_url
    record: dict[str, Any] = {}
    while not any(c["parts"] for c in record.get("checkpoints", [])):  # a file stopped mid-way
        (message,) = world.sqs.receive_message(QueueUrl=queue, AttributeNames=["All"])["Messages"]
        world.backups.worker_handler({"Records": [sqs_record(message)]}, _tiny_budget())
        world.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        record = world.record(org, backup_id)
        assert record["status"] == "running"

    # What the checkpoint names is gone: an invocation that continued these uploads completed
    # them, then lost its own checkpoint (its save failed, or it died); or they were aborted.
    s3 = made(world.services.s3)
    bucket = world.settings.backup_bucket
    upload_ids = set()
    for checkpoint in record["checkpoints"]:
        if not checkpoint["parts"]:
            continue
        key = object_key(record["prefix"], checkpoint["resource"])
        upload_id = checkpoint["upload_id"]
        upload_ids.add(upload_id)
        if gone == "aborted":
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            continue
        parts = [
            {"PartNumber": p["number"], "ETag": p["etag"], "ChecksumSHA256": p["sha256"]}
            for p in checkpoint["parts"]
        ]
        s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )

    def no_such_upload(params: dict[str, Any], **_: Any) -> None:
        # S3 answers NoSuchUpload for a part of an upload completed or aborted; moto raises a
        # KeyError instead. What is tested is what the worker makes of S3's answer.
        if params.get("UploadId") in upload_ids:
            raise ClientError({"Error": {"Code": "NoSuchUpload"}}, "UploadPart")

    s3.meta.events.register("before-parameter-build.s3.UploadPart", no_such_upload)
    world.drain(context=_tiny_budget)

    record = world.record(org, backup_id)
    assert record["status"] == "complete", record.get("failure_reason")
    assert all(not i["batchItemFailures"] for i in world.invocations)  # no retry was needed
    manifest = Manifest.model_validate_json(world.read(record["manifest_key"]))
    for entry in manifest.files:
        named = record["files"][entry.resource]["version_id"]
        stored = world.read(entry.key, named)
        assert world.read(entry.key) == stored  # the newest version is the one recorded
        assert hashlib.sha256(stored).hexdigest() == entry.sha256
        items = json.loads(stored)["items"]
        assert len(items) == entry.items
        if entry.resource != "user_roles":  # read in no particular order
            assert items == world.expected(entry.resource), entry.resource


# ---- a resumed upload that is gone, shape by shape (no AWS) -------------------------------------

BASE = "https://acme.okta.com"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/org"
RETAIN = datetime(2031, 1, 1, tzinfo=UTC)
USERS = next(spec for spec in OKTA_RESOURCES if spec.name == "users")
# Three pages of users: the first two fill a part each, the last does not.
PAGES = [
    [{"id": f"00u{page}{n}", "profile": {"login": "x" * 60}} for n in range(count)]
    for page, count in enumerate((3, 3, 1))
]
URLS = [first_url(BASE, USERS, {}), f"{BASE}/api/v1/users?after=1", f"{BASE}/api/v1/users?after=2"]


class _Provider:
    def get(self, url: str, *, headers: dict[str, str], deadline: float | None) -> Any:
        page = URLS.index(url)
        link = {"Link": f'<{URLS[page + 1]}>; rel="next"'} if page + 1 < len(URLS) else {}
        body = json.dumps(PAGES[page]).encode()
        return OutboundResponse(
            status=200, headers=ResponseHeaders(link.items()), body=body, url=url
        )


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def iter_chunks(self, size: int) -> Any:
        return iter([self._data])


class _S3:
    """Just enough of S3 for multipart uploads: an upload it does not have (completed or
    aborted) is NoSuchUpload, as S3 answers."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.versions: dict[str, bytes] = {}

    def _upload(self, upload_id: str, operation: str) -> dict[int, bytes]:
        if upload_id not in self.uploads:
            raise ClientError({"Error": {"Code": "NoSuchUpload"}}, operation)
        return self.uploads[upload_id]

    def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        upload_id = f"upload{len(self.uploads) + 1}"
        self.uploads[upload_id] = {}
        return {"UploadId": upload_id}

    def upload_part(self, *, UploadId: str, PartNumber: int, Body: bytes, **_: Any) -> Any:
        self._upload(UploadId, "UploadPart")[PartNumber] = Body
        return {"ETag": f'"{PartNumber}"'}

    def complete_multipart_upload(self, *, UploadId: str, MultipartUpload: Any, **_: Any) -> Any:
        parts = self._upload(UploadId, "CompleteMultipartUpload")
        version_id = f"v{len(self.versions) + 1}"
        self.versions[version_id] = b"".join(
            parts[p["PartNumber"]] for p in MultipartUpload["Parts"]
        )
        del self.uploads[UploadId]
        return {"VersionId": version_id}

    def put_object_retention(self, **_: Any) -> Any:
        return {}

    def get_object(self, *, VersionId: str, **_: Any) -> Any:
        return {
            "Body": _Body(self.versions[VersionId]),
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": KEY_ARN,
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": RETAIN,
        }

    def abort_multipart_upload(self, *, UploadId: str, **_: Any) -> Any:
        self.uploads.pop(UploadId, None)


@pytest.mark.parametrize(
    ("resumed_at", "left"),
    [(1, "a part and the last part"), (2, "only the last part")],
)
def test_a_file_whose_resumed_upload_is_gone_is_written_again_whole(
    resumed_at: int, left: str
) -> None:
    from backup_jobs.models import BackupJob

    s3 = _S3()
    objects = BackupObjects(s3=s3, bucket="b", kms_key_arn=KEY_ARN, retain_until=RETAIN)  # type: ignore[arg-type]
    # The checkpoint's upload was completed by an invocation that then lost its checkpoint:
    # S3 no longer has it (`_S3` never had it).
    stored = [PartRecord(n, f'"{n}"', "c2hh", 300) for n in range(1, resumed_at + 1)]
    items = sum(len(page) for page in PAGES[:resumed_at])
    resume = worker.Checkpoint("users", "completed", stored, 0, URLS[resumed_at], items, [])
    job = BackupJob(
        org_id="org_" + "a" * 26, connection_id="conn_" + "a" * 26, backup_id="bkp_" + "a" * 26
    )
    run = worker._Run(job, {"prefix": "orgs/o/"}, 0, {}, {"users": resume}, "r", objects=objects)
    reader = OktaReader(
        outbound=_Provider(),  # type: ignore[arg-type]
        base_url=BASE,
        authorization=lambda: "SSWS test",
        gate=RateGate(),
    )
    lane = worker._Lane((USERS,), reader, BackgroundWrites(objects))
    budget = worker.Budget(time_left=lambda: 900.0, part_size=200)
    try:
        assert worker._write_lane(run, lane, budget), left
        worker._collect_files(run, lane)
    finally:
        lane.writes.close()
    # The file was read again from its first page into a new upload: whole, and the only one.
    assert list(s3.versions) == [run.files["users"]["version_id"]]
    written = s3.versions[run.files["users"]["version_id"]]
    assert json.loads(written) == {"resource": "users", "items": [i for p in PAGES for i in p]}
    assert run.files["users"]["sha256"] == hashlib.sha256(written).hexdigest()
    assert run.files["users"]["items"] == 7
    assert s3.uploads == {}
