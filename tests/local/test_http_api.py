"""HTTP API emulation in-process: route matching, the v2 event, response mapping, the gateway."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest

from strongroom_local.authorizer import JwtAuthorizer
from strongroom_local.http_api import (
    HttpApiGateway,
    HttpRequest,
    MalformedResult,
    RouteTable,
    build_event,
    response_from_result,
    strip_stage,
)
from strongroom_local.issuer import DevIssuer, IssuerConfig
from strongroom_local.runtime import Invocation
from strongroom_local.wiring import HttpApiDefinition, HttpRoute, JwtAuthorizerConfig

NOW = 1_795_000_000.25
CONFIG = IssuerConfig()


def route(method: str, path: str, *, authorizer: str | None = None) -> HttpRoute:
    return HttpRoute("Fn", f"{method}{path}", method, path, authorizer)


ROUTES = [
    route("GET", "/orgs"),
    route("GET", "/orgs/{org_id}"),
    route("GET", "/orgs/special"),
    route("ANY", "/orgs/{org_id}/{proxy+}"),
    route("GET", "/things"),
    route("ANY", "/things"),
    route("GET", "/"),
    route("ANY", "$default"),
]


@pytest.mark.parametrize(
    ("method", "path", "route_key", "parameters"),
    [
        ("GET", "/orgs", "GET /orgs", {}),
        ("GET", "/orgs/o1", "GET /orgs/{org_id}", {"org_id": "o1"}),
        ("GET", "/orgs/special", "GET /orgs/special", {}),
        ("GET", "/orgs/o1/a/b", "ANY /orgs/{org_id}/{proxy+}", {"org_id": "o1", "proxy": "a/b"}),
        ("POST", "/orgs/o1/x", "ANY /orgs/{org_id}/{proxy+}", {"org_id": "o1", "proxy": "x"}),
        ("GET", "/things", "GET /things", {}),
        ("DELETE", "/things", "ANY /things", {}),
        ("GET", "/", "GET /", {}),
        ("GET", "/orgs/a%20b", "GET /orgs/{org_id}", {"org_id": "a b"}),
        ("GET", "/orgs/a%2Fb", "GET /orgs/{org_id}", {"org_id": "a/b"}),
        # No match below: a POST to a GET route, a trailing slash, an empty greedy remainder.
        ("POST", "/orgs/o1", "$default", {}),
        ("GET", "/orgs/", "$default", {}),
        ("GET", "/orgs/o1/", "$default", {}),
        ("GET", "/nothing/here", "$default", {}),
    ],
)
def test_the_most_specific_route_wins(
    method: str, path: str, route_key: str, parameters: dict[str, str]
) -> None:
    match = RouteTable(ROUTES).match(method, path)
    assert match is not None
    assert match.route.route_key == route_key
    assert match.path_parameters == parameters


def test_without_a_default_route_nothing_matches() -> None:
    table = RouteTable([r for r in ROUTES if r.path != "$default"])
    assert table.match("POST", "/orgs/o1") is None
    assert table.match("GET", "/elsewhere") is None


def test_a_named_stage_is_a_path_prefix() -> None:
    assert strip_stage("dev", "/dev/orgs") == "/orgs"
    assert strip_stage("dev", "/dev") == "/"
    assert strip_stage("dev", "/devices") is None
    assert strip_stage("dev", "/orgs") is None
    assert strip_stage("$default", "/orgs") == "/orgs"


API = HttpApiDefinition("HttpApi", "abcdefghij", "dev", {}, tuple(ROUTES))


def request(
    method: str = "GET",
    target: str = "/dev/orgs/o1",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> HttpRequest:
    return HttpRequest(
        method=method,
        target=target,
        headers=headers if headers is not None else [("Host", "127.0.0.1:3000")],
        body=body,
        source_ip="127.0.0.1",
        server_port=3000,
    )


def test_the_event_has_the_v2_shape() -> None:
    headers = [
        ("Host", "127.0.0.1:3000"),
        ("User-Agent", "curl/8.5.0"),
        ("X-Repeated", "one"),
        ("x-repeated", "two"),
        ("Cookie", "a=1; b=2"),
        ("Cookie", "c=3"),
        ("Content-Type", "application/json; charset=utf-8"),
    ]
    event = build_event(
        request("POST", "/dev/orgs/o%201?x=1&y=2&x=3&empty=", headers, b'{"k": "\xc3\xa9"}'),
        api=API,
        route=ROUTES[1],
        path_parameters={"org_id": "o 1"},
        authorizer=None,
        account_id="123456789012",
        request_id="req-1",
        now=NOW,
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /orgs/{org_id}"
    assert event["rawPath"] == "/dev/orgs/o 1"
    assert event["rawQueryString"] == "x=1&y=2&x=3&empty="
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert event["queryStringParameters"] == {"x": "1,3", "y": "2", "empty": ""}
    assert event["pathParameters"] == {"org_id": "o 1"}
    assert event["body"] == '{"k": "é"}'
    assert event["isBase64Encoded"] is False
    sent = event["headers"]
    assert "cookie" not in sent
    assert sent["x-repeated"] == "one,two"
    assert sent["user-agent"] == "curl/8.5.0"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["x-forwarded-port"] == "3000"
    assert sent["x-forwarded-proto"] == "http"
    assert sent["x-amzn-trace-id"].startswith("Root=1-")
    assert all(name == name.lower() for name in sent)
    assert event["requestContext"] == {
        "accountId": "123456789012",
        "apiId": "abcdefghij",
        "domainName": "127.0.0.1",
        "domainPrefix": "127",
        "http": {
            "method": "POST",
            "path": "/dev/orgs/o 1",
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "curl/8.5.0",
        },
        "requestId": "req-1",
        "routeKey": "GET /orgs/{org_id}",
        "stage": "dev",
        "time": "18/Nov/2026:11:06:40 +0000",
        "timeEpoch": 1795000000250,
    }


def test_absent_parts_are_absent_and_binary_bodies_are_base64() -> None:
    bare = build_event(
        request(headers=[]),
        api=API,
        route=ROUTES[0],
        path_parameters={},
        authorizer=None,
        account_id="123456789012",
        request_id="r",
        now=NOW,
    )
    for absent in ("cookies", "queryStringParameters", "pathParameters", "body"):
        assert absent not in bare
    assert "authorizer" not in bare["requestContext"]
    assert bare["isBase64Encoded"] is False
    for content_type, body in (
        ("application/octet-stream", bytes(range(256))),
        ("image/png", b"\x89PNG"),
        ("application/x-www-form-urlencoded", b"a=1&b=2"),
        ("application/json", b"\xff\xfe not utf-8"),
        (None, b"no content type"),
    ):
        headers = [("Content-Type", content_type)] if content_type else []
        event = build_event(
            request("POST", headers=headers, body=body),
            api=API,
            route=ROUTES[0],
            path_parameters={},
            authorizer=None,
            account_id="123456789012",
            request_id="r",
            now=NOW,
        )
        assert event["isBase64Encoded"] is True, content_type
        assert base64.b64decode(event["body"]) == body


@pytest.mark.parametrize(
    ("result", "status", "content_type", "body"),
    [
        ({"hello": "world"}, 200, "application/json", b'{"hello": "world"}'),
        ("plain words", 200, "application/json", b"plain words"),
        ([1, 2], 200, "application/json", b"[1, 2]"),
        (None, 200, "application/json", b"null"),
        ({"statusCode": 204}, 204, None, b""),
        ({"statusCode": 418, "body": "teapot"}, 418, None, b"teapot"),
    ],
)
def test_results_map_to_responses_as_api_gateway_maps_them(
    result: Any, status: int, content_type: str | None, body: bytes
) -> None:
    response = response_from_result(result)
    assert response.status == status
    assert response.header("content-type") == content_type
    assert response.body == body


def test_headers_cookies_and_base64_bodies_are_mapped() -> None:
    response = response_from_result(
        {
            "statusCode": 201,
            "headers": {"X-Multi": "a,b", "X-Number": 5, "X-Flag": True},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": base64.b64encode(b"\x00\x01binary").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert response.body == b"\x00\x01binary"
    assert ("X-Multi", "a,b") in response.headers
    assert ("X-Number", "5") in response.headers
    assert ("X-Flag", "true") in response.headers
    assert [v for k, v in response.headers if k == "Set-Cookie"] == ["a=1; Path=/", "b=2"]


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "200"},
        {"statusCode": True},
        {"statusCode": 99},
        {"statusCode": 100},  # not a final response
        {"statusCode": 600},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "!!!", "isBase64Encoded": True},
        {"statusCode": 200, "headers": ["x"]},
        {"statusCode": 200, "headers": {"X-Injected": "a\r\nSet-Cookie: evil=1"}},
        {"statusCode": 200, "headers": {"Bad:Name": "x"}},
        {"statusCode": 200, "headers": {"Bad Name": "x"}},
        {"statusCode": 200, "headers": {"": "x"}},
        {"statusCode": 200, "headers": {"X-Control": "a\x01b"}},
        {"statusCode": 200, "cookies": ["a=1\nSet-Cookie: b=2"]},
        {"statusCode": 200, "cookies": "a=1"},
    ],
)
def test_malformed_results_are_refused(result: Any) -> None:
    with pytest.raises(MalformedResult):
        response_from_result(result)


class Recorder:
    """A fake invoker: records the events, answers with a fixed invocation."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, function_id: str, event: dict[str, Any], **_: Any) -> Invocation:
        self.events.append((function_id, event))
        return self.invocation


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> DevIssuer:
    return DevIssuer.load_or_create(tmp_path_factory.mktemp("issuer"))


def gateway(issuer: DevIssuer, invoker: Recorder) -> HttpApiGateway:
    config = JwtAuthorizerConfig("Jwt", CONFIG.issuer, CONFIG.audience, "authorization")
    api = HttpApiDefinition(
        "HttpApi",
        "abcdefghij",
        "dev",
        {"Jwt": config},
        (
            HttpRoute("Fn", "Open", "GET", "/open", None),
            HttpRoute("Fn", "Closed", "GET", "/orgs/{org_id}", "Jwt"),
            HttpRoute("Fn", "Scoped", "GET", "/scoped", "Jwt", ("s.read",)),
        ),
    )
    authorizer = JwtAuthorizer(
        issuer.jwks(), issuer=config.issuer, audiences=config.audiences, clock=lambda: NOW
    )
    return HttpApiGateway(
        [api],
        invoker,
        authorizers={("HttpApi", "Jwt"): authorizer},
        account_id="123456789012",
        clock=lambda: NOW,
    )


def test_gateway_answers_404_401_403_without_invoking(issuer: DevIssuer) -> None:
    invoker = Recorder(Invocation("x", True, {"ok": True}))
    api = gateway(issuer, invoker)
    answers = [
        api.handle(request(target="/dev/nowhere")),
        api.handle(request(target="/open")),  # outside the stage
        api.handle(request(target="/dev/orgs/o1")),
        api.handle(request(target="/dev/orgs/o1", headers=[("Authorization", "Bearer x")])),
        api.handle(
            request(
                target="/dev/scoped",
                headers=[("Authorization", "Bearer " + issuer.mint("a", config=CONFIG, now=NOW))],
            )
        ),
    ]
    statuses = [(a.status, json.loads(a.body)) for a in answers]
    assert statuses == [
        (404, {"message": "Not Found"}),
        (404, {"message": "Not Found"}),
        (401, {"message": "Unauthorized"}),
        (401, {"message": "Unauthorized"}),
        (403, {"message": "Forbidden"}),
    ]
    assert all(a.header("apigw-requestid") for a in answers)
    assert invoker.events == []


def test_gateway_passes_claims_and_maps_the_result(issuer: DevIssuer) -> None:
    invoker = Recorder(Invocation("x", True, {"statusCode": 202, "body": "queued"}))
    api = gateway(issuer, invoker)
    token = issuer.mint("alice", config=CONFIG, now=NOW, email="a@example.com")
    response = api.handle(
        request(target="/dev/orgs/o1?q=1", headers=[("Authorization", f"Bearer {token}")])
    )
    assert (response.status, response.body) == (202, b"queued")
    ((function_id, event),) = invoker.events
    assert function_id == "Fn"
    assert event["routeKey"] == "GET /orgs/{org_id}"
    assert event["pathParameters"] == {"org_id": "o1"}
    assert event["requestContext"]["requestId"] == response.header("apigw-requestid")
    jwt_context = event["requestContext"]["authorizer"]["jwt"]
    assert jwt_context["scopes"] is None
    assert jwt_context["claims"]["sub"] == "alice"
    assert jwt_context["claims"]["email"] == "a@example.com"
    assert jwt_context["claims"]["exp"] == str(int(NOW) + 3600)


def test_repeated_authorization_headers_are_refused(issuer: DevIssuer) -> None:
    invoker = Recorder(Invocation("x", True, {}))
    token = issuer.mint("alice", config=CONFIG, now=NOW)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    response = gateway(issuer, invoker).handle(request(target="/dev/orgs/o1", headers=headers))
    assert response.status == 401
    assert invoker.events == []


@pytest.mark.parametrize(
    "invocation",
    [
        Invocation("x", False, error_type="RuntimeError"),
        Invocation("x", True, {"statusCode": "nope"}),
    ],
)
def test_failures_are_500_without_detail(issuer: DevIssuer, invocation: Invocation) -> None:
    response = gateway(issuer, Recorder(invocation)).handle(request(target="/dev/open"))
    assert response.status == 500
    assert json.loads(response.body) == {"message": "Internal Server Error"}
    assert b"RuntimeError" not in response.body


@pytest.mark.parametrize(
    ("target", "raw_path", "parameters"),
    [
        ("/dev/orgs/auth0%7Cbob?q=%7C", "/dev/orgs/auth0|bob", {"org_id": "auth0|bob"}),
        # An encoded `/` is decoded in rawPath but still one segment for routing.
        ("/dev/orgs/a%2Fb", "/dev/orgs/a/b", {"org_id": "a/b"}),
        # As live captures of HTTP APIs show: decoded twice (`%2541` is `A`, `%252F` is `/`,
        # `%2525` is `%`), and ended at a `?` the first decoding produced, not the second.
        ("/dev/orgs/%E2%82%AC%2541", "/dev/orgs/\u20acA", None),
        ("/dev/orgs/literal%252Fvalue", "/dev/orgs/literal/value", None),
        ("/dev/orgs/literal%2525value", "/dev/orgs/literal%value", None),
        ("/dev/orgs/question%3Fvalue", "/dev/orgs/question", None),
        ("/dev/orgs/literal%253Fvalue", "/dev/orgs/literal?value", None),
        ("/dev/orgs/hash%23value", "/dev/orgs/hash#value", None),
        # What is no UTF-8 reaches the function as it was sent.
        ("/dev/orgs/%FF%FE", "/dev/orgs/%FF%FE", None),
    ],
)
def test_the_raw_path_reaches_the_function_percent_decoded(
    target: str, raw_path: str, parameters: dict[str, str] | None
) -> None:
    """As API Gateway's HTTP APIs hand it (Powertools routes on it); the query stays raw."""
    invoker = Recorder(Invocation("x", True, {}))
    api = HttpApiGateway([API], invoker, authorizers={}, account_id="123456789012")
    assert api.handle(request(target=target)).status == 200
    ((_, event),) = invoker.events
    assert event["routeKey"] == "GET /orgs/{org_id}"
    assert event["rawPath"] == event["requestContext"]["http"]["path"] == raw_path
    assert event["rawQueryString"] == target.partition("?")[2]
    if parameters is not None:
        assert event["pathParameters"] == parameters


@pytest.mark.parametrize("target", ["/dev/orgs/percent%25done", "/dev/orgs/100%zz", "/dev/orgs/5%"])
def test_a_path_with_a_percent_that_starts_no_escape_is_refused(target: str) -> None:
    invoker = Recorder(Invocation("x", True, {}))
    api = HttpApiGateway([API], invoker, authorizers={}, account_id="123456789012")
    response = api.handle(request(target=target))
    assert (response.status, response.body) == (400, b'{"message":"Bad Request"}')
    assert invoker.events == []


def test_an_integration_slower_than_its_timeout_is_503_and_runs_on() -> None:
    release, finished = threading.Event(), threading.Event()

    def slow(function_id: str, event: dict[str, Any], **_: Any) -> Invocation:
        release.wait(10)
        finished.set()
        return Invocation("x", True, {"late": True})

    routes = (
        HttpRoute("Fn", "Hurried", "GET", "/hurried", None, timeout_ms=50),
        HttpRoute("Fn", "Patient", "GET", "/patient", None),
    )
    api = HttpApiDefinition("HttpApi", "abcdefghij", "dev", {}, routes)
    slow_api = HttpApiGateway([api], slow, authorizers={}, account_id="123456789012")
    started = time.monotonic()
    response = slow_api.handle(request(target="/dev/hurried"))
    assert time.monotonic() - started < 5
    assert (response.status, response.body) == (503, b'{"message":"Service Unavailable"}')
    assert response.header("apigw-requestid")
    assert not finished.is_set()
    release.set()
    assert finished.wait(5)  # the function was not abandoned: it ran to its end
    # A route without TimeoutInMillis waits up to API Gateway's 30 s.
    assert routes[1].timeout_ms == 30_000
    assert slow_api.handle(request(target="/dev/patient")).status == 200


def test_lambda_payload_limits_are_kept() -> None:
    """Lambda takes at most 6 MB of event and answers at most 6 MB (+100 bytes) synchronously:
    what would fail in AWS fails locally too, rather than passing."""
    answer: dict[str, Any] = {}
    invoked: list[str] = []

    def function(function_id: str, event: dict[str, Any], **_: Any) -> Invocation:
        invoked.append(function_id)
        return Invocation("x", True, answer)

    api = HttpApiDefinition(
        "HttpApi", "abcdefghij", "dev", {}, (HttpRoute("Fn", "Any", "POST", "/any", None),)
    )
    gateway = HttpApiGateway([api], function, authorizers={}, account_id="123456789012")

    def post(body: bytes, content_type: str = "text/plain") -> Any:
        headers = [("Host", "127.0.0.1:3000"), ("Content-Type", content_type)]
        return gateway.handle(request(method="POST", target="/dev/any", headers=headers, body=body))

    # A 5 MB binary body is about 6.7 MB once base64-encoded in the event.
    response = post(b"\x00" * (5 * 1024 * 1024), "application/octet-stream")
    assert (response.status, response.body) == (413, b'{"message":"Request Entity Too Large"}')
    assert invoked == []
    answer.update(statusCode=200, body="a" * (6 * 1024 * 1024 + 100))
    response = post(b"small")
    assert (response.status, response.body) == (500, b'{"message":"Internal Server Error"}')
    assert invoked == ["Fn"]
    answer.update(body="a" * (6 * 1024 * 1024 - 100))
    assert post(b"small").status == 200
    # Measured as Lambda's runtime serialises it (UTF-8), not with \u escapes (6 bytes each).
    answer.update(body="\u00e9" * (3 * 1024 * 1024 - 100))
    assert post(b"small").status == 200
