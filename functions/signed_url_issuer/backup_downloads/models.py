"""Request and response bodies of the signed_url_issuer routes.

Schemas are built when first used (`defer_build`): a cold start builds only what its first
request's route needs.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from strongroom.backups import Manifest

# Resource names are the writer's (users, groups, group_members, ...); `manifest` (or no
# resource at all) names manifest.json.
ResourceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class DownloadRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    resource: ResourceName | None = None
    # Seconds; 15 minutes unless asked, at most an hour (and never past the signing session).
    expires_in: Annotated[int, Field(ge=60, le=3600, strict=True)] = 900


class DownloadLink(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    url: str
    # When the URL stops working (ISO-8601 UTC) and the seconds from issue to then.
    expires_at: str
    expires_in: int
    resource: str


class BackupSummary(BaseModel):
    """A backup's metadata: no object keys, no file list."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    backup_id: str
    connection_id: str
    provider: str | None
    trigger: str | None
    requested_by: str | None
    status: str
    suspect: bool
    started_at: str | None
    finished_at: str | None
    # A fixed code (never provider text) when status is "failed".
    failure_reason: str | None


class Backups(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    backups: list[BackupSummary]
    next_cursor: str | None


class BackupDetail(BackupSummary):
    """The backup's metadata and, once it is complete, its manifest (null before: a running
    backup has no whole files yet, a failed one never will)."""

    manifest: Manifest | None
