"""signed_url_issuer: a connection's backups, a backup's manifest, and expiring download links.

Thin handler: the shared resolver parses and validates, each route makes one call into
`backup_downloads.backups`, which takes its clients and `now` as arguments. A download URL is a
bearer credential: it is returned with `Cache-Control: no-store` and never logged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from backup_downloads import backups
from backup_downloads.models import BackupDetail, Backups, DownloadLink, DownloadRequest
from backup_downloads.services import services

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.redaction import get_logger
from strongroom.tracing import create_tracer

logger = get_logger(service="signed_url_issuer")
tracer = create_tracer("signed_url_issuer")
app = create_resolver(logger)

OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]
ConnectionId = Annotated[str, Path(pattern=r"^conn_[a-z2-7]{26}$", max_length=31)]
BackupId = Annotated[str, Path(pattern=r"^bkp_[a-z2-7]{26}$", max_length=30)]


@app.get("/orgs/<org_id>/connections/<connection_id>/backups", tags=["backups"])
def list_backups(
    org_id: OrgId,
    connection_id: ConnectionId,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Backups:
    caller = caller_from_event(app.current_event.raw_event)
    return backups.list_backups(
        services(), caller, org_id, connection_id, now=_now(), limit=limit, cursor=cursor
    )


@app.get("/orgs/<org_id>/backups/<backup_id>", tags=["backups"])
def get_backup(org_id: OrgId, backup_id: BackupId) -> BackupDetail:
    caller = caller_from_event(app.current_event.raw_event)
    return backups.get_backup(services(), caller, org_id, backup_id, now=_now())


@app.post("/orgs/<org_id>/backups/<backup_id>/download-url", tags=["backups"])
def issue_download_url(
    org_id: OrgId,
    backup_id: BackupId,
    body: Annotated[DownloadRequest | None, Body()] = None,
) -> Response[DownloadLink]:
    caller = caller_from_event(app.current_event.raw_event)
    link = backups.issue_download_url(
        services(),
        caller,
        org_id,
        backup_id,
        body or DownloadRequest(),
        now=_now(),
        request_id=_request_id(),
    )
    logger.info(
        "download url issued",
        extra={
            "org_id": org_id,
            "backup_id": backup_id,
            "resource": link.resource,
            "expires_in": link.expires_in,
        },
    )
    return Response(
        status_code=200,
        content_type="application/json",
        body=link,
        headers={"Cache-Control": "no-store"},
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return str(app.current_event.request_context.request_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_request(app, event, context)
