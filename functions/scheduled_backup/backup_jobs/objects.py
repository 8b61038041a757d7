"""Backup files in S3: multipart uploads under the org's KMS key and Object Lock, read back to
verify them.

Every part is sent with its SHA-256 (`ChecksumSHA256`), so S3 refuses a part damaged on the way.
After completion the version is locked explicitly (COMPLIANCE until the backup's retain-until
date: the same date the upload asked for, so on S3 this only confirms it), then read back whole:
each part's bytes must hash to what was sent, the version must be SSE-KMS under the org's key
and locked in COMPLIANCE mode until at least that date. The SHA-256 of the whole object, taken
on that read, is what the manifest records.

`BackgroundWrites` does a backup's S3 work (parts, completion, read-back) on one thread of its
own, in the order asked, while the worker goes on reading the provider: most of a backup's time
is spent waiting for rate-limit windows, and S3 work need not wait with it. At most one part is
in flight at a time, so memory stays at two parts.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from backup_jobs.exceptions import StorageFailed, UploadGone, VerificationFailed

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

CONTENT_TYPE = "application/json"
# Parents (groups, apps, policies...) are read back to list their children; users never are.
MAX_PARENT_FILE_BYTES = 256 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class PartRecord:
    number: int
    etag: str
    sha256: str  # base64, as S3 takes and returns it
    size: int

    def document(self) -> dict[str, Any]:
        return {"number": self.number, "etag": self.etag, "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> PartRecord:
        return cls(
            int(document["number"]),
            str(document["etag"]),
            str(document["sha256"]),
            int(document["size"]),
        )


@dataclass(frozen=True)
class StoredFile:
    key: str
    version_id: str
    sha256: str  # hex, of the whole object
    size: int


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


class BackupObjects:
    """One backup's objects: written under `kms_key_arn`, locked until `retain_until`."""

    def __init__(
        self, *, s3: S3Client, bucket: str, kms_key_arn: str, retain_until: datetime
    ) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._kms_key_arn = kms_key_arn
        self._retain_until = retain_until

    def _protection(self) -> dict[str, Any]:
        return {
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": self._kms_key_arn,
            "BucketKeyEnabled": True,
            "ObjectLockMode": "COMPLIANCE",
            "ObjectLockRetainUntilDate": self._retain_until,
            "ContentType": CONTENT_TYPE,
        }

    # ---- writing ------------------------------------------------------------------------------

    def start_upload(self, key: str) -> str:
        try:
            response = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=key, ChecksumAlgorithm="SHA256", **self._protection()
            )
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 CreateMultipartUpload failed") from None
        return str(response["UploadId"])

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> PartRecord:
        checksum = _b64_sha256(body)
        try:
            response = self._s3.upload_part(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "NoSuchUpload":
                raise UploadGone("S3 UploadPart found no such upload") from None
            raise StorageFailed("S3 UploadPart failed") from None
        except BotoCoreError:
            raise StorageFailed("S3 UploadPart failed") from None
        return PartRecord(number, str(response["ETag"]), checksum, len(body))

    def complete(self, key: str, upload_id: str, parts: Sequence[PartRecord]) -> str:
        """Complete the upload, lock the new version; its version id."""
        try:
            response = self._s3.complete_multipart_upload(
                Bucket=self._bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [
                        {"PartNumber": p.number, "ETag": p.etag, "ChecksumSHA256": p.sha256}
                        for p in parts
                    ]
                },
            )
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 CompleteMultipartUpload failed") from None
        version_id = response.get("VersionId")
        if not version_id:
            raise StorageFailed("the backup bucket is not versioned")
        self._lock(key, str(version_id))
        return str(version_id)

    def put(self, key: str, body: bytes) -> str:
        """Write a small object (the manifest) in one request; its version id."""
        try:
            response = self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=_b64_sha256(body),
                **self._protection(),
            )
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 PutObject failed") from None
        version_id = response.get("VersionId")
        if not version_id:
            raise StorageFailed("the backup bucket is not versioned")
        self._lock(key, str(version_id))
        return str(version_id)

    def _lock(self, key: str, version_id: str) -> None:
        try:
            self._s3.put_object_retention(
                Bucket=self._bucket,
                Key=key,
                VersionId=version_id,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": self._retain_until},
            )
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 PutObjectRetention failed") from None

    def abort(self, key: str, upload_id: str) -> None:
        """Abort an upload that will not be completed (best effort: a lifecycle rule cleans up)."""
        abort_upload(self._s3, self._bucket, key, upload_id)

    # ---- reading back -------------------------------------------------------------------------

    def verify(self, key: str, version_id: str, part_sizes_and_hashes: Sequence[PartRecord]) -> str:
        """Read the version back; its SHA-256 (hex) if every part hashes to what was sent and
        it is encrypted and locked as required, else VerificationFailed."""
        sent = [(p.size, p.sha256) for p in part_sizes_and_hashes]
        digest, size = self._read_back(key, version_id, sent)
        if size != sum(part_size for part_size, _ in sent):
            raise VerificationFailed("a stored file has the wrong size")
        return digest

    def verify_whole(self, key: str, version_id: str, body: bytes) -> str:
        digest, _ = self._read_back(key, version_id, [(len(body), _b64_sha256(body))])
        return digest

    def _read_back(
        self, key: str, version_id: str, parts: Sequence[tuple[int, str]]
    ) -> tuple[str, int]:
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version_id)
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 GetObject failed") from None
        self._check_protection(response)
        whole = hashlib.sha256()
        total = 0
        index, part_hash, part_left = 0, hashlib.sha256(), parts[0][0] if parts else 0
        try:
            for chunk in response["Body"].iter_chunks(_READ_CHUNK):
                whole.update(chunk)
                total += len(chunk)
                view = memoryview(chunk)
                while view:
                    if index >= len(parts):
                        raise VerificationFailed("a stored file is longer than what was written")
                    take = view[:part_left]
                    part_hash.update(take)
                    part_left -= len(take)
                    view = view[len(take) :]
                    if part_left == 0:
                        _check_part(part_hash, parts[index][1])
                        index += 1
                        part_hash = hashlib.sha256()
                        part_left = parts[index][0] if index < len(parts) else 0
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 GetObject failed") from None
        # Zero-length parts never occur (every file holds at least its brackets).
        if index != len(parts):
            raise VerificationFailed("a stored file is shorter than what was written")
        return whole.hexdigest(), total

    def _check_protection(self, response: Any) -> None:
        if response.get("ServerSideEncryption") != "aws:kms" or not _same_key(
            response.get("SSEKMSKeyId"), self._kms_key_arn
        ):
            raise VerificationFailed("a stored file is not encrypted under the org's key")
        until = response.get("ObjectLockRetainUntilDate")
        if response.get("ObjectLockMode") != "COMPLIANCE" or until is None:
            raise VerificationFailed("a stored file is not locked")
        if until < self._retain_until.replace(microsecond=0):
            raise VerificationFailed("a stored file is locked for too short a time")

    def read_json(self, key: str, version_id: str) -> Any:
        """A written parent file, parsed (for the ids of its children)."""
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key, VersionId=version_id)
            if int(response.get("ContentLength", 0)) > MAX_PARENT_FILE_BYTES:
                raise VerificationFailed("a parent file is too large to list its children")
            body = response["Body"].read()
        except (ClientError, BotoCoreError):
            raise StorageFailed("S3 GetObject failed") from None
        try:
            return json.loads(body)
        except ValueError:
            raise VerificationFailed("a stored file is not JSON") from None


def _check_part(part_hash: Any, expected_b64: str) -> None:
    actual = base64.b64encode(part_hash.digest()).decode("ascii")
    if actual != expected_b64:
        raise VerificationFailed("a stored part differs from what was sent")


def _same_key(reported: object, arn: str) -> bool:
    # S3 reports the key's ARN; a key id alone matches the ARN's last segment.
    if not isinstance(reported, str):
        return False
    return reported == arn or arn.endswith("/" + reported)


def abort_upload(s3: S3Client, bucket: str, key: str, upload_id: str) -> None:
    """Abort a multipart upload (best effort: the bucket's lifecycle rule aborts what is left)."""
    try:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (ClientError, BotoCoreError):
        return


class BackgroundWrites:
    """One backup run's S3 writes, done in order on one background thread.

    Each call returns a Future whose result (or error: StorageFailed, VerificationFailed) the
    caller collects when it needs it. `upload_part` first waits until the previous part is sent
    (it does not raise that part's error: its own future does), so at most one part is in flight.
    `drain` waits for everything asked so far; `close` also ends the thread.
    """

    def __init__(self, objects: BackupObjects) -> None:
        self._objects = objects
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backup-s3")
        self._last_part: Future[PartRecord] | None = None
        self._submitted: list[Future[Any]] = []

    def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> Future[PartRecord]:
        if self._last_part is not None:
            wait([self._last_part])
        part = self._submit(self._objects.upload_part, key, upload_id, number, body)
        self._last_part = part
        return part

    def finish(
        self, key: str, upload_id: str, parts: Sequence[PartRecord | Future[PartRecord]]
    ) -> Future[StoredFile]:
        """Complete the upload of `parts` (those still pending are sent before this runs), then
        read the file back and verify it; a failed upload is aborted."""
        return self._submit(self._finish, key, upload_id, list(parts))

    def _finish(
        self, key: str, upload_id: str, parts: list[PartRecord | Future[PartRecord]]
    ) -> StoredFile:
        try:
            # Every part was submitted before this task, on this thread: all are done.
            records = [part.result() if isinstance(part, Future) else part for part in parts]
            version_id = self._objects.complete(key, upload_id, records)
        except StorageFailed:
            self._objects.abort(key, upload_id)
            raise
        sha256 = self._objects.verify(key, version_id, records)
        return StoredFile(key, version_id, sha256, sum(record.size for record in records))

    def _submit(self, task: Any, *args: Any) -> Future[Any]:
        self._submitted = [future for future in self._submitted if not future.done()]
        future = self._executor.submit(task, *args)
        self._submitted.append(future)
        return future

    def drain(self) -> None:
        """Wait for every write asked so far (their errors stay in their futures)."""
        wait(self._submitted)
        self._submitted.clear()

    def close(self) -> None:
        self.drain()
        self._executor.shutdown(wait=True)

    def __enter__(self) -> BackgroundWrites:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
