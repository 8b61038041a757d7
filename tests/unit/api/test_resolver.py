"""The shared resolver: parse errors 400, field errors 422, big bodies 413, no leaks on 500."""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from strongroom.api import MAX_BODY_BYTES, caller_from_event, create_resolver, handle_request
from strongroom.api.resolver import MAX_JSON_DEPTH
from strongroom.errors import Conflict, ReauthRequired, Unauthenticated
from tests.support.http import http_event

CANARY = "sr-canary-5b1f0c8e"


class Widget(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=20)]
    secret: str | None = None


class _Context:
    function_name = "test"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"


def _app(calls: list[Any], log: io.StringIO | None = None) -> Any:
    # Powertools sets a service's logger up once per process: a log to read needs its own.
    logger = Logger(
        service="test" if log is None else f"test-{id(log)}", stream=log or io.StringIO()
    )
    app = create_resolver(logger)

    @app.post("/widgets")
    def create(widget: Annotated[Widget, Body()]) -> dict[str, str]:
        calls.append(widget)
        return {"name": widget.name}

    @app.get("/conflict")
    def conflict() -> dict[str, str]:
        raise Conflict()

    @app.get("/boom")
    def boom() -> dict[str, str]:
        raise RuntimeError(f"database password is {CANARY}")

    @app.get("/bad-answer")
    def bad_answer() -> Widget:
        return {"name": "", "secret": CANARY}  # type: ignore[return-value]

    return app


def _call(event: dict[str, Any]) -> tuple[int, dict[str, Any], list[Any]]:
    calls: list[Any] = []
    response = handle_request(_app(calls), event, _Context())  # type: ignore[arg-type]
    return response["statusCode"], json.loads(response["body"]), calls


def test_valid_body_reaches_the_route() -> None:
    status, body, calls = _call(http_event("POST", "/widgets", body={"name": "w"}))
    assert status == 200
    assert body == {"name": "w"}
    assert len(calls) == 1


@pytest.mark.parametrize("raw", ["{", "not json", '{"name": "w",}', "\ud800"])
def test_malformed_json_is_400_and_reaches_nothing(raw: str) -> None:
    status, body, calls = _call(http_event("POST", "/widgets", raw_body=raw))
    assert status == 400
    assert body["error"]["code"] == "malformed_request"
    assert calls == []


@pytest.mark.parametrize(
    "raw",
    [
        # Longer than Python's integer limit (4300 digits): json raises a plain ValueError.
        '{"name": ' + "1" * 5000 + "}",
        # Nesting deep enough to exhaust the interpreter's stack: RecursionError.
        "[" * 100_000 + "]" * 100_000,
        '{"name": "w", "secret": ' + "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1) + "}",
    ],
    ids=["huge-integer", "stack-deep", "over-depth"],
)
def test_json_python_cannot_or_will_not_parse_is_400_not_500(raw: str) -> None:
    status, body, calls = _call(http_event("POST", "/widgets", raw_body=raw))
    assert (status, body["error"]["code"]) == (400, "malformed_request")
    assert calls == []


def test_nesting_up_to_the_limit_reaches_validation() -> None:
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    status, body, _ = _call(
        http_event("POST", "/widgets", raw_body='{"name": "w", "secret": ' + nested + "}")
    )
    assert (status, body["error"]["code"]) == (422, "invalid_field")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "w", "extra": CANARY}, "body: unknown field"),
        ({"name": "w", CANARY: "x"}, "body: unknown field"),
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 21}, "name"),
        ({"name": 5}, "name"),
    ],
)
def test_invalid_fields_are_422_naming_the_field_without_the_value(
    payload: dict[str, Any], field: str
) -> None:
    status, body, calls = _call(http_event("POST", "/widgets", body=payload))
    assert status == 422
    assert body["error"]["code"] == "invalid_field"
    assert field in body["error"]["message"]
    assert CANARY not in json.dumps(body)
    assert calls == []


def test_secret_value_in_an_invalid_body_is_not_echoed() -> None:
    status, body, _ = _call(http_event("POST", "/widgets", body={"name": 1, "secret": CANARY}))
    assert status == 422
    assert CANARY not in json.dumps(body)


def _typed(content_type: str | None, raw: str | bytes) -> dict[str, Any]:
    event = http_event("POST", "/widgets", raw_body=raw)
    del event["headers"]["content-type"]
    if content_type is not None:
        event["headers"]["content-type"] = content_type
    return event


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("text/plain", '{"name": "w"}'),
        ("application/jsonx", '{"name": "w"}'),
        ("application/x-www-form-urlencoded", "name=w"),
        (
            "multipart/form-data; boundary=b",
            '--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nw\r\n--b--\r\n',
        ),
        ("application/json", b'{"name": "\xff\xfe"}'),  # base64 of bytes that are not UTF-8
    ],
)
def test_a_body_that_is_not_json_text_is_400_and_reaches_nothing(
    content_type: str, raw: str | bytes
) -> None:
    status, body, calls = _call(_typed(content_type, raw))
    assert status == 400
    assert body["error"]["code"] == "malformed_request"
    assert calls == []


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "Application/JSON"]
)
def test_json_with_or_without_its_type_is_parsed(content_type: str | None) -> None:
    status, _, calls = _call(_typed(content_type, '{"name": "w"}'))
    assert status == 200
    assert len(calls) == 1


def test_raw_body_routes_take_any_type_and_powertools_refusals_stay_400() -> None:
    calls: list[Any] = []
    app = _app(calls)

    @app.post("/raw")
    def raw() -> dict[str, int]:
        return {"length": len(app.current_event.decoded_body or "")}

    event = _typed("text/plain", "a=1")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/raw"
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /raw"
    response = handle_request(app, event, _Context(), json_bodies=False)  # type: ignore[arg-type]
    assert (response["statusCode"], json.loads(response["body"])) == (200, {"length": 3})
    # A model route reached with another type: Powertools refuses it, as a 400, not a 500.
    response = handle_request(
        app, _typed("text/plain", '{"name": "w"}'), _Context(), json_bodies=False
    )  # type: ignore[arg-type]
    assert response["statusCode"] == 400
    assert calls == []


def test_body_over_256_kib_is_413_before_parsing() -> None:
    big = json.dumps({"name": "w", "secret": "a" * MAX_BODY_BYTES})
    status, body, calls = _call(http_event("POST", "/widgets", raw_body=big))
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert calls == []
    # Base64-encoded bodies count their decoded size.
    status, _, _ = _call(http_event("POST", "/widgets", raw_body=b"x" * (MAX_BODY_BYTES + 1)))
    assert status == 413


def test_body_of_exactly_256_kib_is_parsed() -> None:
    filler = MAX_BODY_BYTES - len(json.dumps({"name": "w", "secret": ""}))
    raw = json.dumps({"name": "w", "secret": "a" * filler})
    assert len(raw) == MAX_BODY_BYTES
    status, _, calls = _call(http_event("POST", "/widgets", raw_body=raw))
    assert status == 200
    assert len(calls) == 1


def test_strongroom_errors_map_to_their_status() -> None:
    status, body, _ = _call(http_event("GET", "/conflict"))
    assert status == 409
    assert body == {"error": {"code": "conflict", "message": body["error"]["message"]}}


def test_unexpected_error_is_a_bare_500_with_no_detail() -> None:
    status, body, _ = _call(http_event("GET", "/boom"))
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    text = json.dumps(body)
    assert CANARY not in text
    assert "Traceback" not in text
    assert "RuntimeError" not in text


def test_an_answer_that_fails_its_own_model_is_a_logged_500_not_the_callers_422() -> None:
    # Our bug, not the caller's: Powertools' response validation must not answer 422.
    log = io.StringIO()
    app = _app([], log)
    response = handle_request(app, http_event("GET", "/bad-answer"), _Context())  # type: ignore[arg-type]
    body = json.loads(response["body"])
    assert response["statusCode"] == 500
    assert body["error"]["code"] == "internal_error"
    assert CANARY not in json.dumps(body)
    (line,) = [json.loads(text) for text in log.getvalue().splitlines()]
    assert line["message"] == "unexpected error"
    assert line["error_type"] == "RequestValidationError"  # as Powertools raises it
    assert CANARY not in log.getvalue()  # the answer's values are not logged


def test_unknown_route_is_404_in_the_error_shape() -> None:
    status, body, _ = _call(http_event("GET", "/nope"))
    assert status == 404
    assert body["error"]["code"] == "not_found"


def test_caller_comes_only_from_verified_claims() -> None:
    event = http_event("GET", "/", claims={"auth_time": "1000"})
    event["headers"]["x-user-id"] = "mallory"
    caller = caller_from_event(event)
    assert caller.sub == "alice"
    assert caller.auth_time == 1000
    with pytest.raises(Unauthenticated):
        caller_from_event(http_event("GET", "/", sub=None))
    with pytest.raises(Unauthenticated):
        caller_from_event(http_event("GET", "/", sub="ORG#x y"))


@pytest.mark.parametrize(
    "sub",
    [
        "system:scheduler",
        "system:org_deletion",
        "SYSTEM:scheduler",
        "System:x",
        "operator:local",
        "Operator:alice",
    ],
)
def test_no_caller_passes_for_strongroom_itself_in_the_audit_log(sub: str) -> None:
    # `system:<component>` and `operator:<name>` are the actors of Strongroom's own work and of
    # operator commands in the audit log.
    with pytest.raises(Unauthenticated):
        caller_from_event(http_event("GET", "/", sub=sub))
    assert caller_from_event(http_event("GET", "/", sub="systemd:" + sub)).sub.startswith("sys")


@pytest.mark.parametrize(
    ("auth_time", "now", "fresh"),
    [(1000, 1000, True), (1000, 1300, True), (1000, 1301, False), (1000, 999, False)],
)
def test_fresh_auth_window_is_five_minutes(auth_time: int, now: int, fresh: bool) -> None:
    caller = caller_from_event(http_event("GET", "/", claims={"auth_time": str(auth_time)}))
    if fresh:
        caller.require_fresh_auth(now=now)
    else:
        with pytest.raises(ReauthRequired):
            caller.require_fresh_auth(now=now)


@pytest.mark.parametrize(
    ("route_key", "raw_path", "stage", "status"),
    [
        ("POST /widgets", "/widgets", "$default", 200),
        ("POST /widgets", "/dev/widgets", "dev", 200),
        ("$default", "/widgets", "$default", 200),
        # API Gateway matched another route on the path as sent; rawPath, decoded (and cut at a
        # decoded '?'), is this one: the function must not run a route the gateway did not match.
        ("POST /widgets/{widget_id}", "/widgets", "$default", 404),
        ("POST /widgets/{widget_id}/parts", "/dev/widgets", "dev", 404),
        ("POST /files/{path+}", "/widgets", "$default", 404),
    ],
)
def test_the_function_routes_only_on_the_route_the_gateway_matched(
    route_key: str, raw_path: str, stage: str, status: int
) -> None:
    event = http_event("POST", "/widgets", body={"name": "w"})
    event["routeKey"] = event["requestContext"]["routeKey"] = route_key
    event["rawPath"] = event["requestContext"]["http"]["path"] = raw_path
    event["requestContext"]["stage"] = stage
    got, body, calls = _call(event)
    assert got == status
    if status == 404:
        assert body["error"]["code"] == "not_found"
        assert calls == []


@pytest.mark.parametrize("payload", [{"name": ""}, {"name": "w", "extra": 1}, {}, ["w"]])
def test_a_route_the_gateway_did_not_match_is_404_whatever_its_body(payload: Any) -> None:
    """Powertools validates the request before any middleware of ours runs: the body of a
    route API Gateway did not match is not that route's to judge (422), it is not found."""
    event = http_event("POST", "/widgets", body=payload)
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /widgets/{widget_id}"
    status, body, calls = _call(event)
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert calls == []
    # The same body on the route the gateway matched: the route refuses it.
    status, body, _ = _call(http_event("POST", "/widgets", body=payload))
    assert (status, body["error"]["code"]) == (422, "invalid_field")


def test_a_route_the_gateway_did_not_match_is_404_whatever_its_content_type() -> None:
    event = _typed("text/plain", '{"name": "w"}')
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /widgets/{widget_id}"
    response = handle_request(_app([]), event, _Context(), json_bodies=False)  # type: ignore[arg-type]
    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"]["code"] == "not_found"
