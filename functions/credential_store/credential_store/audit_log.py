"""The org's audit log as its admins read it: events newest first, a page at a time.

The events are shown as stored (their details were redacted when written). A seq of the page that
cannot be read as an event is listed in `missing`, so a gap never passes for a shorter page, and
one whose event was edited since written (its hash, or its link to the page's event before it,
does not hold) in `tampered`; an audit store failure fails the whole request (AuditUnavailable),
never answers a partial page.
"""

from __future__ import annotations

from datetime import datetime

from credential_store.models import AuditLogEvent, AuditLogPage
from credential_store.orgs import require_role
from credential_store.services import Services
from strongroom.api import Caller
from strongroom.audit import AuditEvent
from strongroom.roles import Role

DEFAULT_PAGE = 50


def list_events(
    services: Services,
    caller: Caller,
    org_id: str,
    *,
    now: datetime,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
) -> AuditLogPage:
    """A page of the org's events for an admin or owner (NotFound for non-members, Forbidden for
    members); InvalidAuditCursor for a cursor that is malformed or another org's."""
    # The role first: a non-member learns nothing, not even whether a cursor is valid.
    require_role(services, caller, org_id, Role.ADMIN, now=now)
    page = services.audit.list_events(org_id, now=now, limit=limit, cursor=cursor)
    return AuditLogPage(
        events=[_shown(event) for event in page.events],
        next_cursor=page.cursor,
        missing=list(page.missing),
        tampered=list(page.tampered),
    )


def _shown(event: AuditEvent) -> AuditLogEvent:
    # From the stored document: the same field names and the same time text as the chain holds.
    document = event.document()
    return AuditLogEvent.model_validate(
        {name: document.get(name) for name in AuditLogEvent.model_fields}
    )
