"""Platform marks that bring a scheduled sweep to unfinished work in an org.

    platform  pk=<KIND>#<mark_id>  sk=<KIND>   token, and the work's own attributes
              gsi1pk=<partition>  gsi1sk=<due, ISO-8601 Z>#<mark_id>

A request puts its mark (a new token, due after the grace) before it changes anything, and
drops it once the work is done. Work that stops, for time or by a fault, therefore keeps a mark,
and the sweep takes it up once the grace has passed.

Before working on a mark the sweep claims it: a conditional put of a new token, due again later,
that holds only if the mark still has the token the sweep listed. Of two sweeps that listed one
mark (a duplicate delivery, a stale index read), only one works on it; one that dies midway (its
timeout) has already put the mark back behind the others. The sweep drops a mark only as it
holds it, so a mark a request put meanwhile stays.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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

_PAGE = 25


@dataclass(frozen=True)
class SweepMarks:
    """One kind of mark: `kind` keys it, `partition` (one for all orgs: the sweep reads only the
    due ones) lists it by due time; `grace` is how long a request may still be at work on it,
    `retry` how long a claimed mark waits before it comes due again; `work` names it in logs."""

    kind: str
    partition: str
    grace: timedelta
    retry: timedelta
    work: str

    def put(
        self,
        platform: PlatformTable,
        mark_id: str,
        *,
        now: datetime,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Mark the work before a request changes anything; StoreUnavailable if the mark cannot
        be put (the request then changes nothing)."""
        platform.put(
            self.kind,
            mark_id,
            attributes={**(attributes or {}), "token": secrets.token_hex(16)},
            index=self._index(mark_id, due=now + self.grace),
            now=now,
        )

    def drop(
        self, platform: PlatformTable, mark_id: str, *, now: datetime, token: str | None = None
    ) -> None:
        """Remove the mark (with `token`, only the mark as the sweep read it). A failure is
        logged, not raised: the work it marked is done, and the sweep drops a mark whose work is
        gone."""
        try:
            platform.delete(
                self.kind, mark_id, now=now, expect=None if token is None else {"token": token}
            )
        except (ConditionFailed, ItemNotFound):
            pass  # marked again meanwhile: that request's mark stays
        except TenancyError as exc:
            logger.warning(
                f"a {self.work} mark could not be dropped; the sweep drops it",
                extra={"mark_id": mark_id, "error_type": type(exc).__name__},
            )

    def claim(
        self,
        platform: PlatformTable,
        mark: Item,
        *,
        now: datetime,
        retry: timedelta | None = None,
    ) -> str | None:
        """Take the mark as listed for this sweep: the new token it holds from now on (due again
        after `retry`, by default the marks' own), or None if it changed since it was listed
        (another sweep claimed it, a request marked it again, the work finished) or cannot be
        written now."""
        mark_id, token = str(mark.item_id), mark.attributes.get("token")
        if not isinstance(token, str):
            return None
        claimed = secrets.token_hex(16)
        try:
            platform.put(
                self.kind,
                mark_id,
                attributes={**mark.attributes, "token": claimed},
                index=self._index(mark_id, due=now + (retry or self.retry)),
                expect={"token": token},
                now=now,
            )
        except (ConditionFailed, ItemNotFound):
            return None
        except TenancyError as exc:
            logger.warning(
                f"a {self.work} mark could not be claimed; a later sweep retries",
                extra={"mark_id": mark_id, "error_type": type(exc).__name__},
            )
            return None
        return claimed

    def due(self, platform: PlatformTable, *, now: datetime) -> Iterator[Item]:
        """The marks whose time has come, oldest first (gsi1 is eventually consistent: the sweep
        reads the work again before acting on it)."""
        # '~' sorts after every mark id character, so marks due at exactly `now` are included.
        highest = f"{_iso(now)}#~"
        cursor: dict[str, str] | None = None
        while True:
            marks, cursor = platform.query_index(
                self.partition, now=now, sort_at_most=highest, limit=_PAGE, start=cursor
            )
            yield from marks
            if cursor is None:
                return

    def _index(self, mark_id: str, *, due: datetime) -> IndexKey:
        return IndexKey(partition=self.partition, sort=f"{_iso(due)}#{mark_id}")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
