"""Backup listings and manifests for members, download links for admins.

Everything is read from the BACKUP records `scheduled_backup` writes (strongroom.backups): this
function's own role cannot read backup objects at all (see `signing`).

- A connection's backups list newest first through gsi1. A connection that does not exist, or
  is another org's, lists nothing, exactly as one without backups: backups outlive a deleted
  connection (Object Lock keeps them), so they stay listable after it is gone.
- A backup answers its metadata, and its manifest once it is complete (null while running or
  after a failure, whose fixed `failure_reason` code says why).
- A link is issued only for a complete backup (409 otherwise), for a file the backup has (422
  otherwise) or its manifest, and only after its issue is in the org's audit chain.
- Another org's backup answers 404 exactly like a missing one: it is looked up in the caller's
  org's partition only, and its object keys must lie under that org's prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from backup_downloads.exceptions import InvalidBackupRecord
from backup_downloads.models import (
    BackupDetail,
    Backups,
    BackupSummary,
    DownloadLink,
    DownloadRequest,
)
from backup_downloads.services import Services
from backup_downloads.signing import DownloadTarget
from strongroom.api import Caller
from strongroom.audit.events import AuditAction, AuditEntry
from strongroom.backups import (
    BACKUP_KIND,
    BackupStatus,
    FileEntry,
    Manifest,
    backup_listing,
)
from strongroom.errors import Conflict, InvalidField, NotFound
from strongroom.roles import Role, require_role
from strongroom.tenancy import Item, ItemNotFound

MANIFEST_RESOURCE = "manifest"
MAX_PAGE = 100


def list_backups(
    services: Services,
    caller: Caller,
    org_id: str,
    connection_id: str,
    *,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
) -> Backups:
    require_role(services.table, caller, org_id, Role.MEMBER, now=now)
    # A cursor of another listing raises InvalidCursor: 422 invalid_cursor, as every listing's.
    page = services.table.query_index(
        org_id,
        backup_listing(connection_id),
        now=now,
        limit=min(limit, MAX_PAGE),
        cursor=cursor,
        newest_first=True,
    )
    summaries = [_summary(item) for item in page.items if item.kind == BACKUP_KIND]
    return Backups(backups=summaries, next_cursor=page.cursor)


def get_backup(
    services: Services, caller: Caller, org_id: str, backup_id: str, *, now: datetime
) -> BackupDetail:
    require_role(services.table, caller, org_id, Role.MEMBER, now=now)
    item = _find(services, org_id, backup_id, now=now)
    summary = _summary(item)
    manifest = _manifest(org_id, item) if summary.status == BackupStatus.COMPLETE else None
    return BackupDetail(**summary.model_dump(), manifest=manifest)


def issue_download_url(
    services: Services,
    caller: Caller,
    org_id: str,
    backup_id: str,
    body: DownloadRequest,
    *,
    now: datetime,
    request_id: str,
) -> DownloadLink:
    """A presigned GET of one file of a complete backup (or its manifest), audited."""
    require_role(services.table, caller, org_id, Role.ADMIN, now=now)
    item = _find(services, org_id, backup_id, now=now)
    if item.attributes.get("status") != BackupStatus.COMPLETE:
        raise Conflict("Only a complete backup can be downloaded.")
    resource = body.resource or MANIFEST_RESOURCE
    key, version_id = _object_version(org_id, item, resource)
    target = DownloadTarget(
        org_id=org_id,
        bucket=services.settings.backup_bucket,
        key=key,
        version_id=version_id,
        # manifest -> <backup_id>-manifest.json, users -> <backup_id>-users.json
        filename=f"{backup_id}-{resource}.json",
    )
    link = services.signer.sign(target, requested=timedelta(seconds=body.expires_in), now=now)
    expires_at = _iso(link.expires_at)
    expires_in = int(link.lifetime.total_seconds())
    # Audited before the URL leaves: an issue that cannot be recorded is not made.
    services.audit.append(
        org_id,
        AuditEntry(
            actor=caller.sub,
            action=AuditAction.DOWNLOAD_URL_ISSUE.value,
            request_id=request_id,
            outcome="success",
            target_kind="backup",
            target_id=backup_id,
            details={
                "connection_id": str(item.attributes.get("connection_id", "")),
                "resource": resource,
                "key": key,
                "expires_at": expires_at,
                "expires_in": expires_in,
                "requested_expires_in": body.expires_in,
            },
        ),
        now=now,
    )
    return DownloadLink(
        url=link.url, expires_at=expires_at, expires_in=expires_in, resource=resource
    )


# ---- records ----------------------------------------------------------------------------------


def _find(services: Services, org_id: str, backup_id: str, *, now: datetime) -> Item:
    try:
        return services.table.get(org_id, BACKUP_KIND, backup_id, now=now)
    except ItemNotFound:
        raise NotFound() from None


def _summary(item: Item) -> BackupSummary:
    attributes = item.attributes
    return BackupSummary(
        backup_id=str(item.item_id),
        connection_id=str(attributes.get("connection_id", "")),
        provider=_text(attributes.get("provider")),
        trigger=_text(attributes.get("trigger")),
        requested_by=_text(attributes.get("requested_by")),
        status=str(attributes.get("status", "")),
        suspect=bool(attributes.get("suspect", False)),
        started_at=_text(attributes.get("started_at")),
        finished_at=_text(attributes.get("finished_at")),
        failure_reason=_text(attributes.get("failure_reason")),
    )


def _files(item: Item) -> Mapping[str, Mapping[str, Any]]:
    files = item.attributes.get("files") or {}
    if not isinstance(files, Mapping):
        raise InvalidBackupRecord("files is not a map")
    return files


def _manifest(org_id: str, item: Item) -> Manifest:
    attributes = item.attributes
    try:
        return Manifest(
            schema_version=int(attributes.get("schema_version", 1)),
            backup_id=str(item.item_id),
            org_id=org_id,
            connection_id=str(attributes["connection_id"]),
            provider=str(attributes["provider"]),
            started_at=str(attributes["started_at"]),
            finished_at=str(attributes["finished_at"]),
            # The manifest's own order (by resource); the record's entries also hold each
            # object's version, which links name and the manifest does not list.
            files=[
                FileEntry(
                    resource=resource,
                    key=entry["key"],
                    sha256=entry["sha256"],
                    bytes=int(entry["bytes"]),
                    items=int(entry["items"]),
                )
                for resource, entry in sorted(_files(item).items())
            ],
            removed_fields={
                resource: list(paths)
                for resource, paths in (attributes.get("removed_fields") or {}).items()
            },
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidBackupRecord(
            f"complete backup record is malformed ({type(exc).__name__})"
        ) from None


def _object_version(org_id: str, item: Item, resource: str) -> tuple[str, str]:
    """The key and version of the resource's object: the version the worker wrote, checked and
    hashed, whatever was written at that key since."""
    if resource == MANIFEST_RESOURCE:
        key = item.attributes.get("manifest_key")
        version_id = item.attributes.get("manifest_version_id")
    else:
        entry = _files(item).get(resource)
        if entry is None:
            # Our own message: the resource name is caller input and is not echoed.
            raise InvalidField("resource: not a file of this backup")
        key, version_id = entry.get("key"), entry.get("version_id")
    # The record names the key; the org's prefix is ours. A key elsewhere is never signed.
    prefix = f"orgs/{org_id}/connections/{item.attributes.get('connection_id')}/backups/"
    if not isinstance(key, str) or not key.startswith(prefix):
        raise InvalidBackupRecord("backup record names an object outside its org's prefix")
    if not isinstance(version_id, str) or not version_id:
        raise InvalidBackupRecord("backup record names no version of its object")
    return key, version_id


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
