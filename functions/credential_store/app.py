"""credential_store: orgs and members (DESIGN.md routes), plus /health and /openapi.json.

Thin handler: the shared resolver parses and validates, each route makes one call into
`credential_store.orgs`, which takes its clients and `now` as arguments.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from credential_store import orgs
from credential_store.models import CreateOrg, Member, Members, Org, OrgCreated, SetMemberRole
from credential_store.services import services

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.api.openapi import openapi_document
from strongroom.redaction import get_logger

logger = get_logger(service="credential_store")
tracer = Tracer(service="credential_store")
app = create_resolver(logger)

OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]
UserId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:@|+-]{1,128}$")]


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


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return str(app.current_event.request_context.request_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_request(app, event, context)
