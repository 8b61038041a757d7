"""A Powertools HTTP API (payload v2) resolver with Strongroom's validation and error mapping.

Every function builds its resolver here, so every route answers errors in one shape:
malformed JSON 400, unknown or invalid fields 422 (naming the field, never echoing the value),
a body over 256 KiB 413 before any parsing, anything unexpected a bare 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from strongroom.error_responses import error_response
from strongroom.errors import (
    InvalidField,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    StrongroomError,
)

MAX_BODY_BYTES = 256 * 1024
# No request body of ours nests deeper than a few levels.
MAX_JSON_DEPTH = 32
_TOO_LARGE = "The request body is larger than 256 KiB."
_MAX_DETAIL_ERRORS = 5
# Validation error types that mean "could not parse" rather than "a field is wrong".
_MALFORMED_TYPES = frozenset({"json_invalid", "unsupported_content_type"})


def _json_response(status: int, body: dict[str, Any], app: APIGatewayHttpResolver) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=app._serializer(body),  # the resolver's own serializer
    )


def _field_detail(errors: Sequence[Any]) -> str:
    """'name: Field required; auth.token: ...' from pydantic errors: locations and messages only."""
    parts = []
    for error in errors[:_MAX_DETAIL_ERRORS]:
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body",)]
        message = error.get("msg", "invalid")
        if error.get("type") == "extra_forbidden":
            # The unknown key itself is caller input (it may be a pasted secret): name its parent.
            loc, message = loc[:-1], "unknown field"
        parts.append(f"{'.'.join(loc) or 'body'}: {message}")
    return "; ".join(parts)


def create_resolver(logger: Logger) -> APIGatewayHttpResolver:
    """A resolver with validation on and Strongroom's error handlers registered."""
    app = APIGatewayHttpResolver(enable_validation=True)

    def _validation_error(
        exc: RequestValidationError | RequestUnsupportedContentType,
    ) -> Response[str]:
        errors = list(exc.errors())
        if any(tuple(error.get("loc", ()))[:1] == ("response",) for error in errors):
            # An answer that failed its own model: our bug, not the caller's (Powertools raises
            # the request's error for it). Logged by type only (no values), a bare 500.
            return _unexpected_error(exc)
        # Powertools validates a request before any middleware of ours (its request validation
        # comes first in every route's stack): one it routed elsewhere than API Gateway did
        # answers 404 whatever its body, as _only_the_gateway_route answers a valid one.
        if _routed_elsewhere(app):
            status, body = error_response(NotFound())
        elif any(error.get("type") in _MALFORMED_TYPES for error in errors):
            status, body = error_response(MalformedRequest("The body is not valid JSON."))
        else:
            status, body = error_response(InvalidField(_field_detail(errors)))
        return _json_response(status, body, app)

    def _strongroom_error(exc: StrongroomError) -> Response[str]:
        status, body = error_response(exc)
        if status >= 500:
            logger.exception("request failed", extra={"error_type": type(exc).__name__})
        return _json_response(status, body, app)

    def _unexpected_error(exc: Exception) -> Response[str]:
        logger.exception("unexpected error", extra={"error_type": type(exc).__name__})
        status, body = error_response(exc)
        return _json_response(status, body, app)

    def _not_found(exc: Exception) -> Response[str]:
        status, body = error_response(NotFound())
        return _json_response(status, body, app)

    # Registered without decorators: Powertools' decorators are untyped.
    app.exception_handler([RequestValidationError, RequestUnsupportedContentType])(
        _validation_error
    )
    app.exception_handler(StrongroomError)(_strongroom_error)
    app.exception_handler(Exception)(_unexpected_error)
    app.not_found(_not_found)
    app.use([_only_the_gateway_route])
    return app


def _only_the_gateway_route(app: APIGatewayHttpResolver, next_middleware: Any) -> Any:
    """Run only the route API Gateway matched (the event's routeKey); see _routed_elsewhere."""
    if _routed_elsewhere(app):
        raise NotFound()
    return next_middleware(app)


def _routed_elsewhere(app: APIGatewayHttpResolver) -> bool:
    """Whether Powertools routed the request to another route than API Gateway matched (the
    event's routeKey). API Gateway matches the path as sent, but hands the function rawPath
    decoded and cut at a decoded '?', and Powertools routes on rawPath:
    '/orgs/{org}%3F/members/{owner}', matched as a member's removal, would run the org's
    deletion. Compared as routes, not paths, whatever the stage or domain."""
    route = app.context.get("_route")
    route_key = app.current_event.raw_event.get("routeKey")
    matched = f"{route.method} {route.openapi_path}" if route is not None else None
    return isinstance(route_key, str) and " " in route_key and matched not in (None, route_key)


def _body_bytes(event: Mapping[str, Any]) -> bytes:
    """The body as sent; PayloadTooLarge before decoding anything over the limit."""
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise MalformedRequest()
    if event.get("isBase64Encoded"):
        # Decoded size without decoding: 3 bytes per 4 characters, less padding.
        if len(body) > (MAX_BODY_BYTES * 4) // 3 + 4:
            raise PayloadTooLarge(_TOO_LARGE)
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedRequest() from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    if len(data) > MAX_BODY_BYTES:
        raise PayloadTooLarge(_TOO_LARGE)
    return data


def _check_json_body(event: dict[str, Any], data: bytes) -> None:
    """JSON in (DESIGN): a body is UTF-8 text sent as application/json (or with no type, which
    Powertools reads as JSON). Powertools itself would also parse form and multipart bodies
    into the routes' models, and fail with a 500 on a body that is not UTF-8."""
    if not data:
        return
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if str(name).lower() == "content-type":
            media_type, _, parameters = str(value).partition(";")
            media_type = media_type.strip().lower()
            if media_type not in ("", "application/json"):
                raise MalformedRequest("The body must be JSON (Content-Type: application/json).")
            # Media types are case-insensitive; Powertools compares them as written.
            headers[name] = media_type + (";" + parameters if parameters else "")
    try:
        document = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8 and bad JSON, and also a number longer than Python's
        # integer limit; RecursionError is very deep nesting. Powertools catches neither (500).
        raise MalformedRequest("The body is not valid JSON.") from None
    if _depth_over(document, MAX_JSON_DEPTH):
        raise MalformedRequest("The body is nested too deeply.")


def _depth_over(document: Any, limit: int) -> bool:
    """Whether `document` nests deeper than `limit` (iteratively: no recursion to exhaust).
    Within it, Powertools' own parse of the body cannot run out of stack either."""
    level: list[Any] = [document]
    for _ in range(limit + 1):
        level = [
            child
            for node in level
            if isinstance(node, dict | list)
            for child in (node.values() if isinstance(node, dict) else node)
        ]
        if not level:
            return False
    return True


def handle_request(
    app: APIGatewayHttpResolver,
    event: dict[str, Any],
    context: LambdaContext,
    *,
    json_bodies: bool = True,
) -> dict[str, Any]:
    """Refuse oversized or unparseable bodies before any parsing, then resolve the route.

    `json_bodies=False` is for a function whose routes read their raw body themselves (signed
    webhooks: the bytes as sent, whatever their type)."""
    try:
        data = _body_bytes(event)
        if json_bodies:
            _check_json_body(event, data)
    except StrongroomError as exc:
        status, body = error_response(exc)
        return {
            "statusCode": status,
            "headers": {"Content-Type": "application/json"},
            "body": app._serializer(body),
            "isBase64Encoded": False,
        }
    return app.resolve(event, context)
