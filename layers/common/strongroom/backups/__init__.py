"""Backups: where a backup's record and files live, shared by scheduled_backup (which writes
them) and signed_url_issuer (which lists them and hands out links to them)."""

from typing import TYPE_CHECKING

from strongroom.backups.records import (
    BACKUP_KIND,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    BackupStatus,
    FileEntry,
    Manifest,
    backup_index,
    backup_listing,
    backup_prefix,
    new_backup_id,
    object_key,
    validate_backup_id,
    validate_resource,
)

if TYPE_CHECKING:
    from strongroom.backups.schedule import BackupSchedules, ScheduleEntry, next_run_after

__all__ = [
    "BACKUP_KIND",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "BackupSchedules",
    "BackupStatus",
    "FileEntry",
    "Manifest",
    "ScheduleEntry",
    "backup_index",
    "backup_listing",
    "backup_prefix",
    "new_backup_id",
    "next_run_after",
    "object_key",
    "validate_backup_id",
    "validate_resource",
]


def __getattr__(name: str) -> object:
    # The schedule index is loaded on first use: it brings the schedule-expression parser, which
    # signed_url_issuer (records only) would otherwise import at every cold start for nothing.
    if name in {"BackupSchedules", "ScheduleEntry", "next_run_after"}:
        from strongroom.backups import schedule  # noqa: PLC0415

        return getattr(schedule, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
