"""credential_store: orgs, members, connections and the audit log (DESIGN.md routes), /health,
/openapi.json; and, on a schedule, the sweeps that carry on org deletions stopped midway and
retry the revocations still owed.

Thin handler: the shared resolver parses and validates, each route makes one call into
`credential_store.orgs`, `credential_store.org_deletion`, `credential_store.connections` or
`credential_store.audit_log`, which take their clients and `now` as arguments; the schedule
calls `org_deletion.finish_stalled_deletions`, then `revocations.retry_owed`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from credential_store import audit_log, connections, org_deletion, orgs, revocations
from credential_store.models import (
    AuditLogPage,
    Connection,
    ConnectionCreated,
    Connections,
    CreateConnection,
    CreateOrg,
    Member,
    Members,
    Org,
    OrgCreated,
    OrgDeleting,
    ReplaceCredentials,
    SetMemberRole,
)
from credential_store.services import services

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.api.openapi import openapi_document
from strongroom.redaction import get_logger
from strongroom.schedules import is_scheduled_invocation
from strongroom.tracing import create_tracer

logger = get_logger(service="credential_store")
tracer = create_tracer("credential_store")
app = create_resolver(logger)
# What an org's deletion leaves of the function's time for its answer.
_DELETION_REPLY_SECONDS = 2.0
# What a connection's deletion leaves after its revocation: recording and appending its outcome.
_REVOCATION_REPLY_SECONDS = 4.0

OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:@|+-]{1,128}$")]
ConnectionId = Annotated[str, Path(pattern=r"^conn_[a-z2-7]{26}$", max_length=31)]


@app.get("/health", tags=["platform"])
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/openapi.json", tags=["platform"])
def openapi() -> dict[str, Any]:
    return openapi_document()


@app.post("/orgs", tags=["orgs"])
def create_org(body: Annotated[CreateOrg, Body()]) -> tuple[OrgCreated, int]:
    caller = caller_from_event(app.current_event.raw_event)
    return orgs.create_org(services(), caller, body, now=_now(), request_id=_request_id()), 201


@app.get("/orgs/<org_id>", tags=["orgs"])
def get_org(org_id: OrgId) -> Org:
    caller = caller_from_event(app.current_event.raw_event)
    return orgs.get_org(services(), caller, org_id, now=_now())


@app.delete(
    "/orgs/<org_id>",
    tags=["orgs"],
    summary="Delete the org and everything in it; crypto-shred its key",
    description=(
        "Owner only, signed in within the last 5 minutes (else 401 `reauth_required`). Revokes"
        " the connections' OAuth grants, and those the org still owes a revocation for, at"
        " their providers, disables the org's KMS key at once"
        " and schedules its deletion, then deletes every item of the org but its audit chain."
        ' 204 when done; 202 `{"status": "deleting"}` when the request ran short of time'
        " (the key is already shredded and only the caller is still a member; until the"
        " deletion is done, adding a member or a connection, replacing credentials, starting"
        " an OAuth authorization or a backup, or minting a billing checkout answers 409, and a"
        " billing event takes no effect). A deletion that"
        " stopped, for time or by a fault, goes on with an owner's next DELETE (another owner's"
        " takes it over; one racing another may get 409) or, about 5 to 15 minutes later, by"
        " itself (a scheduled sweep; one that fails is retried every 10 minutes). Before the key"
        " is shredded, removing or demoting the owner who asked stops it."
    ),
    responses={
        202: {
            "description": "Stopped for time; it goes on by itself, or DELETE again",
            # Written out: building the model's schema here would cost every cold start.
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {"status": {"type": "string", "enum": ["deleting"]}},
                    }
                }
            },
        },
        204: {"description": "The org is deleted"},
    },
)
def delete_org(org_id: OrgId) -> Response[Any]:
    caller = caller_from_event(app.current_event.raw_event)
    deletion = org_deletion.delete_org(
        services(),
        caller,
        org_id,
        now=_now(),
        request_id=_request_id(),
        deadline=_deadline(_DELETION_REPLY_SECONDS),
    )
    if deletion.done:
        return Response(status_code=204, body="")
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=OrgDeleting().model_dump(),
    )


@app.get("/orgs/<org_id>/members", tags=["members"])
def list_members(
    org_id: OrgId, cursor: Annotated[str | None, Query(max_length=2048)] = None
) -> Members:
    caller = caller_from_event(app.current_event.raw_event)
    return orgs.list_members(services(), caller, org_id, now=_now(), cursor=cursor)


@app.put("/orgs/<org_id>/members/<user_id>", tags=["members"])
def set_member_role(
    org_id: OrgId, user_id: UserId, body: Annotated[SetMemberRole, Body()]
) -> Member:
    caller = caller_from_event(app.current_event.raw_event)
    return orgs.set_member_role(
        services(), caller, org_id, user_id, body.role, now=_now(), request_id=_request_id()
    )


@app.delete("/orgs/<org_id>/members/<user_id>", tags=["members"])
def remove_member(org_id: OrgId, user_id: UserId) -> Response[str]:
    caller = caller_from_event(app.current_event.raw_event)
    orgs.remove_member(services(), caller, org_id, user_id, now=_now(), request_id=_request_id())
    return Response(status_code=204, body="")


@app.post("/orgs/<org_id>/connections", tags=["connections"])
def create_connection(
    org_id: OrgId, body: Annotated[CreateConnection, Body()]
) -> tuple[ConnectionCreated, int]:
    caller = caller_from_event(app.current_event.raw_event)
    created = connections.create_connection(
        services(), caller, org_id, body, now=_now(), request_id=_request_id()
    )
    # Metadata only: the body holds secrets and is never logged.
    logger.info(
        "connection created",
        extra={
            "org_id": org_id,
            "connection_id": created.connection_id,
            "method": body.auth.method,
        },
    )
    return created, 201


@app.get("/orgs/<org_id>/connections", tags=["connections"])
def list_connections(
    org_id: OrgId, cursor: Annotated[str | None, Query(max_length=2048)] = None
) -> Connections:
    caller = caller_from_event(app.current_event.raw_event)
    return connections.list_connections(services(), caller, org_id, now=_now(), cursor=cursor)


@app.get("/orgs/<org_id>/connections/<connection_id>", tags=["connections"])
def get_connection(org_id: OrgId, connection_id: ConnectionId) -> Connection:
    caller = caller_from_event(app.current_event.raw_event)
    return connections.get_connection(services(), caller, org_id, connection_id, now=_now())


@app.put(
    "/orgs/<org_id>/connections/<connection_id>/credentials",
    tags=["connections"],
    summary="Replace the connection's secrets; revoke the tokens the rotation drops",
    description=(
        "Admins. Replaces the secrets (write-only) with the same method. The cached access"
        " token is dropped, and with a new `client_id` the OAuth grant too (the connection then"
        " waits for authorization). A dropped client-credentials or private-key token, or the"
        " old client's grant, is then revoked at the provider (RFC 7009) as the client it was"
        " issued to, waiting at most until 4 s before the function's timeout; the revocation"
        " is audited, and one the provider did not take is retried by the sweep. A token"
        " refreshed meanwhile answers 409."
    ),
)
def replace_credentials(
    org_id: OrgId, connection_id: ConnectionId, body: Annotated[ReplaceCredentials, Body()]
) -> Connection:
    caller = caller_from_event(app.current_event.raw_event)
    connection = connections.replace_credentials(
        services(),
        caller,
        org_id,
        connection_id,
        body,
        now=_now(),
        request_id=_request_id(),
        deadline=_deadline(_REVOCATION_REPLY_SECONDS),
    )
    logger.info("credentials replaced", extra={"org_id": org_id, "connection_id": connection_id})
    return connection


@app.delete(
    "/orgs/<org_id>/connections/<connection_id>",
    tags=["connections"],
    summary="Delete the connection and its secrets; revoke its grant at the provider",
    description=(
        "Admins. Deletes the secrets and the connection, then revokes its OAuth grant at the"
        " provider (RFC 7009) where there is one, waiting at most until 4 s before the"
        " function's timeout: still 204 when the provider hangs, with the revocation audited as"
        " `timed_out` and retried by the sweep."
    ),
    responses={204: {"description": "Deleted; the grant's revocation is audited"}},
)
def delete_connection(org_id: OrgId, connection_id: ConnectionId) -> Response[str]:
    caller = caller_from_event(app.current_event.raw_event)
    connections.delete_connection(
        services(),
        caller,
        org_id,
        connection_id,
        now=_now(),
        request_id=_request_id(),
        deadline=_deadline(_REVOCATION_REPLY_SECONDS),
    )
    logger.info("connection deleted", extra={"org_id": org_id, "connection_id": connection_id})
    return Response(status_code=204, body="")


@app.get("/orgs/<org_id>/audit", tags=["audit"])
def list_audit_events(
    org_id: OrgId,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = audit_log.DEFAULT_PAGE,
) -> AuditLogPage:
    caller = caller_from_event(app.current_event.raw_event)
    return audit_log.list_events(services(), caller, org_id, now=_now(), limit=limit, cursor=cursor)


def _now() -> datetime:
    return datetime.now(UTC)


def _deadline(reserve_seconds: float) -> float:
    """A `time.monotonic()` time to stop by: `reserve_seconds` before the function's timeout."""
    seconds_left = app.lambda_context.get_remaining_time_in_millis() / 1000
    return time.monotonic() + seconds_left - reserve_seconds


def _request_id() -> str:
    return str(app.current_event.request_context.request_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The HTTP routes, or the schedule that carries on org deletions that stopped midway and
    then tries again the revocations still owed."""
    if is_scheduled_invocation(event):

        def time_left() -> float:
            return context.get_remaining_time_in_millis() / 1000

        deletions = org_deletion.finish_stalled_deletions(
            services(), now=_now(), request_id=context.aws_request_id, time_left=time_left
        )
        logger.info("stalled org deletions swept", extra={"report": asdict(deletions)})
        # The time again: the deletions may have taken most of the function's.
        retried = revocations.retry_owed(
            services(), now=_now(), request_id=context.aws_request_id, time_left=time_left
        )
        logger.info("owed revocations swept", extra={"report": asdict(retried)})
        return {"deletions": asdict(deletions), "revocations": asdict(retried)}
    return handle_request(app, event, context)
