"""AWS calls per request for each route on a warm function, and for the warm token path.

Counts every botocore call (service and operation) the handler makes per request, on moto
resources built from template.yaml. Targets: read routes at most 2 DynamoDB calls and zero KMS
calls once warm (the audit log's page also lists the page's keys once and reads one S3 object
per stored event); a cached access token at most one DynamoDB read and zero KMS calls. The OAuth
routes and the token service talk to the local authorization server double on 127.0.0.1.
Run with `make bench` or `.venv/bin/python <this file>`.
"""

from __future__ import annotations

import hashlib
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
from strongroom_local.routes import http_routes  # noqa: E402
from strongroom_local.template import REPO_ROOT, load_template  # noqa: E402

FUNCTION_DIR = REPO_ROOT / "functions" / "credential_store"
# Every read route of the template (protected GETs), so that one added is measured or reported.
READ_ROUTES = {
    route.route_key
    for route in http_routes(load_template(REPO_ROOT / "template.yaml"))
    if route.method == "GET" and route.protected
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

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000  # the template's timeout, untouched


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
            # After the member changes, so the page holds several events: one S3 read each.
            ("GET", "/orgs/{org_id}/audit", f"/orgs/{org}/audit", org_params, None),
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
        measured_reads = {f"{m} {r}" for m, r, *_ in scenarios if f"{m} {r}" in READ_ROUTES}
        for key, counted in [
            *_connection_routes(app, request, org),
            *_backup_routes(stack, session, calls, org),
        ]:
            by_service = Counter(name.split(".")[0] for name in counted.elements())
            if key in READ_ROUTES:
                measured_reads.add(key)
                worst_read = max(worst_read, (by_service["dynamodb"], by_service["kms"]))
            _print(key, counted)
        token_verdict, token_met = _oauth(app, session, calls, org)
    reads_met = _reads_met(worst_read, measured_reads)
    print(token_verdict)
    # A missed target is a failed run, whatever the figures printed before it.
    return 0 if reads_met and token_met else 1


def _reads_met(worst_read: tuple[int, int], measured: set[str]) -> bool:
    ddb, kms = worst_read
    unmeasured = sorted(READ_ROUTES - measured)
    met = ddb <= 2 and kms == 0 and not unmeasured
    verdict = "met" if met else "NOT met"
    print(f"read routes, warm: at most {ddb} DynamoDB, {kms} KMS calls (target <= 2, 0): {verdict}")
    if unmeasured:
        print(f"read routes of the template not measured: {', '.join(unmeasured)}")
    return met


def _load(name: str, function: str) -> Any:
    directory = REPO_ROOT / "functions" / function
    sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(name, directory / "app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _print(key: str, counted: Counter[str]) -> None:
    by_service = Counter(name.split(".")[0] for name in counted.elements())
    ops = ", ".join(f"{name} x{n}" for name, n in sorted(counted.items()))
    ddb, kms, s3 = (by_service[name] for name in ("dynamodb", "kms", "s3"))
    print(f"{key:<62} {ddb:>4} {kms:>4} {s3:>4}  {ops}")


def _oauth(app: Any, session: Any, calls: Counter[str], org: str) -> tuple[str, bool]:
    """The OAuth routes (authorize, callback) and the warm token path, against the double."""
    from urllib.parse import parse_qs, urlsplit

    import requests
    from credential_store import services as cs_services

    from strongroom_local.authorization_server import LocalAuthorizationServer

    with LocalAuthorizationServer() as server:
        os.environ["STRONGROOM_DEV_ALLOW_HOSTS"] = server.host_port
        settings = Settings.from_environ(os.environ)
        built = cs_services.build_services(settings, session)
        app.services = lambda: built
        oauth_app = _load("oauth_callback_app", "oauth_callback")
        from oauth_flow import services as oauth_services

        oauth_built = oauth_services.build_services(settings, session)
        oauth_app.services = lambda: oauth_built
        secret = "bench-secret-" + "0" * 16
        server.register_client("bench", redirect_uris=[settings.oauth_redirect_uri], secret=secret)
        endpoints = {
            "provider": "oauth2",
            "authorization_endpoint": server.authorization_endpoint,
            "token_endpoint": server.token_endpoint,
            "revocation_endpoint": server.revocation_endpoint,
        }
        ids = {}
        for method in ("authorization_code", "client_credentials"):
            body = {
                **CONNECTION_BODY,
                **endpoints,
                "domain": None,
                "auth": {"method": method, "client_id": "bench", "client_secret": secret},
            }
            body = {k: v for k, v in body.items() if v is not None}
            path = f"/orgs/{org}/connections"
            response = app.lambda_handler(
                _event("POST", CONNECTIONS, path, {"org_id": org}, body), _Context()
            )
            assert response["statusCode"] == 201, response
            ids[method] = json.loads(response["body"])["connection_id"]
        route = "/orgs/{org_id}/connections/{connection_id}/authorize"
        params = {"org_id": org, "connection_id": ids["authorization_code"]}
        path = f"/orgs/{org}/connections/{ids['authorization_code']}/authorize"

        def authorize() -> tuple[dict[str, str], str]:
            response = oauth_app.lambda_handler(_event("POST", route, path, params), _Context())
            assert response["statusCode"] == 200, response
            url = json.loads(response["body"])["authorization_url"]
            redirect = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
            query = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
            return query, response["cookies"][0].split(";")[0]

        def callback(query: dict[str, str], cookie: str) -> None:
            event = _event("GET", "/oauth/callback", "/oauth/callback", {})
            del event["requestContext"]["authorizer"]
            event["queryStringParameters"] = query
            event["cookies"] = [cookie]
            response = oauth_app.lambda_handler(event, _Context())
            assert "result=connected" in response["headers"]["Location"], response

        callback(*authorize())  # warm both routes
        calls.clear()
        query, cookie = authorize()
        _print(f"POST {route}", Counter(calls))
        calls.clear()
        callback(query, cookie)
        _print("GET /oauth/callback (code exchange, grant replaced)", Counter(calls))

        return _cached_tokens(oauth_built.tokens, calls, org, ids)


def _cached_tokens(
    tokens: Any, calls: Counter[str], org: str, ids: dict[str, str]
) -> tuple[str, bool]:
    """AWS calls per access_token() call once each connection's token is cached."""
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    cached_routes = []
    for method, connection_id in ids.items():
        tokens.access_token(org, connection_id, now=now, request_id="bench")  # fetched
        calls.clear()
        rounds = 1000
        for _ in range(rounds):
            tokens.access_token(org, connection_id, now=now, request_id="bench")
        per_call = Counter(calls)
        ddb = sum(n for name, n in per_call.items() if name.startswith("dynamodb")) / rounds
        kms = sum(n for name, n in per_call.items() if name.startswith("kms")) / rounds
        print(
            f"{'token service, cached (' + method + ')':<62} {ddb:>4.1f} {kms:>4.1f}"
            f"    -  per call over {rounds} calls"
        )
        cached_routes.append((ddb, kms))
    ddb, kms = max(cached_routes)
    met = ddb <= 1 and kms == 0
    verdict = "met" if met else "NOT met"
    return (
        f"cached token: {ddb:.1f} DynamoDB reads, {kms:.1f} KMS calls per call "
        f"(target <= 1, 0): {verdict}"
    ), met


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


def _backup_routes(
    stack: Any, session: Any, calls: Counter[str], org: str
) -> list[tuple[str, Counter[str]]]:
    """signed_url_issuer's routes on a complete backup, written as the worker writes one: its
    files and manifest SSE-KMS under the org's key, then its record with the listing entry."""
    from datetime import UTC, datetime

    from strongroom.backups import (
        BACKUP_KIND,
        MANIFEST_FILE,
        backup_index,
        backup_prefix,
        new_backup_id,
        object_key,
    )

    os.environ.update(stack.function_environment("SignedUrlIssuerFunction"))
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    settings = Settings.from_environ(os.environ)
    issuer = _load("signed_url_issuer_app", "signed_url_issuer")
    from backup_downloads import services as issuer_services

    built = issuer_services.build_services(settings, session)
    issuer.services = lambda: built
    connection_id, started = "conn_" + "b" * 26, datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
    backup_id = new_backup_id()
    prefix = backup_prefix(org, connection_id, started, backup_id)
    s3 = boto3.client("s3", region_name="us-east-1")

    def put(key: str, body: bytes) -> str:
        return str(
            s3.put_object(
                Bucket=settings.backup_bucket,
                Key=key,
                Body=body,
                ServerSideEncryption="aws:kms",
                SSEKMSKeyId=settings.org_key_alias_prefix + org,
            )["VersionId"]
        )

    users = json.dumps([{"id": "00u1", "profile": {"login": "a@x.example"}}]).encode()
    files = {
        "users": {
            "key": object_key(prefix, "users"),
            "version_id": put(object_key(prefix, "users"), users),
            "sha256": hashlib.sha256(users).hexdigest(),
            "bytes": len(users),
            "items": 1,
        }
    }
    stamp = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {
        "schema_version": 1,
        "backup_id": backup_id,
        "org_id": org,
        "connection_id": connection_id,
        "provider": "okta",
        "started_at": stamp,
        "finished_at": stamp,
        "files": [
            {"resource": "users", **{k: v for k, v in files["users"].items() if k != "version_id"}}
        ],
        "removed_fields": {},
    }
    built.table.create(
        org,
        BACKUP_KIND,
        backup_id,
        attributes={
            "connection_id": connection_id,
            "provider": "okta",
            "trigger": "schedule",
            "requested_by": "system:scheduler",
            "status": "complete",
            "suspect": False,
            "started_at": stamp,
            "finished_at": stamp,
            "prefix": prefix,
            "manifest_key": object_key(prefix, "manifest"),
            "manifest_version_id": put(
                prefix + MANIFEST_FILE, json.dumps(manifest, sort_keys=True).encode()
            ),
            "files": files,
            "removed_fields": {},
            "schema_version": 1,
        },
        now=started,
        index=backup_index(connection_id, started, backup_id),
    )
    listing = "/orgs/{org_id}/connections/{connection_id}/backups"
    one = "/orgs/{org_id}/backups/{backup_id}"
    link = "/orgs/{org_id}/backups/{backup_id}/download-url"
    scenarios = [
        (
            "GET",
            listing,
            f"/orgs/{org}/connections/{connection_id}/backups",
            {"org_id": org, "connection_id": connection_id},
            None,
        ),
        (
            "GET",
            one,
            f"/orgs/{org}/backups/{backup_id}",
            {"org_id": org, "backup_id": backup_id},
            None,
        ),
        (
            "POST",
            link,
            f"/orgs/{org}/backups/{backup_id}/download-url",
            {"org_id": org, "backup_id": backup_id},
            {"resource": "users"},
        ),
    ]
    measured = []
    for method, route, path, params, body in scenarios:
        for _ in range(2):  # warm, then measured
            calls.clear()
            response = issuer.lambda_handler(_event(method, route, path, params, body), _Context())
            assert response["statusCode"] == 200, response
        measured.append((f"{method} {route}", Counter(calls)))
    return measured


if __name__ == "__main__":
    raise SystemExit(main())
