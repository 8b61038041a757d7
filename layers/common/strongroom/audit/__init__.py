"""The tamper-evident audit log: per-org hash chains of events in S3 under Object Lock.

    audit = AuditLog(s3=s3, dynamodb=dynamodb, settings=settings)      # once per process
    audit.append(org_id, AuditEntry(actor=caller.sub, action=AuditAction.CREDENTIAL_WRITE,
                                    target_kind="connection", target_id=connection_id,
                                    request_id=request_id, outcome="success",
                                    details={"method": "client_credentials"}), now=now)
    page = audit.list_events(org_id, now=now, limit=50, cursor=cursor)   # newest first
    report = audit.verify_chain(org_id, now=now)                         # report.ok / .problems

    # An entry recorded with its change, in the change's own transaction, appended after it:
    table.transact(org_id, [*change, *audit.prepare(org_id, entry, now=now)], now=now)
    audit.flush(org_id, now=now)      # a failure leaves the entries to the next flush or sweep
    audit.sweep(now=now)              # scheduled: orgs whose entries no request appended

Each event is one object `audit/<org_id>/<seq>.json` written only if absent, with COMPLIANCE
retention until now + `audit_retention_days`; it carries the SHA-256 of the previous event and
the org's chain head (`AUDIT#HEAD`: seq and hash) moves by conditional update. `details` pass
through `strongroom.redaction.redact`. S3/DynamoDB failures raise `AuditUnavailable`; tampering
is reported by the verifier, and an append refuses to extend a chain it finds broken
(`AuditChainBroken`). Recorded entries are appended exactly once (`strongroom.audit.pending`).
"""

from typing import TYPE_CHECKING

from strongroom.audit.events import GENESIS_HASH, AuditAction, AuditEntry, AuditEvent, Outcome
from strongroom.audit.exceptions import (
    AuditChainBroken,
    AuditContention,
    AuditError,
    AuditUnavailable,
    InvalidAuditCursor,
    InvalidAuditEvent,
)
from strongroom.audit.log import AuditLog, AuditPage, ChainHead
from strongroom.audit.objects import event_key

if TYPE_CHECKING:
    from strongroom.audit.verify import ChainProblem, ChainReport, ProblemKind

__all__ = [
    "GENESIS_HASH",
    "AuditAction",
    "AuditChainBroken",
    "AuditContention",
    "AuditEntry",
    "AuditError",
    "AuditEvent",
    "AuditLog",
    "AuditPage",
    "AuditUnavailable",
    "ChainHead",
    "ChainProblem",
    "ChainReport",
    "InvalidAuditCursor",
    "InvalidAuditEvent",
    "Outcome",
    "ProblemKind",
    "event_key",
]


def __getattr__(name: str) -> object:
    # The verifier is loaded on first use: no function verifies chains at run time, so their
    # cold starts do not import it.
    if name in {"ChainProblem", "ChainReport", "ProblemKind"}:
        from strongroom.audit import verify  # noqa: PLC0415

        return getattr(verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
