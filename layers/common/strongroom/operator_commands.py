"""The operator commands of DESIGN.md's encryption section: rotate an org's DEK, and re-encrypt
its existing values under the new one. Each is audited in the org's chain.

They run with an operator's credentials, not a function's: `strongroom rotate-dek ORG` and
`strongroom reseal ORG` run them against the local stack with the functions' settings. Against
a deployed stack they need the org key's `kms:GenerateDataKey` and `kms:Decrypt` (with the
org's encryption context) and the table's item actions on the org's partition, plus what
`AuditLog.append` needs.

    version = rotate_dek(keyrings, audit, org_id, actor="operator:alice", now=now, request_id=rid)
    report = reseal(table, keyrings, audit, org_id, actor="operator:alice", now=now, request_id=rid)

The action comes first, its entry second: if the audit log cannot take the entry, AuditError
says so, and the action (which a retry repeats harmlessly: a new rotation, an empty reseal)
stands unaudited until the command is run again.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from strongroom.audit import AuditAction, AuditEntry, AuditLog
from strongroom.crypto import Keyrings
from strongroom.oauth.resealing import ResealReport, reseal_connections
from strongroom.tenancy import TenantTable


def rotate_dek(
    keyrings: Keyrings, audit: AuditLog, org_id: str, *, actor: str, now: datetime, request_id: str
) -> int:
    """Make a new DEK the org's current one; its version. Old values still open (see `reseal`)."""
    version = keyrings.rotate_dek(org_id, now=now)
    _audit(
        audit,
        org_id,
        AuditAction.DEK_ROTATE,
        actor=actor,
        details={"dek_version": version},
        now=now,
        request_id=request_id,
    )
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
    """Re-encrypt every connection secret of the org under its current DEK."""
    report = reseal_connections(table, keyrings, org_id, now=now)
    _audit(
        audit,
        org_id,
        AuditAction.CREDENTIAL_RESEAL,
        actor=actor,
        details=asdict(report),
        now=now,
        request_id=request_id,
    )
    return report


def _audit(
    audit: AuditLog,
    org_id: str,
    action: AuditAction,
    *,
    actor: str,
    details: dict[str, int],
    now: datetime,
    request_id: str,
) -> None:
    audit.append(
        org_id,
        AuditEntry(
            actor=actor,
            action=action.value,
            request_id=request_id,
            outcome="success",
            target_kind="org",
            target_id=org_id,
            details=details,
        ),
        now=now,
    )
