"""Event objects in the audit bucket: keys, conditional create, reads, version listings."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from strongroom.audit.events import canonical_json
from strongroom.audit.exceptions import AuditUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

_SEQ_DIGITS = 12
_EVENT_KEY = re.compile(r"audit/(org_[a-z2-7]{26})/(\d{12})\.json")
MAX_EVENT_BYTES = 65536
_NOT_EXISTING = frozenset({"NoSuchKey", "404", "NotFound"})
# 412: the key exists. 409: a concurrent conditional write to the same key is in flight.
_LOST_CREATE = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def org_prefix(org_id: str) -> str:
    """The key prefix of the org's events."""
    return f"audit/{org_id}/"


def event_key(org_id: str, seq: int) -> str:
    """The S3 key of event `seq` of `org_id`."""
    return f"{org_prefix(org_id)}{seq:0{_SEQ_DIGITS}d}.json"


def seq_of_key(org_id: str, key: str) -> int | None:
    """The seq an event key of `org_id` names, or None if it is not one."""
    match = _EVENT_KEY.fullmatch(key)
    if match is None or match.group(1) != org_id or int(match.group(2)) < 1:
        return None
    return int(match.group(2))


def parse_event_document(body: bytes) -> dict[str, Any] | None:
    """The JSON object an event body holds, or None if it is not one that has a canonical
    encoding (bodies are read from storage: NaN, lone surrogates or deep nesting, which
    `json.loads` takes, would make hashing it raise instead of report)."""
    if len(body) > MAX_EVENT_BYTES:
        return None
    try:
        document = json.loads(body.decode("utf-8"))
        if not isinstance(document, dict):
            return None
        canonical_json(document)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError among them
        return None
    return document


def error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error: dict[str, Any] = dict(exc.response.get("Error", {}))
        return str(error.get("Code") or "ClientError")
    return type(exc).__name__


def unavailable(operation: str, exc: Exception) -> AuditUnavailable:
    return AuditUnavailable(f"{operation} failed ({error_code(exc)})")


class EventObjects:
    """The audit bucket, as the log and the verifier use it."""

    def __init__(self, *, s3: S3Client, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def create(self, key: str, body: bytes, *, retain_until: datetime) -> bool:
        """Write `body` at `key` under COMPLIANCE retention if the key is free; False if taken."""
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
                ObjectLockMode="COMPLIANCE",
                ObjectLockRetainUntilDate=retain_until,
            )
        except ClientError as exc:
            if error_code(exc) in _LOST_CREATE:
                return False
            raise unavailable("S3 PutObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("S3 PutObject", exc) from exc
        return True

    def read(self, key: str, *, version_id: str | None = None) -> bytes | None:
        """The body at `key` (its current version, or `version_id`), or None if absent."""
        params: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if version_id is not None:
            params["VersionId"] = version_id
        try:
            response = self._s3.get_object(**params)
            body: bytes = response["Body"].read(MAX_EVENT_BYTES + 1)
        except ClientError as exc:
            if error_code(exc) in _NOT_EXISTING:
                return None
            raise unavailable("S3 GetObject", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("S3 GetObject", exc) from exc
        return body

    def stored_seqs(self, org_id: str, first: int, last: int) -> set[int]:
        """The seqs from `first` to `last` whose event key holds a current object, by listing
        (on S3, a GET of a missing key without ListBucket on it answers 403, not 404)."""
        found: set[int] = set()
        if last < first:
            return found
        params: dict[str, Any] = {
            "Bucket": self._bucket,
            "Prefix": org_prefix(org_id),
            "MaxKeys": min(1000, last - first + 1),
        }
        if first > 1:
            params["StartAfter"] = event_key(org_id, first - 1)
        while True:
            try:
                response = self._s3.list_objects_v2(**params)
            except (ClientError, BotoCoreError) as exc:
                raise unavailable("S3 ListObjectsV2", exc) from exc
            for listed in response.get("Contents", []):
                seq = seq_of_key(org_id, listed["Key"])
                if seq is None:
                    continue
                if seq > last:
                    return found
                if seq >= first:
                    found.add(seq)
            if not response.get("IsTruncated"):
                return found
            params["ContinuationToken"] = response["NextContinuationToken"]

    def versions(self, prefix: str) -> Iterator[tuple[str, str, bool, bool]]:
        """(key, version id, is latest, is delete marker) of everything under `prefix`."""
        params: dict[str, Any] = {"Bucket": self._bucket, "Prefix": prefix}
        while True:
            try:
                response = self._s3.list_object_versions(**params)
            except (ClientError, BotoCoreError) as exc:
                raise unavailable("S3 ListObjectVersions", exc) from exc
            for version in response.get("Versions", []):
                yield version["Key"], version["VersionId"], version["IsLatest"], False
            for marker in response.get("DeleteMarkers", []):
                yield marker["Key"], marker["VersionId"], marker["IsLatest"], True
            if not response.get("IsTruncated"):
                return
            params["KeyMarker"] = response["NextKeyMarker"]
            params["VersionIdMarker"] = response["NextVersionIdMarker"]
