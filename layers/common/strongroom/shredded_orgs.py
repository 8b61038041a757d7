"""Orgs whose deletion has shredded their key: no tenant write may land in them any more.

Once an org's deletion (credential_store.org_deletion) has disabled the org's KMS key, it sets
`key_shredded_at` on the org item and then deletes every item of the org's partition, in sort
key order. A write that lands after the deletion has passed its item's place would outlive the
org, and one that needs the org's key would fail with a KMS error (or, in a process that still
holds the org's DEK, seal under a key nobody can use any more). So each tenant write is refused
(409) on the org item as read, and holds only while the org item carries no `key_shredded_at`
when it lands: `unshredded()` beside it in its transaction, or `UNSHREDDED` in the expectation
of its own write on the org item (a transaction touches each item once).

    org = table.get(org_id, ORG_KIND, now=now)
    refuse_if_shredded(org)
    ...
    try:
        table.transact(org_id, [Create(...), unshredded(), ...], now=now)
    except ConditionFailed:
        if is_shredded(table, org_id, now=now):
            raise Conflict(BEING_DELETED) from None
        raise
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Final

from strongroom.errors import Conflict
from strongroom.tenancy import Check, Item, TenancyError, TenantTable

ORG_KIND: Final = "ORG"
KEY_SHREDDED_AT: Final = "key_shredded_at"
# The expectation a write on the org item carries: the key not shredded when it lands.
UNSHREDDED: Final[Mapping[str, None]] = MappingProxyType({KEY_SHREDDED_AT: None})
BEING_DELETED: Final = "The org is being deleted."


def unshredded() -> Check:
    """A transaction's guard: the org's key is not shredded when the write lands."""
    return Check(ORG_KIND, expect=UNSHREDDED)


def refuse_if_shredded(org: Item) -> None:
    """Conflict if the org item, as read, says the org's key is shredded."""
    if KEY_SHREDDED_AT in org.attributes:
        raise Conflict(BEING_DELETED)


def is_shredded(table: TenantTable, org_id: str, *, now: datetime) -> bool:
    """Whether the org's key is shredded, as the org item says now (read after a write's
    condition failed, it tells the org's deletion from the write's other conditions). False if
    the table cannot say: the write's own condition, or its own answer, stands."""
    try:
        org = table.get(org_id, ORG_KIND, now=now)
    except TenancyError:  # ItemNotFound too: deleted already, the caller's membership with it
        return False
    return KEY_SHREDDED_AT in org.attributes
