"""The backup record (DynamoDB), the object layout (S3) and the manifest (JSON).

Record: a tenant item of kind `BACKUP`, item id = the backup id (`bkp_` + 26 base32 chars),
listed per connection newest first through gsi1:

    pk=<org_id>  sk=BACKUP#<backup_id>
    gsi1pk=<org_id>#BACKUPS#<connection_id>  gsi1sk=<started_at ISO-8601 Z>#<backup_id>
    connection_id, provider, trigger ("schedule" | "on_demand"), requested_by,
    status ("running" | "complete" | "failed"), suspect (bool), started_at, finished_at,
    failure_reason (a fixed code, never provider text), prefix, manifest_key,
    files {resource: {key, sha256, bytes, items}}, removed_fields {resource: [paths]},
    schema_version

Objects (backup bucket, SSE-KMS under the org's key, Object Lock retention):

    orgs/<org_id>/connections/<connection_id>/backups/<timestamp>/<resource>.json
    orgs/<org_id>/connections/<connection_id>/backups/<timestamp>/manifest.json   (written last)

`<timestamp>` is the start time as `YYYYMMDDTHHMMSSZ` followed by `-<backup_id>`, so two backups
started in the same second never share a prefix. Only a `complete` record's files are whole.
"""

from __future__ import annotations

import base64
import enum
import re
import secrets
from datetime import UTC, datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from strongroom.tenancy import IndexKey

BACKUP_KIND: Final = "BACKUP"
MANIFEST_FILE: Final = "manifest.json"
SCHEMA_VERSION: Final = 1
_BACKUP_ID = re.compile(r"^bkp_[a-z2-7]{26}$")
# Resource names are ours (users, groups, group_members, ...), never caller text in a key.
_RESOURCE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class BackupStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


def new_backup_id() -> str:
    """A fresh backup id: `bkp_` and 26 lowercase base32 characters (128 random bits)."""
    return "bkp_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def validate_backup_id(backup_id: object) -> str:
    if not isinstance(backup_id, str) or not _BACKUP_ID.fullmatch(backup_id):
        raise ValueError("backup id is malformed")
    return backup_id


def validate_resource(resource: object) -> str:
    if not isinstance(resource, str) or not _RESOURCE.fullmatch(resource):
        raise ValueError("resource name is malformed")
    return resource


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def backup_listing(connection_id: str) -> str:
    """The gsi1 partition (within the org) that lists a connection's backups."""
    return f"BACKUPS#{connection_id}"


def backup_index(connection_id: str, started_at: datetime, backup_id: str) -> IndexKey:
    return IndexKey(partition=backup_listing(connection_id), sort=f"{_iso(started_at)}#{backup_id}")


def backup_prefix(org_id: str, connection_id: str, started_at: datetime, backup_id: str) -> str:
    stamp = started_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"orgs/{org_id}/connections/{connection_id}/backups/{stamp}-{backup_id}/"


def object_key(prefix: str, resource: str) -> str:
    """The key of one resource's file (or of `manifest` → manifest.json) under a prefix."""
    return prefix + f"{validate_resource(resource)}.json"


class FileEntry(BaseModel):
    # Built when first used, as Manifest: only requests that read or write a manifest need it.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    resource: str
    key: str
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)]
    items: Annotated[int, Field(ge=0)]


class Manifest(BaseModel):
    """manifest.json: written last; lists every file with its SHA-256, size and item count."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    schema_version: int = SCHEMA_VERSION
    backup_id: str
    org_id: str
    connection_id: str
    provider: str
    started_at: str
    finished_at: str
    files: list[FileEntry]
    # Secret-bearing fields removed from provider payloads before writing, per resource.
    removed_fields: dict[str, list[str]] = Field(default_factory=dict)
