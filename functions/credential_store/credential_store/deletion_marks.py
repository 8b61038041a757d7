"""Marks that bring the deletion sweep to an org whose deletion was started (`sweep_marks`).

    platform  pk=ORG_DELETION#<org_id>  sk=ORG_DELETION   org_id, token
              gsi1pk=ORG_DELETION_DUE#all  gsi1sk=<due, ISO-8601 Z>#<org_id>

Every DELETE of an org puts its mark (a new token, due after the grace) before it changes
anything, and the deletion that finishes drops it. A deletion that stops, for time or by a
fault, therefore keeps a mark, and the sweep carries it on once the grace has passed, whether or
not the owner ever asks again. The sweep claims a mark before working on it, so two sweeps never
work on one org.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final

from credential_store.sweep_marks import SweepMarks
from strongroom.tenancy import Item, PlatformTable

KIND: Final = "ORG_DELETION"
# One partition: deletions are rare, and the sweep reads only the due ones.
PARTITION: Final = "ORG_DELETION_DUE#all"
# Far longer than a DELETE may run (the function's 30 s timeout): the sweep does not take up a
# deletion while the request that marked it may still be at work on it.
GRACE: Final = timedelta(minutes=5)
# A deletion the sweep could not finish comes due again after this, behind the others.
RETRY: Final = timedelta(minutes=10)

_MARKS = SweepMarks(kind=KIND, partition=PARTITION, grace=GRACE, retry=RETRY, work="deletion")


def put(platform: PlatformTable, org_id: str, *, now: datetime) -> None:
    """Mark the org before a DELETE changes it; StoreUnavailable if the mark cannot be put (the
    request then changes nothing)."""
    _MARKS.put(platform, org_id, now=now, attributes={"org_id": org_id})


def drop(platform: PlatformTable, org_id: str, *, now: datetime, token: str | None = None) -> None:
    """Remove the org's mark (with `token`, only the mark as the sweep read it); a failure is
    logged, not raised."""
    _MARKS.drop(platform, org_id, now=now, token=token)


def claim(platform: PlatformTable, mark: Item, *, now: datetime) -> str | None:
    """Take the mark as listed for this sweep: its new token (due again after RETRY), or None if
    it changed since it was listed or cannot be written now."""
    return _MARKS.claim(platform, mark, now=now)


def due(platform: PlatformTable, *, now: datetime) -> Iterator[Item]:
    """The marks whose time has come, oldest first."""
    return _MARKS.due(platform, now=now)
