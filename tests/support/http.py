"""Build API Gateway HTTP API (payload v2) events from the base sample event."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.support.events import load_event


def http_event(
    method: str,
    path: str,
    *,
    route: str | None = None,
    path_parameters: dict[str, str] | None = None,
    body: Any = None,
    raw_body: str | bytes | None = None,
    sub: str | None = "alice",
    claims: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A v2 event for `method path`; `sub=None` drops the authorizer context entirely."""
    event = load_event("http_api_v2_base")
    route_key = f"{method} {route or path}"
    event["routeKey"] = route_key
    event["rawPath"] = path
    context = event["requestContext"]
    context["routeKey"] = route_key
    context["http"]["method"] = method
    context["http"]["path"] = path
    if path_parameters:
        event["pathParameters"] = path_parameters
    if sub is None:
        del context["authorizer"]
    else:
        context["authorizer"]["jwt"]["claims"]["sub"] = sub
        context["authorizer"]["jwt"]["claims"].update(claims or {})
    if raw_body is not None:
        if isinstance(raw_body, bytes):
            event["body"] = base64.b64encode(raw_body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = raw_body
    elif body is not None:
        event["body"] = json.dumps(body)
    return event
