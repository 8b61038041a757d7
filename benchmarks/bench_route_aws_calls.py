"""AWS calls per request for each credential_store route on a warm function.

Counts every botocore call (service and operation) the handler makes per request, on moto
resources built from template.yaml. Target: read routes at most 2 DynamoDB calls and zero KMS
calls once warm. Run with `make bench` or `.venv/bin/python <this file>`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections import Counter
from typing import Any

for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}.items():
    os.environ[_name] = _value

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from strongroom.settings import Settings  # noqa: E402
from strongroom_local.provision import provision  # noqa: E402
from strongroom_local.template import REPO_ROOT  # noqa: E402

FUNCTION_DIR = REPO_ROOT / "functions" / "credential_store"
READ_ROUTES = {
    "GET /orgs/{org_id}",
    "GET /orgs/{org_id}/members",
    "GET /orgs/{org_id}/connections",
    "GET /orgs/{org_id}/connections/{connection_id}",
}
CONNECTIONS = "/orgs/{org_id}/connections"
CONNECTION = "/orgs/{org_id}/connections/{connection_id}"
# Made-up values: the benchmark never talks to a provider.
BENCH_AUTH = {"method": "client_credentials", "client_id": "bench", "client_secret": "bench-0000"}
CONNECTION_BODY = {
    "name": "Bench Okta",
    "provider": "okta",
    "domain": "bench.okta.com",
    "scopes": ["okta.users.read"],
    "auth": BENCH_AUTH,
    "schedule": "rate(1 day)",
}


class _Context:
    function_name = "CredentialStoreFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"


def _event(method: str, route: str, path: str, params: dict[str, str], body: Any = None) -> dict:
    template = json.loads((REPO_ROOT / "events" / "http_api_v2_base.json").read_text())
    template["routeKey"] = template["requestContext"]["routeKey"] = f"{method} {route}"
    template["rawPath"] = template["requestContext"]["http"]["path"] = path
    template["requestContext"]["http"]["method"] = method
    if params:
        template["pathParameters"] = params
    if body is not None:
        template["body"] = json.dumps(body)
    return template


def main() -> int:
    calls: Counter[str] = Counter()
    with mock_aws():
        stack = provision(boto3.Session(region_name="us-east-1"))
        os.environ.update(stack.function_environment("CredentialStoreFunction"))
        os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"  # the template's level would print lines
        sys.path.insert(0, str(FUNCTION_DIR))
        spec = importlib.util.spec_from_file_location(
            "credential_store_app", FUNCTION_DIR / "app.py"
        )
        assert spec is not None
        assert spec.loader is not None
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        from credential_store import services as services_module

        session = boto3.Session(region_name="us-east-1")
        session._session.register(  # type: ignore[attr-defined]
            "before-call", lambda event_name, **_: calls.update([event_name.split(".", 1)[1]])
        )
        built = services_module.build_services(Settings.from_environ(os.environ), session)
        services_module.services = lambda: built
        app.services = lambda: built

        def request(
            method: str, route: str, path: str, params: dict[str, str], body: Any = None
        ) -> Counter[str]:
            calls.clear()
            response = app.lambda_handler(_event(method, route, path, params, body), _Context())
            assert response["statusCode"] < 300, response
            return Counter(calls)

        created = app.lambda_handler(
            _event("POST", "/orgs", "/orgs", {}, {"name": "Bench"}), _Context()
        )
        org = json.loads(created["body"])["org_id"]
        org_params = {"org_id": org}
        member_params = {"org_id": org, "user_id": "bob"}
        scenarios = [
            ("POST", "/orgs", "/orgs", {}, {"name": "Acme"}),
            ("GET", "/orgs/{org_id}", f"/orgs/{org}", org_params, None),
            ("GET", "/orgs/{org_id}/members", f"/orgs/{org}/members", org_params, None),
            (
                "PUT",
                "/orgs/{org_id}/members/{user_id}",
                f"/orgs/{org}/members/bob",
                member_params,
                {"role": "admin"},
            ),
            (
                "DELETE",
                "/orgs/{org_id}/members/{user_id}",
                f"/orgs/{org}/members/bob",
                member_params,
                None,
            ),
        ]
        print(f"{'route':<62} {'ddb':>4} {'kms':>4} {'s3':>4}  operations")
        worst_read = (0, 0)
        for method, route, path, params, body in scenarios:
            request(method, route, path, params, body)  # warm this route
            # Measure a real change, not a no-op: PUT flips the role, DELETE needs the member back.
            measured = {"role": "member"} if method == "PUT" else body
            if method == "DELETE":
                request("PUT", "/orgs/{org_id}/members/{user_id}", path, params, {"role": "admin"})
            counted = request(method, route, path, params, measured)
            by_service = Counter(name.split(".")[0] for name in counted.elements())
            key = f"{method} {route}"
            if key in READ_ROUTES:
                worst_read = max(worst_read, (by_service["dynamodb"], by_service["kms"]))
            ops = ", ".join(f"{name} x{n}" for name, n in sorted(counted.items()))
            ddb, kms, s3 = (by_service[name] for name in ("dynamodb", "kms", "s3"))
            print(f"{key:<62} {ddb:>4} {kms:>4} {s3:>4}  {ops}")
        for key, counted in _connection_routes(app, request, org):
            by_service = Counter(name.split(".")[0] for name in counted.elements())
            if key in READ_ROUTES:
                worst_read = max(worst_read, (by_service["dynamodb"], by_service["kms"]))
            ops = ", ".join(f"{name} x{n}" for name, n in sorted(counted.items()))
            ddb, kms, s3 = (by_service[name] for name in ("dynamodb", "kms", "s3"))
            print(f"{key:<62} {ddb:>4} {kms:>4} {s3:>4}  {ops}")
    ddb, kms = worst_read
    verdict = "met" if ddb <= 2 and kms == 0 else "NOT met"
    print(f"read routes, warm: at most {ddb} DynamoDB, {kms} KMS calls (target <= 2, 0): {verdict}")
    return 0


def _connection_routes(app: Any, request: Any, org: str) -> list[tuple[str, Counter[str]]]:
    """Each connection route warmed once, then measured (two connections: one per delete)."""
    org_params = {"org_id": org}
    path = f"/orgs/{org}/connections"
    measured: list[tuple[str, Counter[str]]] = []
    request("POST", CONNECTIONS, path, org_params, CONNECTION_BODY)
    measured.append(
        (f"POST {CONNECTIONS}", request("POST", CONNECTIONS, path, org_params, CONNECTION_BODY))
    )
    listed = app.lambda_handler(_event("GET", CONNECTIONS, path, org_params), _Context())
    ids = [c["connection_id"] for c in json.loads(listed["body"])["connections"]]
    one = {"org_id": org, "connection_id": ids[0]}
    one_path = f"{path}/{ids[0]}"
    credentials = (f"{CONNECTION}/credentials", f"{one_path}/credentials")
    for method, route, route_path, params, body in (
        ("GET", CONNECTIONS, path, org_params, None),
        ("GET", CONNECTION, one_path, one, None),
        ("PUT", *credentials, one, {"auth": BENCH_AUTH}),
    ):
        request(method, route, route_path, params, body)
        measured.append((f"{method} {route}", request(method, route, route_path, params, body)))
    request("DELETE", CONNECTION, one_path, one)
    other = {"org_id": org, "connection_id": ids[1]}
    counted = request("DELETE", CONNECTION, f"{path}/{ids[1]}", other)
    measured.append((f"DELETE {CONNECTION}", counted))
    return measured


if __name__ == "__main__":
    raise SystemExit(main())
