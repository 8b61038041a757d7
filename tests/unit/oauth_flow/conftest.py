"""Both functions of the OAuth flow on moto, against the local authorization server double.

`world` drives credential_store (orgs, connections) and oauth_callback (authorize, callback)
through their lambda_handlers with payload v2 events, and plays the admin's browser at the
authorization server: the same path a real flow takes, with AWS emulated in-process.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import requests

from strongroom.settings import Settings
from strongroom_local.authorization_server import LocalAuthorizationServer
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import LambdaContext

REDIRECT_URI = "http://127.0.0.1:3000/dev/oauth/callback"
CALLBACK_ROUTE = "/oauth/callback"
AUTHORIZE_ROUTE = "/orgs/{org_id}/connections/{connection_id}/authorize"


@pytest.fixture
def auth_server() -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer() as server:
        yield server


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]
    cookies: list[str] = field(default_factory=list)


@dataclass
class OAuthWorld:
    """Orgs, connections and OAuth flows through the two functions' handlers."""

    credential_store: Any
    oauth_callback: Any
    server: LocalAuthorizationServer
    settings: Settings
    http: requests.Session
    # Every AWS client of both functions is made from it (when first used).
    aws: boto3.Session | None = None

    # ---- calls ------------------------------------------------------------------------------

    def _invoke(self, app: Any, event: dict[str, Any]) -> Reply:
        response = app.lambda_handler(event, LambdaContext())
        body = response.get("body")
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = body
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        return Reply(response["statusCode"], parsed, headers, list(response.get("cookies") or []))

    def call(
        self,
        method: str,
        path: str,
        *,
        sub: str,
        body: Any = None,
        route: str | None = None,
        path_parameters: dict[str, str] | None = None,
    ) -> Reply:
        event = http_event(
            method, path, sub=sub, body=body, route=route, path_parameters=path_parameters
        )
        return self._invoke(self.credential_store, event)

    def new_org(self, owner: str = "alice") -> str:
        reply = self.call("POST", "/orgs", sub=owner, body={"name": "Acme"})
        assert reply.status == 201, reply.body
        org = str(reply.body["org_id"])
        for user, role in (("bob", "admin"), ("carol", "member")):
            reply = self.call(
                "PUT",
                f"/orgs/{org}/members/{user}",
                sub=owner,
                route="/orgs/{org_id}/members/{user_id}",
                path_parameters={"org_id": org, "user_id": user},
                body={"role": role},
            )
            assert reply.status == 200, reply.body
        return org

    def new_code_connection(
        self,
        org: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        scopes: tuple[str, ...] = ("api.read",),
        register: bool = True,
        provider: str = "oauth2",
    ) -> tuple[str, str, str]:
        """An authorization_code connection at the double: (connection id, client id, client
        secret), the client registered with the server. `oauth2` names the double's endpoints;
        `okta` names its host:port as the domain (it serves Okta's paths, issuer its URL)."""
        client_id = client_id or "client-" + secrets.token_hex(4)
        secret = secret or "CANARYsecret" + secrets.token_hex(12)
        if register:
            self.server.register_client(
                client_id, redirect_uris=[self.settings.oauth_redirect_uri], secret=secret
            )
        endpoints: dict[str, str] = (
            {
                "authorization_endpoint": self.server.authorization_endpoint,
                "token_endpoint": self.server.token_endpoint,
                "revocation_endpoint": self.server.revocation_endpoint,
            }
            if provider == "oauth2"
            else {"domain": self.server.host_port}
        )
        body = {
            "name": "Example IdP",
            "provider": provider,
            **endpoints,
            "scopes": list(scopes),
            "auth": {
                "method": "authorization_code",
                "client_id": client_id,
                "client_secret": secret,
            },
            "schedule": "rate(1 day)",
        }
        reply = self.call(
            "POST",
            f"/orgs/{org}/connections",
            sub="bob",
            body=body,
            route="/orgs/{org_id}/connections",
            path_parameters={"org_id": org},
        )
        assert reply.status == 201, reply.body
        return str(reply.body["connection_id"]), client_id, secret

    def connection(self, org: str, connection_id: str, sub: str = "carol") -> Reply:
        return self.call(
            "GET",
            f"/orgs/{org}/connections/{connection_id}",
            sub=sub,
            route="/orgs/{org_id}/connections/{connection_id}",
            path_parameters={"org_id": org, "connection_id": connection_id},
        )

    def authorize(self, org: str, connection_id: str, sub: str = "bob") -> Reply:
        event = http_event(
            "POST",
            f"/orgs/{org}/connections/{connection_id}/authorize",
            sub=sub,
            route=AUTHORIZE_ROUTE,
            path_parameters={"org_id": org, "connection_id": connection_id},
        )
        return self._invoke(self.oauth_callback, event)

    def start(self, org: str, connection_id: str, sub: str = "bob") -> tuple[str, str]:
        """(authorization URL, browser-binding cookie `name=value`)."""
        reply = self.authorize(org, connection_id, sub)
        assert reply.status == 200, reply.body
        assert len(reply.cookies) == 1
        return str(reply.body["authorization_url"]), reply.cookies[0].split(";")[0]

    def browse(self, authorization_url: str) -> dict[str, str]:
        """Follow the authorization URL as the browser; the query the provider redirects with."""
        response = self.http.get(authorization_url, allow_redirects=False, timeout=10)
        assert response.status_code == 302, response.text
        location = response.headers["Location"]
        assert location.startswith(self.settings.oauth_redirect_uri + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def callback(self, query: dict[str, str], cookie: str | list[str] | None) -> Reply:
        """The provider's redirect arriving with `cookie` (a list: each one the browser sent)."""
        event = http_event("GET", CALLBACK_ROUTE, sub=None)
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        event["queryStringParameters"] = dict(query)
        if cookie is not None:
            event["cookies"] = cookie if isinstance(cookie, list) else [cookie]
        return self._invoke(self.oauth_callback, event)

    def result(self, reply: Reply) -> dict[str, str]:
        """The query of the callback's redirect to the return URL."""
        assert reply.status == 302, reply.body
        location = reply.headers["location"]
        assert location.startswith(self.settings.oauth_return_url + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}

    def connect(self, org: str, connection_id: str) -> dict[str, str]:
        url, cookie = self.start(org, connection_id)
        return self.result(self.callback(self.browse(url), cookie))


@pytest.fixture
def world(
    stack: Stack,
    auth_server: LocalAuthorizationServer,
    iam_check: IamCheck,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[OAuthWorld]:
    environment = stack.function_environment("OAuthCallbackFunction")
    environment["STRONGROOM_DEV_ALLOW_HOSTS"] = auth_server.host_port
    environment["STRONGROOM_OAUTH_REDIRECT_URI"] = REDIRECT_URI
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environ(os.environ)
    session = iam_check.session()
    credential_store = iam_check.guard(load_app("credential_store"), "credential_store")
    oauth_callback = iam_check.guard(load_app("oauth_callback"), "oauth_callback")
    from credential_store import services as cs_services
    from oauth_flow import services as oauth_services

    built_cs = cs_services.build_services(settings, session)
    built_oauth = oauth_services.build_services(settings, session)
    monkeypatch.setattr(credential_store, "services", lambda: built_cs)
    monkeypatch.setattr(oauth_callback, "services", lambda: built_oauth)
    http = requests.Session()
    http.trust_env = False
    try:
        yield OAuthWorld(credential_store, oauth_callback, auth_server, settings, http, session)
    finally:
        http.close()


def rebuild_tokens(world: OAuthWorld, **client_options: Any) -> None:
    """Give both functions a token client built with `client_options` (timeouts, resolver)."""
    from dataclasses import replace

    from strongroom.oauth import token_service

    for app in (world.credential_store, world.oauth_callback):
        built = app.services()
        tokens = token_service(
            world.settings,
            table=built.table,
            keyrings=built.keyrings,
            audit=built.audit,
            **client_options,
        )
        rebuilt = replace(built, tokens=tokens)
        app.services = lambda rebuilt=rebuilt: rebuilt
