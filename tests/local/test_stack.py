"""The real `strongroom local` on the test-only template, driven over HTTP, SQS and its CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from strongroom_local.harness import strongroom_command
from strongroom_local.issuer import DevIssuer
from strongroom_local.template import REPO_ROOT
from tests.local.conftest import ALLOWED_HOST, FixtureStack, wait_for

# One stack serves this module: keep its tests on one xdist worker.
pytestmark = pytest.mark.xdist_group("fixture_stack")


def raw_request(
    stack: FixtureStack,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """A request with exact control over repeated headers."""
    api = urlsplit(stack.running.api_url)
    connection = http.client.HTTPConnection(api.hostname or "", api.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers:
            connection.putheader(name, value)
        if body is not None:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def echoed(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_http_requests_become_v2_events(fixture_stack: FixtureStack) -> None:
    status, headers, body = raw_request(
        fixture_stack,
        "POST",
        "/v1/public/a/b%20c?x=1&x=2&flag",
        [
            ("Host", "127.0.0.1"),
            ("User-Agent", "tests/1.0"),
            ("X-Twice", "one"),
            ("X-Twice", "two"),
            ("Cookie", "a=1; b=2"),
            ("Content-Type", "application/json"),
        ],
        b'{"name": "Acme"}',
    )
    assert status == 200
    answer = json.loads(body)
    event = answer["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /public/{proxy+}"
    # Percent-decoded, as API Gateway's HTTP APIs hand it over.
    assert event["rawPath"] == "/v1/public/a/b c"
    assert event["rawQueryString"] == "x=1&x=2&flag"
    assert event["queryStringParameters"] == {"x": "1,2", "flag": ""}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-twice"] == "one,two"
    assert event["headers"]["user-agent"] == "tests/1.0"
    assert "cookie" not in event["headers"]
    assert (event["body"], event["isBase64Encoded"]) == ('{"name": "Acme"}', False)
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/v1/public/a/b c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1.0",
    }
    assert context["requestId"] == headers["apigw-requestid"]
    assert context["routeKey"] == "ANY /public/{proxy+}"
    assert context["stage"] == "v1"
    assert context["accountId"] == "123456789012"
    assert len(context["apiId"]) == 10
    assert "authorizer" not in context
    # The function's Lambda request id is its own, not API Gateway's.
    assert answer["context"]["aws_request_id"] != context["requestId"]


def test_binary_bodies_arrive_base64_and_path_parameters_are_named(
    fixture_stack: FixtureStack,
) -> None:
    payload = bytes(range(256))
    response = fixture_stack.http.post(
        fixture_stack.url("/items/i-1/parts/p-2"),
        data=payload,
        headers={"Content-Type": "application/octet-stream"},
        timeout=30,
    )
    event = echoed(response)["event"]
    assert event["routeKey"] == "POST /items/{item_id}/parts/{part_id}"
    assert event["pathParameters"] == {"item_id": "i-1", "part_id": "p-2"}
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload


def test_routes_match_like_api_gateway(fixture_stack: FixtureStack) -> None:
    assert echoed(fixture_stack.get("/public/exact"))["event"]["routeKey"] == "GET /public/exact"
    assert echoed(fixture_stack.get("/public/other"))["event"]["routeKey"] == (
        "ANY /public/{proxy+}"
    )
    api_root = fixture_stack.running.api_url.rsplit("/", 1)[0]
    for url in (
        fixture_stack.url("/nothing"),
        fixture_stack.url("/public"),  # {proxy+} needs at least one segment
        fixture_stack.url("/shapes/dict/extra"),
        f"{api_root}/public/exact",  # outside the stage
    ):
        response = fixture_stack.http.get(url, timeout=30)
        assert response.status_code == 404, url
        assert response.json() == {"message": "Not Found"}


def test_results_become_responses(fixture_stack: FixtureStack) -> None:
    plain = fixture_stack.get("/shapes/dict")
    assert (plain.status_code, plain.headers["content-type"]) == (200, "application/json")
    assert plain.json() == {"hello": "world", "n": 1}
    assert fixture_stack.get("/shapes/str").content == b"plain words"
    cookies = fixture_stack.get("/shapes/cookies")
    assert cookies.status_code == 201
    assert cookies.headers["x-multi"] == "a,b"
    assert cookies.raw.headers.getlist("Set-Cookie") == [
        "session=abc; Path=/; HttpOnly",
        "theme=dark",
    ]
    binary = fixture_stack.get("/shapes/binary")
    assert binary.content == bytes(range(256))
    assert fixture_stack.get("/shapes/empty").status_code == 204


def test_an_integration_slower_than_its_timeout_in_millis_is_503(
    fixture_stack: FixtureStack,
) -> None:
    started = time.monotonic()
    response = fixture_stack.get("/hurried/nap")  # TimeoutInMillis 300, the function naps 1 s
    assert (response.status_code, response.content) == (503, b'{"message":"Service Unavailable"}')
    assert time.monotonic() - started < 0.9
    # Without TimeoutInMillis the gateway waits for the function; the route still serves.
    assert fixture_stack.get("/shapes/nap").json() == {"napped": True}
    assert fixture_stack.get("/hurried/dict").json() == {"hello": "world", "n": 1}


@pytest.mark.parametrize("kind", ["raise", "malformed", "exit"])
def test_failures_are_500_and_details_stay_in_the_log(
    fixture_stack: FixtureStack, kind: str
) -> None:
    response = fixture_stack.get(f"/shapes/{kind}")
    assert response.status_code == 500
    assert response.content == b'{"message":"Internal Server Error"}'
    if kind == "raise":
        assert "sk_test_do_not_leak" not in response.text
        log = wait_for(lambda: "sk_test_do_not_leak" in fixture_stack.running.log())
        assert log
        assert "Traceback" in fixture_stack.running.log()
    # The function still answers afterwards.
    assert fixture_stack.get("/shapes/dict").status_code == 200


def test_functions_are_isolated_and_see_the_template_environment(
    fixture_stack: FixtureStack,
) -> None:
    echo = echoed(fixture_stack.get("/public/who"))
    shapes = fixture_stack.get("/shapes/helper").json()
    assert (echo["helper"], shapes["helper"]) == ("echo-helper", "shapes-helper")
    assert Path(echo["module"]).parent.name == "echo"
    assert Path(shapes["module"]).parent.name == "shapes"
    assert echo["pid"] != shapes["pid"]
    assert Path(echo["layer"]).is_relative_to(REPO_ROOT / "layers" / "common")
    environ = echo["environ"]
    assert environ["AWS_ENDPOINT_URL"] == fixture_stack.running.aws_url
    # The --allow-host entries, then the sandbox Okta's address.
    sandbox_domain = fixture_stack.running.sandbox_okta["domain"]
    assert environ["STRONGROOM_DEV_ALLOW_HOSTS"] == f"{ALLOWED_HOST},{sandbox_domain}"
    assert environ["FIXTURE_NAME"] == "echo"
    assert environ["FIXTURE_TABLE"] == "strongroom-local-Table"
    assert environ["FIXTURE_QUEUE_URL"].startswith(fixture_stack.running.aws_url)
    assert environ["RECORD_DIR"] == str(fixture_stack.record_dir)
    assert environ["AWS_LAMBDA_FUNCTION_NAME"] == "strongroom-local-EchoFunction"
    assert echo["context"]["memory_limit_in_mb"] == "256"
    # Handlers' output goes to the stack's log, tagged with the function.
    wait_for(lambda: "[EchoFunction] echo handled a request" in fixture_stack.running.log())


def test_concurrent_requests_are_served_concurrently(fixture_stack: FixtureStack) -> None:
    tag = uuid.uuid4().hex
    answers: list[dict[str, Any]] = []

    def call() -> None:
        answers.append(echoed(fixture_stack.get(f"/public/concurrent?rendezvous={tag}")))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = sorted(answer["pid"] for answer in answers)
    assert len(set(pids)) == 2
    assert all(answer["rendezvous"] == pids for answer in answers)


def test_bodies_over_the_payload_limit_are_refused(fixture_stack: FixtureStack) -> None:
    api = urlsplit(fixture_stack.running.api_url)
    connection = http.client.HTTPConnection(api.hostname or "", api.port, timeout=30)
    try:
        connection.putrequest("POST", "/v1/public/big")
        connection.putheader("Content-Length", str(10 * 1024 * 1024 + 1))
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read()) == {"message": "Request Entity Too Large"}
    finally:
        connection.close()


# ---- the JWT authorizer -----------------------------------------------------------------


def dev_issuer(stack: FixtureStack) -> DevIssuer:
    return DevIssuer.load_or_create(stack.running.state_dir)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bad_authorization_headers(stack: FixtureStack) -> dict[str, str | None]:
    issuer = dev_issuer(stack)
    now = time.time()
    valid = stack.running.token("alice")
    claims = jwt.decode(valid, options={"verify_signature": False})
    public_pem = issuer._private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def unsigned(header: dict[str, Any]) -> str:
        return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"

    hs_input = unsigned({"alg": "HS256", "typ": "JWT", "kid": issuer.kid})
    hs_signature = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    head, _, signature = valid.split(".")
    tampered = b64(json.dumps({**claims, "sub": "mallory"}).encode())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "missing": None,
        "expired": f"Bearer {stack.running.token('alice', now=now - 7200)}",
        "not yet valid": f"Bearer {stack.running.token('alice', now=now + 600)}",
        "wrong aud": f"Bearer {stack.running.token('alice', aud='another-api')}",
        "wrong iss": f"Bearer {stack.running.token('alice', iss='https://evil.example/')}",
        "alg none": f"Bearer {unsigned({'alg': 'none', 'kid': issuer.kid})}.",
        "HS256 with the public key": f"Bearer {hs_input}.{b64(hs_signature)}",
        "unknown kid": "Bearer "
        + jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": "nope"}),
        "tampered payload": f"Bearer {head}.{tampered}.{signature}",
        "wrong scheme": f"Basic {valid}",
        "tampered, no scheme": f"{head}.{tampered}.{signature}",
    }


def test_bad_tokens_get_one_401_and_the_function_is_not_invoked(
    fixture_stack: FixtureStack,
) -> None:
    answers = {}
    markers = {}
    for name, header in bad_authorization_headers(fixture_stack).items():
        marker = uuid.uuid4().hex
        markers[name] = marker
        headers = {"Authorization": header} if header is not None else {}
        answers[name] = fixture_stack.get(f"/echo/{marker}", headers=headers)
    for name, response in answers.items():
        assert response.status_code == 401, name
        assert response.content == b'{"message":"Unauthorized"}', name
        names = sorted(k.lower() for k in response.headers if k.lower() not in ("date",))
        assert names == ["apigw-requestid", "content-length", "content-type", "server"], name
    # A valid request afterwards is recorded (the token alone is enough, as on API Gateway);
    # none of the refused ones ever was.
    good = fixture_stack.get("/echo/after", headers=auth(fixture_stack, "alice"))
    assert good.status_code == 200
    token_alone = auth(fixture_stack, "alice")["Authorization"].removeprefix("Bearer ")
    assert fixture_stack.get("/echo/alone", headers={"Authorization": token_alone}).ok
    recorded = "\n".join(
        path.read_text() for path in (fixture_stack.record_dir / "echo").glob("*.txt")
    )
    assert "/v1/echo/after" in recorded
    for name, marker in markers.items():
        assert marker not in recorded, name


def auth(stack: FixtureStack, sub: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.running.token(sub, **kwargs)}"}


def test_verified_claims_reach_the_function_as_api_gateway_passes_them(
    fixture_stack: FixtureStack,
) -> None:
    headers = auth(fixture_stack, "alice", email="alice@example.com", auth_age=42)
    event = echoed(fixture_stack.get("/echo/e1", headers=headers))["event"]
    assert event["routeKey"] == "GET /echo/{id}"
    assert event["pathParameters"] == {"id": "e1"}
    authorizer = event["requestContext"]["authorizer"]
    assert set(authorizer) == {"jwt"}
    assert authorizer["jwt"]["scopes"] is None
    claims = authorizer["jwt"]["claims"]
    assert set(claims) == {"iss", "aud", "sub", "iat", "nbf", "exp", "auth_time", "jti", "email"}
    assert all(isinstance(value, str) for value in claims.values())
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.com"
    assert int(claims["iat"]) - int(claims["auth_time"]) == 42
    assert int(claims["exp"]) - int(claims["iat"]) == 3600
    assert claims["iss"] == fixture_stack.running.ready["issuer"]
    # API Gateway passes the Authorization header through to the function.
    assert event["headers"]["authorization"] == headers["Authorization"]


def test_scoped_routes_need_a_matching_scope(fixture_stack: FixtureStack) -> None:
    scoped = fixture_stack.get("/scoped", headers=auth(fixture_stack, "a", scopes=["echo.read"]))
    assert echoed(scoped)["event"]["requestContext"]["authorizer"]["jwt"]["scopes"] == ["echo.read"]
    refused = fixture_stack.get("/scoped", headers=auth(fixture_stack, "a", scopes=["other"]))
    assert refused.status_code == 403
    assert refused.json() == {"message": "Forbidden"}
    assert fixture_stack.get("/scoped").status_code == 401


def test_the_dev_token_command_prints_an_accepted_token(fixture_stack: FixtureStack) -> None:
    printed = subprocess.run(  # noqa: S603
        [
            *strongroom_command(),
            "dev-token",
            "--state-dir",
            str(fixture_stack.running.state_dir),
            "--sub",
            "bob",
            "--email",
            "bob@example.com",
            "--ttl",
            "600",
            "--auth-age",
            "30",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    token = printed.stdout.strip()
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == dev_issuer(fixture_stack).kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 600
    assert claims["iat"] - claims["auth_time"] == 30
    response = fixture_stack.get("/echo/cli", headers={"Authorization": f"Bearer {token}"})
    assert echoed(response)["event"]["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == (
        "bob"
    )


# ---- SQS event sources and schedules ----------------------------------------------------


def records(folder: Path, pattern: str) -> list[Path]:
    return sorted(folder.glob(pattern)) if folder.exists() else []


def test_queue_messages_are_delivered_in_batches_with_partial_failures_and_dlq(
    fixture_stack: FixtureStack,
) -> None:
    sqs = fixture_stack.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="strongroom-local-JobQueue")["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName="strongroom-local-JobDeadLetterQueue")["QueueUrl"]
    run = uuid.uuid4().hex[:8]
    ids = {name: f"{run}-{name}" for name in ("ok1", "bad", "ok2", "ok3")}
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": name, "MessageBody": json.dumps({"id": ids[name], "fail": name == "bad"})}
            for name in ids
        ],
    )
    folder = fixture_stack.record_dir / "consumer"

    def dead_lettered() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        return [m for m in messages if run in m["Body"]]

    (dead,) = wait_for(dead_lettered)
    assert json.loads(dead["Body"])["id"] == ids["bad"]
    # Delivered maxReceiveCount (2) times, then moved; the others exactly once.
    assert [p.name for p in records(folder, f"{ids['bad']}-*.json")] == [
        f"{ids['bad']}-1.json",
        f"{ids['bad']}-2.json",
    ]
    for name in ("ok1", "ok2", "ok3"):
        assert [p.name for p in records(folder, f"{ids[name]}-*.json")] == [f"{ids[name]}-1.json"]
    # Batched (BatchSize 4, a batching window): the mapping's pollers run side by side, as
    # Lambda's do, so the four may be split between them, but each is delivered in one batch.
    batches = [json.loads(p.read_text()) for p in records(folder, "batch-*.json")]
    first = [b for b in batches if set(b) & {ids["ok1"], ids["ok2"], ids["ok3"]}]
    assert sorted(i for b in first for i in b if i != ids["bad"]) == sorted(
        ids[name] for name in ("ok1", "ok2", "ok3")
    )
    record = json.loads((folder / f"{ids['ok1']}-1.json").read_text())
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"].endswith(":strongroom-local-JobQueue")
    assert record["awsRegion"] == "us-east-1"
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_raising_consumer_returns_its_batch_until_the_dlq(fixture_stack: FixtureStack) -> None:
    sqs = fixture_stack.client("sqs")
    queue_url = sqs.get_queue_url(QueueName="strongroom-local-JobQueue")["QueueUrl"]
    dlq_url = sqs.get_queue_url(QueueName="strongroom-local-JobDeadLetterQueue")["QueueUrl"]
    run = uuid.uuid4().hex[:8]
    # A full batch (BatchSize 4) is delivered without waiting for the batching window.
    sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"id": f"{run}-x{i}", "explode": True})}
            for i in range(4)
        ],
    )
    dead: list[dict[str, Any]] = []

    def all_dead_lettered() -> bool:
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
        dead.extend(m for m in messages if run in m["Body"])
        return len(dead) == 4

    wait_for(all_dead_lettered)
    folder = fixture_stack.record_dir / "consumer"
    for i in range(4):
        assert [p.name for p in records(folder, f"{run}-x{i}-*.json")] == [
            f"{run}-x{i}-1.json",
            f"{run}-x{i}-2.json",
        ]


def run_cli(stack: FixtureStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603
        [*strongroom_command(), *args, "--state-dir", str(stack.running.state_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def tick_events(stack: FixtureStack) -> list[Any]:
    folder = stack.record_dir / "tick"
    return [json.loads(p.read_text()) for p in records(folder, "*.json")]


def test_fire_schedule_delivers_the_eventbridge_event(fixture_stack: FixtureStack) -> None:
    before = len(tick_events(fixture_stack))
    fired = run_cli(fixture_stack, "fire-schedule", "TickFunction", "--event", "Nightly")
    assert fired.returncode == 0, fired.stderr
    answer = json.loads(fired.stdout)
    assert (answer["function"], answer["ok"]) == ("TickFunction", True)
    events = tick_events(fixture_stack)
    assert len(events) == before + 1
    (event,) = [e for e in events if isinstance(e, dict) and e.get("source") == "aws.events"]
    assert event["detail-type"] == "Scheduled Event"
    assert event["detail"] == {}
    assert event["version"] == "0"
    assert event["account"] == "123456789012"
    assert event["region"] == "us-east-1"
    assert event["resources"] == [
        "arn:aws:events:us-east-1:123456789012:rule/strongroom-local-TickFunctionNightly"
    ]
    assert event["time"].endswith("Z")

    hourly = run_cli(fixture_stack, "fire-schedule", "TickFunction", "--event", "Hourly")
    assert hourly.returncode == 0, hourly.stderr
    (inputs,) = [e for e in tick_events(fixture_stack) if e.get("job") == "hourly"]
    assert inputs["scheduled"].endswith("Z")


def test_fire_schedule_refuses_ambiguity_unknown_functions_and_unknown_events(
    fixture_stack: FixtureStack,
) -> None:
    ambiguous = run_cli(fixture_stack, "fire-schedule", "TickFunction")
    assert ambiguous.returncode == 2
    assert "Nightly" in ambiguous.stderr
    assert "Hourly" in ambiguous.stderr
    unknown = run_cli(fixture_stack, "fire-schedule", "EchoFunction")
    assert unknown.returncode == 2
    assert unknown.stderr == "strongroom fire-schedule: no schedule for EchoFunction\n"
    misnamed = run_cli(fixture_stack, "fire-schedule", "TickFunction", "--event", "Nope")
    assert misnamed.returncode == 2
    assert misnamed.stderr == (
        "strongroom fire-schedule: TickFunction has no schedule Nope;"
        " its schedules: Nightly, Hourly\n"
    )


def test_invoke_runs_any_function(fixture_stack: FixtureStack, tmp_path: Path) -> None:
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"pathParameters": {"kind": "dict"}}))
    invoked = run_cli(fixture_stack, "invoke", "ShapesFunction", "--event-file", str(event_file))
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["result"] == {"hello": "world", "n": 1}


def test_the_control_endpoint_needs_the_token_but_serves_the_jwks(
    fixture_stack: FixtureStack,
) -> None:
    control = fixture_stack.running.control_url
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        refused = fixture_stack.http.post(
            f"{control}/schedules/TickFunction/fire?event=Nightly", headers=headers, timeout=30
        )
        assert refused.status_code == 401
    jwks = fixture_stack.http.get(fixture_stack.running.ready["jwks_url"], timeout=30).json()
    assert [key["kid"] for key in jwks["keys"]] == [dev_issuer(fixture_stack).kid]
    assert all("d" not in key for key in jwks["keys"])
    stack_file = fixture_stack.running.state_dir / "stack.json"
    assert stack_file.stat().st_mode & 0o777 == 0o600
