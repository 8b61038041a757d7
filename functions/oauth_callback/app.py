"""oauth_callback: start a connection's OAuth authorization, and the provider's redirect target.

Thin handler: the shared resolver parses and validates, each route makes one call into
`oauth_flow.flow`, which takes its clients and `now` as arguments. The callback never logs its
query (it holds the code and the state) and answers only with a redirect to the return URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.shared.cookies import Cookie, SameSite
from aws_lambda_powertools.utilities.typing import LambdaContext
from oauth_flow import flow
from oauth_flow.models import AuthorizationStarted
from oauth_flow.services import services

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.redaction import get_logger
from strongroom.tracing import create_tracer

logger = get_logger(service="oauth_callback")
tracer = create_tracer("oauth_callback")
app = create_resolver(logger)

OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]
ConnectionId = Annotated[str, Path(pattern=r"^conn_[a-z2-7]{26}$", max_length=31)]
# Query values are bounded but not patterned here: a malformed state or an unknown error code
# is the flow's to answer (with a redirect), not a 422 that a browser would show.
QueryText = Annotated[str | None, Query(max_length=2048)]
# The redirect carries no secret, but the page it replaces had a code and a state in its URL.
_NO_LEAK_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@app.post("/orgs/<org_id>/connections/<connection_id>/authorize", tags=["oauth"])
def authorize(org_id: OrgId, connection_id: ConnectionId) -> Response[AuthorizationStarted]:
    caller = caller_from_event(app.current_event.raw_event)
    started = flow.start_authorization(
        services(), caller, org_id, connection_id, now=_now(), request_id=_request_id()
    )
    logger.info("oauth flow started", extra={"org_id": org_id, "connection_id": connection_id})
    return Response(
        status_code=200,
        content_type="application/json",
        body=started.body,
        headers={"Cache-Control": "no-store"},
        cookies=[_binding_cookie(started.binding, int(flow.STATE_TTL.total_seconds()))],
    )


@app.get("/oauth/callback", tags=["oauth"])
def callback(
    code: QueryText = None,
    state: QueryText = None,
    error: QueryText = None,
    iss: QueryText = None,
) -> Response[str]:
    finished = flow.finish_authorization(
        services(),
        state=state,
        code=code,
        error=error,
        iss=iss,
        binding=_cookie(flow.BINDING_COOKIE),
        now=_now(),
        request_id=_request_id(),
    )
    return Response(
        status_code=302,
        body="",
        headers={"Location": finished.location, **_NO_LEAK_HEADERS},
        # The binding is spent: clear it.
        cookies=[_binding_cookie("", 0)],
    )


def _binding_cookie(value: str, max_age: int) -> Cookie:
    # The `__Host-` prefix holds only with exactly this shape: Secure, Path=/ and no Domain.
    return Cookie(
        name=flow.BINDING_COOKIE,
        value=value,
        path="/",
        secure=True,
        http_only=True,
        same_site=SameSite.LAX_MODE,
        max_age=max_age,
    )


def _cookie(name: str) -> str | None:
    """The value of a request cookie; None if absent or sent more than once (ambiguous)."""
    values = [
        value
        for cookie in app.current_event.cookies or []
        for key, sep, value in [cookie.strip().partition("=")]
        if sep and key == name
    ]
    return values[0] if len(values) == 1 else None


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return str(app.current_event.request_context.request_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle_request(app, event, context)
