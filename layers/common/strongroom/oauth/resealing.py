"""Re-encryption of an org's connection secrets under its current DEK, after a DEK rotation.

An operator command (DESIGN.md: "DEK rotation and re-encryption of existing values are operator
commands"): `Keyrings.rotate_dek` makes a new DEK current, and `reseal_connections` moves every
sealed field of every connection of the org, and of every revocation it still owes, onto it, so
that old DEK versions stop guarding anything. The plaintext never changes and never leaves this
process.

Each connection is written back only where a value moves forward, by a conditional update that
expects exactly the sealed values it read, in one transaction with its `credential.reseal` audit
entry: a credential replaced or a token refreshed meanwhile is read again and resealed then,
never overwritten with an older value, and no connection is rewritten unaudited.

Warm functions keep sealing under the previous DEK until their cache's max age has passed since
the rotation (and a request that sealed then may still be writing, for at most Lambda's longest
timeout). A run before then reports `settled: False` and when to run again; a run after it
leaves nothing under an older DEK but the values that do not open, which it lists and audits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from strongroom.audit import AuditAction, AuditEntry, AuditLog
from strongroom.audit.events import Outcome
from strongroom.crypto import InvalidSealedValue, Keyrings, OrgKeyring
from strongroom.crypto.sealed import version_of
from strongroom.oauth.connection import (
    CONNECTION_KIND,
    OWED_CONNECTION_ID,
    OWED_REVOCATION_KIND,
    SEALED_KIND,
    SEALED_PREFIX,
)
from strongroom.oauth.exceptions import ResealContention
from strongroom.tenancy import (
    ConditionFailed,
    Item,
    ItemNotFound,
    TenantTable,
    Update,
    every_item,
)

_PAGE = 100
# A connection changed by others this many times in a row while being resealed is left to the
# next run.
_ATTEMPTS = 3
# Lambda's longest timeout: a request that sealed under a cached DEK writes within it.
_LONGEST_REQUEST = timedelta(minutes=15)


@dataclass(frozen=True)
class ResealReport:
    """What a run did: the DEK version it sealed under, connections seen, fields written under
    it, fields already under it (or a newer one), the connections holding a value that does not
    open (`unopenable`: left as they are, each audited as a failed `credential.reseal`); whether
    warm caches could still seal under an older DEK (`settled`), and if so when to run again."""

    dek_version: int
    connections: int
    resealed: int
    already_current: int
    unopenable: tuple[str, ...]
    settled: bool
    run_again_after: str | None


@dataclass(frozen=True)
class Resealer:
    """Who reseals, for the audit entries: the operator and the command's request id."""

    audit: AuditLog
    actor: str
    request_id: str


def reseal_connections(
    table: TenantTable, keyrings: Keyrings, by: Resealer, org_id: str, *, now: datetime
) -> ResealReport:
    """Reseal every sealed field of the org's connections and owed revocations under its
    current DEK."""
    # The current version as stored now, not as this process last cached it.
    keyrings.cache.forget(org_id)
    in_use = keyrings.dek_in_use(org_id)
    keyring = keyrings.for_org(org_id)
    connections = resealed = already_current = 0
    unopenable: list[str] = []
    for kind in (CONNECTION_KIND, OWED_REVOCATION_KIND):
        for item in _every(table, org_id, kind, now=now):
            connections += kind == CONNECTION_KIND
            written, current, damaged = _reseal_one(table, keyring, by, org_id, item, now=now)
            resealed += written
            already_current += current
            if damaged:
                unopenable.append(damaged)
    by.audit.flush_after_commit(org_id, now=now)
    settles_at = in_use.since + timedelta(seconds=keyrings.cache.max_age_seconds) + _LONGEST_REQUEST
    return ResealReport(
        dek_version=in_use.version,
        connections=connections,
        resealed=resealed,
        already_current=already_current,
        unopenable=tuple(unopenable),
        settled=now >= settles_at,
        run_again_after=None if now >= settles_at else _iso(settles_at),
    )


def _reseal_one(
    table: TenantTable,
    keyring: OrgKeyring,
    by: Resealer,
    org_id: str,
    item: Item,
    *,
    now: datetime,
) -> tuple[int, int, str | None]:
    """(fields written, fields already current, the connection's id if a value did not open)
    for one connection, or one revocation still owed (its copies of a connection's values open
    under that connection's id). A value that does not open (damaged, or sealed elsewhere) is
    left as it is and its failure audited; the connection's other values still move, and the
    run goes on with the next."""
    owed = item.kind == OWED_REVOCATION_KIND
    connection_id = str(item.attributes[OWED_CONNECTION_ID] if owed else item.item_id)
    written, current, damaged = _move_forward(
        table, keyring, by, org_id, item, connection_id=connection_id, now=now
    )
    if not damaged:
        return written, current, None
    _record_unopenable(by, org_id, connection_id, damaged, now=now)
    return written, current, connection_id


def _move_forward(
    table: TenantTable,
    keyring: OrgKeyring,
    by: Resealer,
    org_id: str,
    item: Item,
    *,
    connection_id: str,
    now: datetime,
) -> tuple[int, int, list[str]]:
    """`_reseal_one`'s writes: (fields written, fields current, fields that did not open)."""
    kind, item_id = item.kind, item.item_id
    for _ in range(_ATTEMPTS):
        changes: dict[str, bytes] = {}
        current = 0
        damaged: list[str] = []
        for name, value in _sealed_fields(item):
            field = name.removeprefix(SEALED_PREFIX)
            try:
                moved = keyring.reseal_field(
                    value, kind=SEALED_KIND, item_id=connection_id, field=field
                )
            except InvalidSealedValue:
                damaged.append(field)
                continue
            if moved == value:
                current += 1
            else:
                changes[name] = moved
        if not changes:
            return 0, current, damaged
        entry = _reseal_entry(
            by,
            connection_id,
            "success",
            {
                "fields": sorted(name.removeprefix(SEALED_PREFIX) for name in changes),
                "dek_version": max(version_of(value) or 0 for value in changes.values()),
            },
        )
        try:
            table.transact(
                org_id,
                [
                    Update(
                        kind,
                        item_id,
                        changes=changes,
                        expect={name: item.attributes[name] for name in changes},
                    ),
                    *by.audit.prepare(org_id, entry, now=now),
                ],
                now=now,
            )
        except (ConditionFailed, ItemNotFound):
            try:
                item = table.get(org_id, kind, item_id, now=now)
            except ItemNotFound:
                return 0, 0, []  # deleted meanwhile: nothing left to reseal
            continue
        return len(changes), current, damaged
    raise ResealContention("a connection kept changing while it was being resealed")


def _record_unopenable(
    by: Resealer, org_id: str, connection_id: str, fields: list[str], *, now: datetime
) -> None:
    """A failed `credential.reseal` naming the fields (never their values) that did not open."""
    entry = _reseal_entry(
        by, connection_id, "failure", {"fields": sorted(fields), "reason": "unopenable"}
    )
    by.audit.record_outcome(org_id, entry, now=now)


def _reseal_entry(
    by: Resealer, connection_id: str, outcome: Outcome, details: dict[str, Any]
) -> AuditEntry:
    return AuditEntry(
        actor=by.actor,
        action=AuditAction.CREDENTIAL_RESEAL.value,
        request_id=by.request_id,
        outcome=outcome,
        target_kind="connection",
        target_id=connection_id,
        details=details,
    )


def _every(table: TenantTable, org_id: str, kind: str, *, now: datetime) -> Iterator[Item]:
    return every_item(lambda cursor: table.query(org_id, kind, now=now, limit=_PAGE, cursor=cursor))


def _sealed_fields(item: Item) -> list[tuple[str, Any]]:
    return sorted(
        (name, value)
        for name, value in item.attributes.items()
        if name.startswith(SEALED_PREFIX) and isinstance(value, bytes)
    )


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
