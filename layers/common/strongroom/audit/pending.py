"""Audit entries recorded with their change, and the marks that bring the sweep to them.

A change and its audit entry commit in one DynamoDB transaction; the event is appended to the
chain in S3 afterwards (`AuditLog.flush`). Items:

    tenant    pk=<org_id>  sk=AUDIT_PENDING#<entry id>   entry (canonical JSON, details
              redacted), occurred_at, claim_seq (the seq a flush is appending it at)
    platform  pk=AUDIT_SWEEP#<org_id>  sk=AUDIT_SWEEP    org_id, token
              gsi1pk=AUDIT_SWEEP_DUE#<shard>  gsi1sk=<now + grace, ISO-8601 Z>#<org_id>

The mark is written before the change, so an org never holds a pending entry without one; the
sweep reads only marks whose grace has passed, when the request that wrote them has ended one way
or the other, and drops a mark only if the org then has nothing pending and nobody marked it
again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from pydantic import ValidationError

from strongroom.audit.events import AuditEntry, canonical_json
from strongroom.tenancy import IndexKey, Item

PENDING_KIND: Final = "AUDIT_PENDING"
SWEEP_KIND: Final = "AUDIT_SWEEP"
SWEEP_PARTITION: Final = "AUDIT_SWEEP_DUE"
SHARDS: Final = 4
# Longer than any Lambda invocation may run (15 minutes), so a mark is never swept while the
# request that wrote it may still commit its change.
SWEEP_GRACE: Final = timedelta(minutes=16)
# When an org's sweep failed, its mark comes due again after this.
SWEEP_RETRY: Final = timedelta(minutes=5)
_RECORDED = itertools.count()


@dataclass(frozen=True, slots=True)
class PendingEntry:
    """A recorded entry not yet known to be in the chain."""

    entry_id: str
    entry: AuditEntry
    occurred_at: datetime
    claim_seq: int | None


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What one sweep did: orgs visited, events appended, orgs (or shards) that failed."""

    orgs: int
    appended: int
    failed: int


def new_entry_id(now: datetime) -> str:
    """Milliseconds since the epoch, this process's count of entries (24 bits) and 40 random
    bits: ids list in the order of their time and, within one process, of their recording
    (entries of one change, or of one request, share its `now`)."""
    count = next(_RECORDED) & 0xFFFFFF
    return f"{int(now.timestamp() * 1000):013d}-{count:06x}{secrets.token_hex(5)}"


def pending_attributes(
    entry: AuditEntry, *, details: dict[str, object], occurred_at: datetime
) -> dict[str, object]:
    fields = entry.model_dump()
    fields["details"] = details
    return {
        "entry": canonical_json(fields).decode("utf-8"),
        "occurred_at": _iso(occurred_at),
    }


def pending_from_item(item: Item) -> PendingEntry | None:
    """The entry an AUDIT_PENDING item holds, or None if the item is malformed."""
    attributes = item.attributes
    claim = attributes.get("claim_seq")
    try:
        entry = AuditEntry.model_validate(json.loads(str(attributes["entry"])))
        occurred_at = datetime.strptime(
            str(attributes["occurred_at"]), "%Y-%m-%dT%H:%M:%S.%fZ"
        ).replace(tzinfo=UTC)
    except (KeyError, ValueError, ValidationError):
        return None
    if item.item_id is None or not (claim is None or (type(claim) is int and claim >= 1)):
        return None
    return PendingEntry(str(item.item_id), entry, occurred_at, claim)


def sweep_index(org_id: str, *, due: datetime) -> IndexKey:
    """Where the org's mark is listed: its shard, by the time it comes due."""
    return IndexKey(
        partition=f"{SWEEP_PARTITION}#{_shard_of(org_id)}", sort=f"{_iso(due)}#{org_id}"
    )


def sweep_partitions(now: datetime) -> Iterator[tuple[str, str]]:
    """Each shard's partition, with the highest sort value that is due at `now`."""
    # '~' sorts after every org id character, so marks due at exactly `now` are included.
    for shard in range(SHARDS):
        yield f"{SWEEP_PARTITION}#{shard}", f"{_iso(now)}#~"


def _shard_of(org_id: str) -> int:
    return hashlib.sha256(org_id.encode("ascii")).digest()[0] % SHARDS


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
