"""The operator commands of DESIGN.md's encryption section: rotate an org's DEK, and re-encrypt
its existing values under the new one. Each is audited in the org's chain, in the same
DynamoDB transaction as the change it records (no change stands unaudited).

They run with an operator's credentials, not a function's: `strongroom rotate-dek ORG` and
`strongroom reseal ORG` run them against the local stack with the functions' settings. Against
a deployed stack they need the org key's `kms:GenerateDataKey` and `kms:Decrypt` (with the
org's encryption context) and the table's item actions on the org's partition, plus what
`AuditLog.flush` needs.

    version = rotate_dek(table, keyrings, audit, org_id, actor="operator:alice", now=now,
                         request_id=rid)
    report = reseal(table, keyrings, audit, org_id, actor="operator:alice", now=now,
                    request_id=rid)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strongroom.audit import AuditAction, AuditEntry, AuditLog
from strongroom.crypto import Keyrings
from strongroom.oauth.resealing import Resealer, ResealReport, reseal_connections
from strongroom.tenancy import TenantTable


def rotate_dek(
    table: TenantTable,
    keyrings: Keyrings,
    audit: AuditLog,
    org_id: str,
    *,
    actor: str,
    now: datetime,
    request_id: str,
) -> int:
    """Make a new DEK the org's current one, with its `dek.rotate` entry; its version. Values
    sealed under older versions still open (see `reseal`)."""

    def recorded(version: int) -> list[Any]:
        entry = AuditEntry(
            actor=actor,
            action=AuditAction.DEK_ROTATE.value,
            request_id=request_id,
            outcome="success",
            target_kind="org",
            target_id=org_id,
            details={"dek_version": version},
        )
        return table.transaction_items(org_id, audit.prepare(org_id, entry, now=now), now=now)

    version = keyrings.rotate_dek(org_id, now=now, also=recorded)
    audit.flush_after_commit(org_id, now=now)
    return version


def reseal(
    table: TenantTable,
    keyrings: Keyrings,
    audit: AuditLog,
    org_id: str,
    *,
    actor: str,
    now: datetime,
    request_id: str,
) -> ResealReport:
    """Re-encrypt every connection secret of the org under its current DEK, each connection with
    its `credential.reseal` entry."""
    resealer = Resealer(audit=audit, actor=actor, request_id=request_id)
    return reseal_connections(table, keyrings, resealer, org_id, now=now)
