"""When each connection's scheduled backup is next due: a platform index read without a Scan.

One platform item per connection, listed in a platform gsi1 partition by its next run:

    pk=BACKUP_SCHEDULE#<org_id>.<connection_id>  sk=BACKUP_SCHEDULE
    gsi1pk=BACKUP_DUE#<shard>  gsi1sk=<next_run ISO-8601 Z>#<org_id>#<connection_id>
    org_id, connection_id, schedule, anchor (the connection's creation), next_run

The dispatcher asks each shard for entries whose next run is not after now: one Query per shard
(plus pages), whatever the number of orgs, and only due entries are read. Shards spread the
writes of many connections over several index partitions; SHARDS is fixed because an entry's
shard is derived from its connection id.

credential_store registers an entry before it creates a connection and removes it after the
connection is deleted, so a connection never exists without its entry; an entry whose
connection is gone is dropped by the dispatcher when it comes due. The dispatcher moves an entry
to its next run with a compare-and-swap on `next_run`, so two overlapping dispatcher runs never
both start the same run; an entry whose due run is its schedule's last (a cron() limited to
some years) is deleted the same way instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from strongroom.schedules import ScheduleExpression, parse_schedule_expression
from strongroom.tenancy import IndexKey, Item, PlatformTable

SCHEDULE_KIND: Final = "BACKUP_SCHEDULE"
DUE_PARTITION: Final = "BACKUP_DUE"
SHARDS: Final = 8
_PAGE = 100
_ONE_SECOND = timedelta(seconds=1)


@dataclass(frozen=True, slots=True)
class ScheduleEntry:
    org_id: str
    connection_id: str
    schedule: str
    anchor: datetime
    next_run: datetime


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _entry_id(org_id: str, connection_id: str) -> str:
    return f"{org_id}.{connection_id}"


def shard_of(connection_id: str) -> int:
    return hashlib.sha256(connection_id.encode("ascii")).digest()[0] % SHARDS


def next_run_after(
    expression: ScheduleExpression,
    *,
    anchor: datetime,
    after: datetime,
) -> datetime | None:
    """The first firing strictly after `after`, to the second (rate() counts from `anchor`);
    None if there is none (a cron() whose years are over)."""
    moment = expression.next_after(after, anchor=anchor)
    if moment is None:
        return None
    return moment.replace(microsecond=0) + (_ONE_SECOND if moment.microsecond else timedelta())


class BackupSchedules:
    """The next-run index of every connection (see the module docstring)."""

    def __init__(self, *, platform: PlatformTable) -> None:
        self._platform = platform

    def register(
        self, org_id: str, connection_id: str, schedule: str, *, anchor: datetime, now: datetime
    ) -> ScheduleEntry:
        """Put the connection's entry, due at its schedule's first firing after `now`.

        ValueError: the schedule never fires after `now` (credential_store refuses those).
        """
        expression = parse_schedule_expression(schedule)
        anchor = anchor.astimezone(UTC).replace(microsecond=0)  # as stored
        next_run = next_run_after(expression, anchor=anchor, after=now)
        if next_run is None:
            raise ValueError("the schedule never fires again")
        entry = ScheduleEntry(org_id, connection_id, expression.text, anchor, next_run)
        self._write(entry, now=now, expect_next_run=None)
        return entry

    def remove(self, org_id: str, connection_id: str, *, now: datetime) -> None:
        self._platform.delete(SCHEDULE_KIND, _entry_id(org_id, connection_id), now=now)

    def due(self, *, now: datetime) -> Iterator[ScheduleEntry]:
        """Every entry whose next run is at or before `now`, shard by shard."""
        upper = _iso(now) + "#~"  # `~` sorts after every id character
        for shard in range(SHARDS):
            start: dict[str, str] | None = None
            while True:
                items, start = self._platform.query_index(
                    f"{DUE_PARTITION}#{shard}",
                    now=now,
                    sort_at_most=upper,
                    limit=_PAGE,
                    start=start,
                )
                yield from (_entry(item) for item in items)
                if start is None:
                    break

    def advance(self, entry: ScheduleEntry, *, next_run: datetime, now: datetime) -> None:
        """Move the entry to `next_run` if it still holds `entry.next_run`.

        ConditionFailed (another dispatcher moved it) or ItemNotFound (the connection's entry
        was removed meanwhile): the caller must not start the run.
        """
        moved = ScheduleEntry(
            entry.org_id, entry.connection_id, entry.schedule, entry.anchor, next_run
        )
        self._write(moved, now=now, expect_next_run=_iso(entry.next_run))

    def end(self, entry: ScheduleEntry, *, now: datetime) -> None:
        """Delete the entry if it still holds `entry.next_run`: the run due then is its last.

        ConditionFailed / ItemNotFound: as `advance`.
        """
        self._platform.delete(
            SCHEDULE_KIND,
            _entry_id(entry.org_id, entry.connection_id),
            expect={"next_run": _iso(entry.next_run)},
            now=now,
        )

    def restore(self, entry: ScheduleEntry, *, moved_to: datetime | None, now: datetime) -> None:
        """Undo `advance` to `moved_to`, or `end` (None): `entry` is due again. After `end` the
        entry is put back whatever is there (one whose connection is gone meanwhile is dropped
        when it comes due); after `advance` only if it still holds `moved_to` (ConditionFailed
        or ItemNotFound otherwise)."""
        expect = None if moved_to is None else _iso(moved_to)
        self._write(entry, now=now, expect_next_run=expect)

    def _write(self, entry: ScheduleEntry, *, now: datetime, expect_next_run: str | None) -> None:
        self._platform.put(
            SCHEDULE_KIND,
            _entry_id(entry.org_id, entry.connection_id),
            attributes=_attributes(entry),
            index=_index(entry),
            expect=None if expect_next_run is None else {"next_run": expect_next_run},
            now=now,
        )


def _attributes(entry: ScheduleEntry) -> dict[str, str]:
    return {
        "org_id": entry.org_id,
        "connection_id": entry.connection_id,
        "schedule": entry.schedule,
        "anchor": _iso(entry.anchor),
        "next_run": _iso(entry.next_run),
    }


def _index(entry: ScheduleEntry) -> IndexKey:
    return IndexKey(
        partition=f"{DUE_PARTITION}#{shard_of(entry.connection_id)}",
        sort=f"{_iso(entry.next_run)}#{entry.org_id}#{entry.connection_id}",
    )


def _entry(item: Item) -> ScheduleEntry:
    a = item.attributes
    return ScheduleEntry(
        org_id=str(a["org_id"]),
        connection_id=str(a["connection_id"]),
        schedule=str(a["schedule"]),
        anchor=_parse(str(a["anchor"])),
        next_run=_parse(str(a["next_run"])),
    )
