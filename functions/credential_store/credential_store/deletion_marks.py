"""Marks that bring the deletion sweep to an org whose deletion was started.

    platform  pk=ORG_DELETION#<org_id>  sk=ORG_DELETION   org_id, token
              gsi1pk=ORG_DELETION_DUE#all  gsi1sk=<due, ISO-8601 Z>#<org_id>

Every DELETE of an org puts its mark (a new token, due after the grace) before it changes
anything, and the deletion that finishes drops it. A deletion that stops, for time or by a
fault, therefore keeps a mark, and the sweep carries it on once the grace has passed, whether or
not the owner ever asks again.

Before working on an org the sweep claims its mark: a conditional put of a new token, due again
after RETRY, that holds only if the mark still has the token the sweep listed. Of two sweeps
that listed one mark (a duplicate delivery, a stale index read), only one works on it; one that
dies midway (its timeout) has already put the mark back behind the others. The sweep drops a
mark only as it holds it, so a mark a request put meanwhile stays.
"""

from __future__ import annotations

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


def claim(platform: PlatformTable, mark: Item, *, now: datetime) -> str | None:
    """Take the mark as listed for this sweep: the new token it holds from now on (due again
    after RETRY), or None if it changed since it was listed (another sweep claimed it, a request
    marked the org again, the deletion finished) or cannot be written now."""
    org_id, token = str(mark.item_id), mark.attributes.get("token")
    if not isinstance(token, str):
        return None
    claimed = secrets.token_hex(16)
    try:
        platform.put(
            KIND,
            org_id,
            attributes={"org_id": org_id, "token": claimed},
            index=_index(org_id, due=now + RETRY),
            expect={"token": token},
            now=now,
        )
    except (ConditionFailed, ItemNotFound):
        return None
    except TenancyError as exc:
        logger.warning(
            "a deletion mark could not be claimed; a later sweep retries",
            extra={"org_id": org_id, "error_type": type(exc).__name__},
        )
        return None
    return claimed


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
