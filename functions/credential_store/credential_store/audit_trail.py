"""The audit entries of credential_store's changes: recorded in the change's own transaction,
appended to the org's chain after it commits.

A change therefore never stands without its audit entry, and an audit outage after the commit
does not turn a change that happened into an error (for `POST /orgs`, an error would make the
client create a second org): the entries wait, and the org's next flush or the sweep appends
them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from credential_store.services import Services
from strongroom.api import Caller
from strongroom.audit import AuditAction, AuditEntry
from strongroom.tenancy import Create


def entry(
    caller: Caller,
    action: AuditAction,
    target: tuple[str, str],
    *,
    request_id: str,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """A successful action of the caller on `target` (kind, id)."""
    target_kind, target_id = target
    return AuditEntry(
        actor=caller.sub,
        action=action.value,
        request_id=request_id,
        outcome="success",
        target_kind=target_kind,
        target_id=target_id,
        details=details or {},
    )


def recorded(services: Services, org_id: str, *entries: AuditEntry, now: datetime) -> list[Create]:
    """The writes that record `entries` with the change whose transaction they join."""
    return services.audit.prepare(org_id, *entries, now=now)
