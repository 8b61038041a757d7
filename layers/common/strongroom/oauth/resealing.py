"""Re-encryption of an org's connection secrets under its current DEK, after a DEK rotation.

An operator command (DESIGN.md: "DEK rotation and re-encryption of existing values are operator
commands"): `Keyrings.rotate_dek` makes a new DEK current, and `reseal_connections` moves every
sealed field of every connection of the org onto it, so that old DEK versions stop guarding
anything. The plaintext never changes and never leaves this process.

Each connection is written back only where a value changed, by a conditional update that expects
exactly the sealed values it read: a credential replaced or a token refreshed meanwhile is read
again and resealed then, never overwritten with an older value. Running it again is safe; a
second run finds nothing left to reseal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strongroom.crypto import Keyrings, OrgKeyring
from strongroom.oauth.connection import CONNECTION_KIND, SEALED_KIND, SEALED_PREFIX
from strongroom.oauth.exceptions import ResealContention
from strongroom.tenancy import ConditionFailed, Item, ItemNotFound, TenantTable

_PAGE = 100
# A connection changed by others this many times in a row while being resealed is left for the
# next run (its new values were sealed under the current DEK anyway).
_ATTEMPTS = 3


@dataclass(frozen=True)
class ResealReport:
    """What a run did: connections seen, fields written under the current DEK, fields that were
    already under it, and that DEK's version."""

    dek_version: int
    connections: int
    resealed: int
    already_current: int


def reseal_connections(
    table: TenantTable, keyrings: Keyrings, org_id: str, *, now: datetime
) -> ResealReport:
    """Reseal every sealed field of the org's connections under its current DEK."""
    # The current version as stored now, not as this process last cached it.
    keyrings.cache.forget(org_id)
    keyring = keyrings.for_org(org_id)
    connections = resealed = already_current = 0
    cursor: str | None = None
    while True:
        page = table.query(org_id, CONNECTION_KIND, now=now, limit=_PAGE, cursor=cursor)
        for item in page.items:
            connections += 1
            written, current = _reseal_one(table, keyring, org_id, item, now=now)
            resealed += written
            already_current += current
        cursor = page.cursor
        if cursor is None:
            break
    return ResealReport(
        dek_version=keyrings.current_version(org_id),
        connections=connections,
        resealed=resealed,
        already_current=already_current,
    )


def _reseal_one(
    table: TenantTable, keyring: OrgKeyring, org_id: str, item: Item, *, now: datetime
) -> tuple[int, int]:
    """(fields written, fields already current) for one connection."""
    connection_id = str(item.item_id)
    for _ in range(_ATTEMPTS):
        changes: dict[str, bytes] = {}
        current = 0
        for name, value in _sealed_fields(item):
            field = name.removeprefix(SEALED_PREFIX)
            moved = keyring.reseal_field(
                value, kind=SEALED_KIND, item_id=connection_id, field=field
            )
            if moved == value:
                current += 1
            else:
                changes[name] = moved
        if not changes:
            return 0, current
        try:
            table.update(
                org_id,
                CONNECTION_KIND,
                connection_id,
                changes=changes,
                expect={name: item.attributes[name] for name in changes},
                now=now,
            )
        except ConditionFailed:
            try:
                item = table.get(org_id, CONNECTION_KIND, connection_id, now=now)
            except ItemNotFound:
                return 0, 0  # deleted meanwhile: nothing left to reseal
            continue
        except ItemNotFound:
            return 0, 0
        return len(changes), current
    raise ResealContention("a connection kept changing while it was being resealed")


def _sealed_fields(item: Item) -> list[tuple[str, Any]]:
    return sorted(
        (name, value)
        for name, value in item.attributes.items()
        if name.startswith(SEALED_PREFIX) and isinstance(value, bytes)
    )
