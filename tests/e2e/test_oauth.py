"""The OAuth authorization-code flow through the real local stack, and a canary scan of it all.

The admin's browser is played by the test: it follows the authorization URL at the local
authorization server double, which redirects to the stack's own /oauth/callback, which sends
the browser on to the return URL with a result code.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from strongroom_local.authorization_server import LocalAuthorizationServer
from tests.e2e.conftest import LocalStackClient, new_user

pytestmark = pytest.mark.e2e
TIMEOUT = 30


class Recorder:
    """Calls the stack and keeps every response body, for the canary scan."""

    def __init__(self, stack: LocalStackClient) -> None:
        self.stack = stack
        self.bodies: list[str] = []

    def call(self, method: str, path: str, sub: str | None = None, **kwargs: Any) -> Any:
        headers = dict(kwargs.pop("headers", {}))
        if sub is not None:
            headers.update(self.stack.auth(sub))
        url = path if path.startswith("http") else self.stack.url(path)
        response = self.stack.http.request(
            method, url, headers=headers, timeout=TIMEOUT, allow_redirects=False, **kwargs
        )
        self.bodies.append(response.text)
        self.bodies.append(json.dumps(dict(response.headers)))
        return response


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def _org_with_admin(rec: Recorder) -> tuple[str, str]:
    owner, admin = new_user("alice"), new_user("bob")
    response = rec.call("POST", "/orgs", owner, json={"name": "Acme"})
    assert response.status_code == 201
    org = response.json()["org_id"]
    response = rec.call("PUT", f"/orgs/{org}/members/{admin}", owner, json={"role": "admin"})
    assert response.status_code == 200
    return org, admin


def _code_connection(
    rec: Recorder,
    server: LocalAuthorizationServer,
    org: str,
    admin: str,
    secret: str,
    *,
    provider: str = "oauth2",
) -> tuple[str, str]:
    """`oauth2` names the double's endpoints; `okta` its host:port as the domain (the double
    serves Okta's paths, and its URL is the issuer an Okta org's would be)."""
    client_id = "client-" + secrets.token_hex(4)
    server.register_client(
        client_id, redirect_uris=[rec.stack.url("/oauth/callback")], secret=secret
    )
    endpoints = (
        {
            "authorization_endpoint": server.authorization_endpoint,
            "token_endpoint": server.token_endpoint,
            "revocation_endpoint": server.revocation_endpoint,
        }
        if provider == "oauth2"
        else {"domain": server.host_port}
    )
    response = rec.call(
        "POST",
        f"/orgs/{org}/connections",
        admin,
        json={
            "name": "Example IdP",
            "provider": provider,
            **endpoints,
            "scopes": ["api.read"],
            "auth": {
                "method": "authorization_code",
                "client_id": client_id,
                "client_secret": secret,
            },
            "schedule": "rate(1 day)",
        },
    )
    assert response.status_code == 201, response.text
    return response.json()["connection_id"], client_id


def _start(rec: Recorder, org: str, connection_id: str, admin: str) -> tuple[str, str]:
    response = rec.call("POST", f"/orgs/{org}/connections/{connection_id}/authorize", admin)
    assert response.status_code == 200, response.text
    # The one response meant to carry a state and a binding cookie: not scanned.
    del rec.bodies[-2:]
    cookie = response.headers["Set-Cookie"]
    # RFC 6265bis `__Host-`: Secure, Path=/ and no Domain, or a browser drops the cookie.
    name, *attributes = (part.strip() for part in cookie.split(";"))
    assert name.startswith("__Host-strongroom_oauth_binding=")
    assert {"HttpOnly", "Secure", "Path=/"} <= set(attributes)
    assert not [a for a in attributes if a.lower().startswith("domain")]
    return response.json()["authorization_url"], cookie.split(";")[0]


def _browse(rec: Recorder, authorization_url: str) -> str:
    response = rec.stack.http.get(authorization_url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(rec.stack.url("/oauth/callback?"))
    return location


def _callback(rec: Recorder, location: str, cookie: str | None) -> dict[str, str]:
    headers = {"Cookie": cookie} if cookie else {}
    response = rec.call("GET", location, headers=headers)
    assert response.status_code == 302, response.text
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    target = response.headers["Location"]
    assert target.startswith(rec.stack.url("/health?"))
    return _query(target)


def test_oauth_connect_replay_and_delete_over_http_leave_no_secret_anywhere(
    local_stack: LocalStackClient, authorization_server: LocalAuthorizationServer
) -> None:
    rec = Recorder(local_stack)
    org, admin = _org_with_admin(rec)
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, client_id = _code_connection(rec, authorization_server, org, admin, secret)
    path = f"/orgs/{org}/connections/{connection_id}"
    assert rec.call("GET", path, admin).json()["status"] == "pending_authorization"

    url, cookie = _start(rec, org, connection_id, admin)
    location = _browse(rec, url)
    callback_query = _query(location)
    assert _callback(rec, location, cookie) == {
        "result": "connected",
        "connection_id": connection_id,
    }
    [refresh_token] = authorization_server.current_refresh_tokens(client_id)
    body = rec.call("GET", path, admin).json()
    assert body["status"] == "active"
    assert {c["field"] for c in body["credentials"]} == {"client_secret", "refresh_token"}

    # Replayed, or from another browser: a clear result, nothing spent.
    assert _callback(rec, location, cookie) == {"result": "invalid_state"}
    url2, cookie2 = _start(rec, org, connection_id, admin)
    location2 = _browse(rec, url2)
    assert _callback(rec, location2, cookie) == {"result": "invalid_state"}
    assert _callback(rec, location2, None) == {"result": "invalid_state"}
    assert _callback(rec, location2, cookie2)["result"] == "connected"
    # The new grant replaced the old one, which was revoked at the provider.
    [refresh_token2] = authorization_server.current_refresh_tokens(client_id)
    assert refresh_token2 != refresh_token
    assert not authorization_server.is_active(refresh_token)

    # Another org's admin cannot start a flow for this connection: 404 like a missing one.
    other_org, other_admin = _org_with_admin(rec)
    stranger = rec.call("POST", f"/orgs/{org}/connections/{connection_id}/authorize", other_admin)
    assert stranger.status_code == 404
    mixed = rec.call(
        "POST", f"/orgs/{other_org}/connections/{connection_id}/authorize", other_admin
    )
    assert mixed.status_code == 404

    # Delete revokes at the provider.
    assert rec.call("DELETE", path, admin).status_code == 204
    assert not authorization_server.is_active(refresh_token2)

    canaries = {
        "client secret": secret,
        "refresh token": refresh_token,
        "rotated refresh token": refresh_token2,
        "authorization code": callback_query["code"],
        "state secret": callback_query["state"].partition(".")[2],
        "binding cookie": cookie.partition("=")[2],
    }
    _scan(local_stack, rec, canaries)


def test_replacing_credentials_revokes_what_it_drops_at_the_provider(
    local_stack: LocalStackClient, authorization_server: LocalAuthorizationServer
) -> None:
    rec = Recorder(local_stack)
    org, admin = _org_with_admin(rec)
    server = authorization_server
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, client_id = _code_connection(rec, server, org, admin, secret)
    url, cookie = _start(rec, org, connection_id, admin)
    assert _callback(rec, _browse(rec, url), cookie)["result"] == "connected"
    [refresh_token] = server.current_refresh_tokens(client_id)
    path = f"/orgs/{org}/connections/{connection_id}"
    callback = rec.stack.url("/oauth/callback")

    # The secret is rotated at the provider first, then here: the grant stays, and its access
    # token is left to expire (a provider may revoke the whole grant with any of its tokens).
    before = server.counts()
    new_secret = "CANARYsecret" + secrets.token_hex(12)
    server.register_client(client_id, redirect_uris=[callback], secret=new_secret)
    auth = {"method": "authorization_code", "client_id": client_id, "client_secret": new_secret}
    response = rec.call("PUT", f"{path}/credentials", admin, json={"auth": auth})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert server.counts()["revocations"] == before["revocations"]
    assert server.is_active(refresh_token)

    # A new client: the old client's grant is revoked with the old client's credentials.
    other_client, other_secret = "client-" + secrets.token_hex(4), "CANARY" + secrets.token_hex(12)
    server.register_client(other_client, redirect_uris=[callback], secret=other_secret)
    auth = {
        "method": "authorization_code",
        "client_id": other_client,
        "client_secret": other_secret,
    }
    response = rec.call("PUT", f"{path}/credentials", admin, json={"auth": auth})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending_authorization"
    assert not server.is_active(refresh_token)
    assert server.current_refresh_tokens(client_id) == []

    events = rec.call("GET", f"/orgs/{org}/audit", admin).json()["events"]
    revocations = [
        (e["outcome"], e["details"]) for e in events if e["action"] == "credential.revoke"
    ]
    assert revocations == [("success", {"revocation": "revoked", "reason": "credentials_replaced"})]
    canaries = {
        "client secret": secret,
        "rotated client secret": new_secret,
        "new client's secret": other_secret,
        "refresh token": refresh_token,
    }
    _scan(local_stack, rec, canaries)


def test_an_authorization_response_from_another_issuer_is_refused_through_the_stack(
    local_stack: LocalStackClient, authorization_server: LocalAuthorizationServer
) -> None:
    # RFC 9207: the double names itself in `iss`; the flow recorded the issuer it expects.
    rec = Recorder(local_stack)
    server = authorization_server
    org, admin = _org_with_admin(rec)
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, client_id = _code_connection(rec, server, org, admin, secret, provider="okta")
    path = f"/orgs/{org}/connections/{connection_id}"
    url, cookie = _start(rec, org, connection_id, admin)
    assert url.startswith(server.url + "/oauth2/v1/authorize?")
    location = _browse(rec, url)
    assert _query(location)["iss"] == server.url
    issued = urlencode({"iss": server.url})
    assert issued in location
    mixed_up = location.replace(issued, urlencode({"iss": "https://attacker.example"}))
    exchanged = server.counts()["grant_authorization_code"]  # the double is the session's

    assert _callback(rec, mixed_up, cookie) == {"result": "invalid_state"}
    # The state is spent and nothing was exchanged or stored.
    assert _callback(rec, location, cookie) == {"result": "invalid_state"}
    assert server.counts()["grant_authorization_code"] == exchanged
    assert server.current_refresh_tokens(client_id) == []
    assert rec.call("GET", path, admin).json()["status"] == "pending_authorization"

    # The server's own issuer connects.
    url, cookie = _start(rec, org, connection_id, admin)
    assert _callback(rec, _browse(rec, url), cookie) == {
        "result": "connected",
        "connection_id": connection_id,
    }
    assert len(server.current_refresh_tokens(client_id)) == 1
    assert rec.call("GET", path, admin).json()["status"] == "active"


def test_access_denied_through_the_stack(
    local_stack: LocalStackClient, authorization_server: LocalAuthorizationServer
) -> None:
    rec = Recorder(local_stack)
    org, admin = _org_with_admin(rec)
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, _ = _code_connection(rec, authorization_server, org, admin, secret)
    authorization_server.deny_next_authorization()
    url, cookie = _start(rec, org, connection_id, admin)
    location = _browse(rec, url)
    assert _query(location)["error"] == "access_denied"
    assert _callback(rec, location, cookie) == {
        "result": "access_denied",
        "connection_id": connection_id,
    }
    body = rec.call("GET", f"/orgs/{org}/connections/{connection_id}", admin).json()
    assert body["status"] == "pending_authorization"


def _scan(stack: LocalStackClient, rec: Recorder, canaries: dict[str, str]) -> None:
    """No canary in a response, a log line, a DynamoDB item or an S3 object of the stack."""
    places: dict[str, str] = {"responses": "\n".join(rec.bodies), "stack log": stack.log()}
    dynamodb = stack.client("dynamodb")
    for table in dynamodb.list_tables()["TableNames"]:
        items = dynamodb.scan(TableName=table)["Items"]
        places[f"table {table}"] = repr(items)
    s3 = stack.client("s3")
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        versions = s3.list_object_versions(Bucket=name).get("Versions", [])
        assert versions or name, name
        for version in versions:
            obj = s3.get_object(Bucket=name, Key=version["Key"], VersionId=version["VersionId"])
            places[f"s3 {name}/{version['Key']}"] = obj["Body"].read().decode("utf-8", "replace")
    assert any(key.startswith("s3 ") for key in places), "the audit trail should be in S3"
    assert "oauth flow started" in places["stack log"], "the functions' log lines are scanned"
    leaks = [
        (what, where)
        for what, canary in canaries.items()
        for where, text in places.items()
        if canary in text
    ]
    assert leaks == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("status_500", "provider_unavailable"),
        ("html", "provider_unavailable"),
        ("oversized", "provider_unavailable"),
        ("invalid_grant", "exchange_refused"),
    ],
)
def test_token_endpoint_failures_through_the_stack_store_nothing(
    local_stack: LocalStackClient,
    authorization_server: LocalAuthorizationServer,
    fault: str,
    expected: str,
) -> None:
    rec = Recorder(local_stack)
    org, admin = _org_with_admin(rec)
    secret = "CANARYsecret" + secrets.token_hex(12)
    connection_id, client_id = _code_connection(rec, authorization_server, org, admin, secret)
    url, cookie = _start(rec, org, connection_id, admin)
    location = _browse(rec, url)
    authorization_server.fail_next_token_requests(1, fault)  # type: ignore[arg-type]
    assert _callback(rec, location, cookie) == {"result": expected, "connection_id": connection_id}
    body = rec.call("GET", f"/orgs/{org}/connections/{connection_id}", admin).json()
    assert body["status"] == "pending_authorization"
    assert authorization_server.current_refresh_tokens(client_id) == []
    # A forged state (right shape, unknown secret) is refused the same way as a spent one.
    forged = location.replace(_query(location)["state"], f"{org}." + "A" * 43)
    assert _callback(rec, forged, cookie) == {"result": "invalid_state"}
