"""Marks that bring the deletion sweep to an org whose deletion was started.

    platform  pk=ORG_DELETION#<org_id>  sk=ORG_DELETION   org_id, token
              gsi1pk=ORG_DELETION_DUE#all  gsi1sk=<due, ISO-8601 Z>#<org_id>

Every DELETE of an org puts its mark (a new token, due after the grace) before it changes
anything, and the deletion that finishes drops it. A deletion that stops, for time or by a
fault, therefore keeps a mark, and the sweep carries it on once the grace has passed, whether or
not the owner ever asks again. The sweep drops a mark only as it read it (its token), so a mark
a request put meanwhile stays.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from strongroom.redaction import get_logger
from strongroom.tenancy import (
    ConditionFailed,
    IndexKey,
    Item,
    ItemNotFound,
    PlatformTable,
    TenancyError,
)

logger = get_logger(service="credential_store")

KIND: Final = "ORG_DELETION"
# One partition: deletions are rare, and the sweep reads only the due ones.
PARTITION: Final = "ORG_DELETION_DUE#all"
# Far longer than a DELETE may run (the function's 30 s timeout): the sweep does not take up a
# deletion while the request that marked it may still be at work on it.
GRACE: Final = timedelta(minutes=5)
# A deletion the sweep could not finish comes due again after this, behind the others.
RETRY: Final = timedelta(minutes=10)
_PAGE = 25


def put(platform: PlatformTable, org_id: str, *, now: datetime) -> None:
    """Mark the org before a DELETE changes it; StoreUnavailable if the mark cannot be put (the
    request then changes nothing)."""
    platform.put(
        KIND,
        org_id,
        attributes={"org_id": org_id, "token": secrets.token_hex(16)},
        index=_index(org_id, due=now + GRACE),
        now=now,
    )


def drop(platform: PlatformTable, org_id: str, *, now: datetime, token: str | None = None) -> None:
    """Remove the org's mark (with `token`, only the mark as the sweep read it). A failure is
    logged, not raised: the deletion it marked is done, and the sweep drops a mark whose org is
    gone."""
    try:
        platform.delete(KIND, org_id, now=now, expect=None if token is None else {"token": token})
    except (ConditionFailed, ItemNotFound):
        pass  # marked again meanwhile: that request's mark stays
    except TenancyError as exc:
        logger.warning(
            "a deletion mark could not be dropped; the sweep drops it",
            extra={"org_id": org_id, "error_type": type(exc).__name__},
        )


def defer(platform: PlatformTable, mark: Item, *, now: datetime) -> None:
    """Put a mark the sweep could not finish back by RETRY, unless a request marked it since; if
    that fails, the mark stays where it was and is taken up again next time."""
    org_id = str(mark.attributes.get("org_id"))
    with contextlib.suppress(TenancyError):
        platform.put(
            KIND,
            org_id,
            attributes=dict(mark.attributes),
            index=_index(org_id, due=now + RETRY),
            expect={"token": mark.attributes.get("token")},
            now=now,
        )


def due(platform: PlatformTable, *, now: datetime) -> Iterator[Item]:
    """The marks whose time has come, oldest first (gsi1 is eventually consistent: the sweep
    reads each org before acting on it)."""
    # '~' sorts after every org id character, so marks due at exactly `now` are included.
    highest = f"{_iso(now)}#~"
    cursor: dict[str, str] | None = None
    while True:
        marks, cursor = platform.query_index(
            PARTITION, now=now, sort_at_most=highest, limit=_PAGE, start=cursor
        )
        yield from marks
        if cursor is None:
            return


def _index(org_id: str, *, due: datetime) -> IndexKey:
    return IndexKey(partition=PARTITION, sort=f"{_iso(due)}#{org_id}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
