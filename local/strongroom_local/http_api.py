"""API Gateway HTTP API (payload format 2.0) emulation: routing, events, responses, authorizer.

`HttpApiGateway.handle` takes one HTTP request and answers as API Gateway would: it picks the
most specific route (exact segments over `{param}` over `{proxy+}`, an exact method over `ANY`,
`$default` last; 404 `{"message":"Not Found"}` when nothing matches), runs the route's JWT
authorizer (401 `{"message":"Unauthorized"}` whatever the reason, 403 for a missing scope, and
the function is not invoked), builds the v2 event, invokes the function and maps its result to
the response (a result without `statusCode` is 200 JSON; a failed invocation or a malformed
result is 500 `{"message":"Internal Server Error"}`; no answer within the route's integration
timeout is 503 `{"message":"Service Unavailable"}` while the function runs on).

A named stage is a path prefix, as on API Gateway: with `StageName: dev` the API is served under
`/dev`, and `rawPath` keeps the prefix while `routeKey` does not. Routes match the path as sent
(an encoded `/` stays inside its segment); `rawPath` reaches the function decoded as HTTP APIs
decode it (`decoded_path`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, unquote_to_bytes

from strongroom_local.authorizer import JwtAuthorizer, JwtContext
from strongroom_local.exceptions import InsufficientScope, Unauthorized
from strongroom_local.runtime import Invocation
from strongroom_local.wiring import DEFAULT_ROUTE, DEFAULT_STAGE, HttpApiDefinition, HttpRoute

log = logging.getLogger("strongroom_local.api")

# API Gateway's payload limit for HTTP APIs.
MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024
# Lambda's limits on a synchronous invocation: the event, and the result, as JSON bytes.
MAX_EVENT_BYTES = 6 * 1024 * 1024
MAX_RESULT_BYTES = 6 * 1024 * 1024 + 100
_TEXT_TYPES = ("application/json", "application/javascript", "application/xml")
_TEXT_SUFFIXES = ("+json", "+xml")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LITERAL, _PARAM, _GREEDY = 2, 1, 0
_ESCAPE_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class HttpRequest:
    """A request as it came off the wire."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str
    server_port: int
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class Invoker(Protocol):
    """Runs a function on an event; `cancelled`, once set, drops an invocation not yet begun."""

    def __call__(
        self, function_id: str, event: dict[str, Any], *, cancelled: threading.Event
    ) -> Invocation: ...


def gateway_error(status: int, message: str, request_id: str) -> HttpResponse:
    """One of API Gateway's own answers: `{"message": ...}` as JSON."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    headers = [("Content-Type", "application/json"), ("apigw-requestid", request_id)]
    return HttpResponse(status, headers, body)


# ---- routing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteMatch:
    route: HttpRoute
    path_parameters: dict[str, str]


def _pattern(path: str) -> list[tuple[int, str]]:
    segments: list[tuple[int, str]] = []
    stripped = path.strip("/")
    for segment in stripped.split("/") if stripped else []:
        if segment.startswith("{") and segment.endswith("+}"):
            segments.append((_GREEDY, segment[1:-2]))
        elif segment.startswith("{") and segment.endswith("}"):
            segments.append((_PARAM, segment[1:-1]))
        else:
            segments.append((_LITERAL, segment))
    return segments


def _match(pattern: list[tuple[int, str]], segments: list[str]) -> dict[str, str] | None:
    parameters: dict[str, str] = {}
    for index, (kind, text) in enumerate(pattern):
        if kind == _GREEDY:
            rest = segments[index:]
            if not rest or not "/".join(rest):
                return None
            parameters[text] = unquote("/".join(rest))
            return parameters
        if index >= len(segments):
            return None
        value = unquote(segments[index])
        if kind == _LITERAL and value != text:
            return None
        if kind == _PARAM:
            if not value:
                return None
            parameters[text] = value
    return parameters if len(pattern) == len(segments) else None


class RouteTable:
    """The routes of one HTTP API, matched as API Gateway does."""

    def __init__(self, routes: Sequence[HttpRoute]) -> None:
        self._routes = [(r, _pattern(r.path)) for r in routes if r.path != DEFAULT_ROUTE]
        self._default = next((r for r in routes if r.path == DEFAULT_ROUTE), None)

    def match(self, method: str, path: str) -> RouteMatch | None:
        segments = path[1:].split("/") if path not in ("", "/") else []
        best: tuple[tuple[list[int], int], RouteMatch] | None = None
        for route, pattern in self._routes:
            if route.method not in ("ANY", method):
                continue
            parameters = _match(pattern, segments)
            if parameters is None:
                continue
            rank = ([kind for kind, _ in pattern], int(route.method != "ANY"))
            if best is None or rank > best[0]:
                best = (rank, RouteMatch(route, parameters))
        if best is not None:
            return best[1]
        if self._default is not None:
            return RouteMatch(self._default, {})
        return None


def strip_stage(stage: str, raw_path: str) -> str | None:
    """The path the routes see: without the stage prefix; None if outside the stage."""
    if stage == DEFAULT_STAGE:
        return raw_path
    prefix = "/" + stage
    if raw_path == prefix:
        return "/"
    if raw_path.startswith(prefix + "/"):
        return raw_path[len(prefix) :]
    return None


# ---- events -----------------------------------------------------------------------------


def new_request_id() -> str:
    """Shaped like API Gateway's request ids (16 characters, base64)."""
    return base64.b64encode(secrets.token_bytes(10)).decode("ascii")


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(_TEXT_SUFFIXES)


def _request_time(epoch: float) -> str:
    t = time.gmtime(epoch)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _trace_id(epoch: float) -> str:
    return f"Root=1-{int(epoch):08x}-{secrets.token_hex(12)}"


def _json_size(value: Any) -> int:
    # As Lambda's Python runtime serialises a result: UTF-8, default separators.
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _decode_once(path: str) -> str:
    # A run of escapes that is not UTF-8 stays as sent, rather than becoming U+FFFD.
    def decode(run: re.Match[str]) -> str:
        try:
            return unquote_to_bytes(run.group()).decode("utf-8")
        except UnicodeDecodeError:
            return run.group()

    return _ESCAPE_RUN.sub(decode, path)


def decoded_path(raw_path: str) -> str | None:
    """`rawPath` as HTTP APIs (payload 2.0) hand it over; None when they refuse the path (400).

    Live captures show API Gateway decodes the path, ends it at a `?` that decoding produced,
    and decodes it a second time: `%20` is a space, `a%3Fb` is `a`, `%252F` is `/`, `%2525` is
    `%`, and a `%` that starts no escape after the first decoding (`%25zz`, or `%zz` as sent)
    is refused.
    """
    once = _decode_once(raw_path).partition("?")[0]
    if _LONE_PERCENT.search(raw_path) or _LONE_PERCENT.search(once):
        return None
    return _decode_once(once)


def build_event(
    request: HttpRequest,
    *,
    api: HttpApiDefinition,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    authorizer: JwtContext | None,
    account_id: str,
    request_id: str,
    now: float,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends for `request`."""
    target_path, _, raw_query = request.target.partition("?")
    raw_path = decoded_path(target_path) or target_path
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
        else:
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    forwarded = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = (
        f"{forwarded}, {request.source_ip}" if forwarded else request.source_ip
    )
    headers["x-forwarded-port"] = str(request.server_port)
    headers["x-forwarded-proto"] = "http"
    headers["x-amzn-trace-id"] = _trace_id(now)
    host = headers.get("host", "")
    domain = (host if host.endswith("]") else host.rsplit(":", 1)[0]) or "127.0.0.1"
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query: dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    if query:
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api.api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": api.stage,
        "time": _request_time(now),
        "timeEpoch": int(now * 1000),
    }
    if authorizer is not None:
        context["authorizer"] = authorizer.as_event_value()
    event["requestContext"] = context
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        text = _decoded_text(request.body) if _is_text(headers.get("content-type")) else None
        if text is None:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = text
            event["isBase64Encoded"] = False
    else:
        event["isBase64Encoded"] = False
    return event


def _decoded_text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ---- responses --------------------------------------------------------------------------


class MalformedResult(ValueError):
    """The function's result is not a response API Gateway can map (it answers 500)."""


# RFC 9110 §5.1: a field name is a token; §5.5: a value has no control characters but tab.
_FIELD_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _header_text(name: Any, value: Any) -> tuple[str, str]:
    if not isinstance(name, str) or isinstance(value, dict | list):
        raise MalformedResult("bad header")
    text = "true" if value is True else "false" if value is False else str(value)
    if not _FIELD_NAME.fullmatch(name) or _FIELD_VALUE_CONTROL.search(text):
        raise MalformedResult("bad header")
    return name, text


def response_from_result(result: Any) -> HttpResponse:
    """Map a function's result to the HTTP response, following API Gateway's v2 rules."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # No statusCode: 200, JSON content type, the result itself as the body.
        inferred = result if isinstance(result, str) else json.dumps(result)
        return HttpResponse(200, [("Content-Type", "application/json")], inferred.encode())
    status = result["statusCode"]
    # A function's answer is a final response: 1xx is not one.
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise MalformedResult("bad statusCode")
    raw_headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    if not isinstance(raw_headers, dict) or not isinstance(cookies, list):
        raise MalformedResult("bad headers or cookies")
    headers = [_header_text(name, value) for name, value in raw_headers.items()]
    headers += [_header_text("Set-Cookie", cookie) for cookie in cookies]
    body: Any = result.get("body")
    if body is None:
        data = b""
    elif not isinstance(body, str):
        raise MalformedResult("body is not a string")
    elif result.get("isBase64Encoded") is True:
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedResult("body is not base64") from None
    else:
        data = body.encode("utf-8", "surrogatepass")
    return HttpResponse(status, headers, data)


# ---- the gateway ------------------------------------------------------------------------


class HttpApiGateway:
    """Every HTTP API of the template behind one listener."""

    def __init__(
        self,
        apis: Sequence[HttpApiDefinition],
        invoke: Invoker,
        *,
        authorizers: Mapping[tuple[str, str], JwtAuthorizer],
        account_id: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Stage-prefixed APIs first: a `$default` stage would otherwise take their paths.
        ordered = sorted(apis, key=lambda api: api.stage == DEFAULT_STAGE)
        self._apis = [(api, RouteTable(api.routes)) for api in ordered]
        self._invoke = invoke
        self._authorizers = authorizers
        self._account_id = account_id
        self._clock = clock

    def resolve(self, method: str, raw_path: str) -> tuple[HttpApiDefinition, RouteMatch] | None:
        for api, table in self._apis:
            path = strip_stage(api.stage, raw_path)
            if path is None:
                continue
            match = table.match(method, path)
            if match is not None:
                return api, match
        return None

    def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.monotonic()
        request_id = new_request_id()
        response, route_key = self._handle(request, request_id)
        # Like the template's access log: no path, query string or headers (they carry tokens).
        log.info(
            "%s %s -> %d (%.0f ms)",
            request_id,
            route_key or f"{request.method} (no route)",
            response.status,
            (time.monotonic() - started) * 1000,
        )
        return response

    def _authorize(
        self, api: HttpApiDefinition, route: HttpRoute, request: HttpRequest
    ) -> JwtContext | None:
        if route.authorizer is None:
            return None
        authorizer = self._authorizers[(api.logical_id, route.authorizer)]
        values = [v for k, v in request.headers if k.lower() == authorizer.identity_header]
        # Repeated identity headers are refused rather than guessed between.
        header = values[0] if len(values) == 1 else None
        return authorizer.authorize(header, required_scopes=route.scopes)

    def _invoke_within(self, route: HttpRoute, event: dict[str, Any]) -> Invocation | None:
        """The invocation, or None if it outlasts the route's integration timeout.

        API Gateway stops waiting then, but the function is not stopped: the invocation goes on
        in its own thread, which alone holds the worker until the function ends (or its own
        Timeout kills it) and hands it back to the pool.
        """
        outcome: Future[Invocation] = Future()
        # Set at the timeout: an invocation still waiting for a free worker then never runs,
        # rather than taking effect after its caller was answered 503 (and perhaps retried).
        cancelled = threading.Event()

        def run() -> None:
            try:
                outcome.set_result(self._invoke(route.function_id, event, cancelled=cancelled))
            except Exception as exc:  # noqa: BLE001 - raised again in the request's thread
                outcome.set_exception(exc)

        threading.Thread(target=run, name=f"invoke-{route.function_id}", daemon=True).start()
        done, _ = wait([outcome], timeout=route.timeout_ms / 1000)
        if done:
            return outcome.result()
        cancelled.set()
        return None

    def _handle(self, request: HttpRequest, request_id: str) -> tuple[HttpResponse, str]:
        raw_path = request.target.partition("?")[0]
        if decoded_path(raw_path) is None:
            return gateway_error(400, "Bad Request", request_id), ""
        resolved = self.resolve(request.method, raw_path)
        if resolved is None:
            return gateway_error(404, "Not Found", request_id), ""
        api, match = resolved
        route = match.route
        try:
            context = self._authorize(api, route, request)
        except Unauthorized:
            return gateway_error(401, "Unauthorized", request_id), route.route_key
        except InsufficientScope:
            return gateway_error(403, "Forbidden", request_id), route.route_key
        now = self._clock()
        event = build_event(
            request,
            api=api,
            route=route,
            path_parameters=match.path_parameters,
            authorizer=context,
            account_id=self._account_id,
            request_id=request_id,
            now=now,
        )
        return self._integrate(route, event, request_id), route.route_key

    def _integrate(self, route: HttpRoute, event: dict[str, Any], request_id: str) -> HttpResponse:
        """Invoke the route's function and map what it answers (or fails to) to the response."""
        if _json_size(event) > MAX_EVENT_BYTES:
            # Lambda refuses the invocation (RequestEntityTooLargeException): a 10 MB body that
            # API Gateway takes never reaches the function, nor does a 4.5 MB one base64-encoded.
            log.warning("%s: the event for %s is over Lambda's 6 MB", request_id, route.function_id)
            return gateway_error(413, "Request Entity Too Large", request_id)
        invocation = self._invoke_within(route, event)
        if invocation is None:
            log.warning(
                "%s: %s did not answer within %d ms; it runs on",
                request_id,
                route.function_id,
                route.timeout_ms,
            )
            return gateway_error(503, "Service Unavailable", request_id)
        if not invocation.ok:
            return gateway_error(500, "Internal Server Error", request_id)
        if _json_size(invocation.result) > MAX_RESULT_BYTES:
            # Lambda fails the invocation ("Response payload size exceeded"): nothing of it
            # reaches the client.
            log.error("%s: %s answered over Lambda's 6 MB", request_id, route.function_id)
            return gateway_error(500, "Internal Server Error", request_id)
        try:
            response = response_from_result(invocation.result)
        except MalformedResult as exc:
            log.error(
                "%s: %s returned a malformed response (%s)", request_id, route.function_id, exc
            )
            return gateway_error(500, "Internal Server Error", request_id)
        response.headers.append(("apigw-requestid", request_id))
        return response
