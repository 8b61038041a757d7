"""The local OAuth 2.0 authorization server, driven over HTTP as a client would drive it."""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from strongroom_local.authorization_server import (
    OVERSIZED_BODY_BYTES,
    LocalAuthorizationServer,
)
from tests.local.conftest import wait_for

# In the past on purpose: a server that read the real clock instead of this one would refuse
# every assertion signed here as expired.
START = 1_600_000_000.0
CLIENT = "app-client"
REDIRECT = "http://127.0.0.1:9/oauth/callback?tenant=acme"
OTHER_REDIRECT = "http://127.0.0.1:9/oauth/other"
SCOPES = ("okta.users.read", "okta.groups.read", "offline_access")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DROP = object()


class FakeClock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class SigningKey:
    private: Any
    jwk: dict[str, Any]
    algorithm: str


def _public_jwk(private: Any, kid: str, algorithm: str) -> dict[str, Any]:
    converter = RSAAlgorithm if isinstance(private, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = converter.to_jwk(private.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    """Two RSA keys made at test time (generating them is the slow part: once per module)."""
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def signing_keys(rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]) -> dict[str, SigningKey]:
    """A key per assertion algorithm the server accepts, each with its own kid."""
    privates: dict[str, Any] = {
        "RS256": rsa_keys[0],
        "PS256": rsa_keys[0],
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "ES384": ec.generate_private_key(ec.SECP384R1()),
        "ES512": ec.generate_private_key(ec.SECP521R1()),
    }
    return {
        algorithm: SigningKey(
            private, _public_jwk(private, f"kid-{algorithm}", algorithm), algorithm
        )
        for algorithm, private in privates.items()
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def secret() -> str:
    # Characters that change under form-urlencoding, as RFC 6749 §2.3.1 requires for Basic.
    return secrets.token_urlsafe(16) + "+/:% é="


@pytest.fixture
def server(
    clock: FakeClock, secret: str, signing_keys: dict[str, SigningKey]
) -> Iterator[LocalAuthorizationServer]:
    with LocalAuthorizationServer(clock=clock, access_token_ttl=600) as running:
        running.register_client(
            CLIENT,
            redirect_uris=[REDIRECT, OTHER_REDIRECT],
            secret=secret,
            jwks={"keys": [key.jwk for key in signing_keys.values()]},
            scopes=SCOPES,
        )
        yield running


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # never a proxy: everything is on loopback
    yield session
    session.close()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    """RFC 6749 §2.3.1: id and secret form-urlencoded, joined by a colon, then base64."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


def query_of(response: requests.Response) -> dict[str, list[str]]:
    return parse_qs(urlsplit(response.headers["Location"]).query, keep_blank_values=True)


def authorize(
    http: requests.Session,
    server: LocalAuthorizationServer,
    challenge: str,
    *,
    state: str = "state-1",
    **overrides: Any,
) -> requests.Response:
    params: dict[str, Any] = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "okta.users.read offline_access",
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not DROP}
    return http.get(server.authorization_endpoint, params=params, allow_redirects=False, timeout=10)


def new_code(http: requests.Session, server: LocalAuthorizationServer) -> tuple[str, str]:
    """A fresh authorization code and its verifier."""
    verifier, challenge = pkce_pair()
    response = authorize(http, server, challenge)
    assert response.status_code == 302
    return query_of(response)["code"][0], verifier


def token(
    http: requests.Session,
    server: LocalAuthorizationServer,
    data: dict[str, str],
    *,
    headers: dict[str, str] | None = None,
    url: str | None = None,
) -> requests.Response:
    return http.post(url or server.token_endpoint, data=data, headers=headers, timeout=10)


def exchange(
    http: requests.Session,
    server: LocalAuthorizationServer,
    secret: str,
    code: str,
    verifier: str,
    **overrides: str,
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **overrides,
    }
    return token(http, server, data, headers=basic(CLIENT, secret))


def refresh(
    http: requests.Session, server: LocalAuthorizationServer, secret: str, refresh_token: str
) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return token(http, server, data, headers=basic(CLIENT, secret))


def tokens(http: requests.Session, server: LocalAuthorizationServer, secret: str) -> dict[str, Any]:
    code, verifier = new_code(http, server)
    response = exchange(http, server, secret, code, verifier)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def assertion(
    key: SigningKey, *, now: float, aud: Any, kid: str | None = None, **claims: Any
) -> str:
    payload: dict[str, Any] = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": aud,
        "iat": int(now),
        "exp": int(now) + 60,
        "jti": secrets.token_urlsafe(16),
    }
    payload.update(claims)
    payload = {name: value for name, value in payload.items() if value is not DROP}
    headers = {"kid": kid or key.jwk["kid"]}
    return jwt.encode(payload, key.private, algorithm=key.algorithm, headers=headers)


def jwt_auth(client_assertion: str) -> dict[str, str]:
    return {"client_assertion_type": JWT_BEARER, "client_assertion": client_assertion}


# The authorization code flow


def test_pkce_flow_redirects_with_code_and_state_and_issues_tokens(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    verifier, challenge = pkce_pair()
    state = "s t&a=t/e+é%"

    response = authorize(http, server, challenge, state=state)

    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(REDIRECT + "&code=")
    query = query_of(response)
    assert query["tenant"] == ["acme"]
    assert query["state"] == [state]
    code = query["code"][0]
    assert len(base64.urlsafe_b64decode(code + "==")) >= 16  # 128 bits or more

    exchanged = exchange(http, server, secret, code, verifier)

    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.headers["Cache-Control"] == "no-store"
    assert exchanged.headers["Content-Type"].startswith("application/json")
    document = exchanged.json()
    assert document["token_type"] == "Bearer"
    assert document["expires_in"] == 600
    assert document["scope"] == "okta.users.read offline_access"
    assert server.is_active(document["access_token"])
    assert server.is_active(document["refresh_token"])
    assert server.current_refresh_tokens(CLIENT) == [document["refresh_token"]]
    counts = server.counts()
    assert counts["authorize"] == 1
    assert counts["codes_issued"] == 1
    assert counts["grant_authorization_code"] == 1
    assert counts["token_requests"] == 1


def test_redirect_uri_without_query_gets_one(
    server: LocalAuthorizationServer, http: requests.Session
) -> None:
    _, challenge = pkce_pair()
    response = authorize(http, server, challenge, redirect_uri=OTHER_REDIRECT)
    assert response.headers["Location"].startswith(OTHER_REDIRECT + "?code=")


def test_scope_defaults_to_the_clients_registered_scopes(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    verifier, challenge = pkce_pair()
    response = authorize(http, server, challenge, scope=DROP)
    code = query_of(response)["code"][0]
    document = exchange(http, server, secret, code, verifier).json()
    assert sorted(document["scope"].split(" ")) == sorted(SCOPES)


@pytest.mark.parametrize(
    "redirect_uri",
    [
        REDIRECT + "&extra=1",
        REDIRECT.replace("?tenant=acme", "/?tenant=acme"),
        REDIRECT.replace("127.0.0.1", "localhost"),
        REDIRECT.replace("http:", "HTTP:"),
        REDIRECT.replace("callback", "Callback"),
        REDIRECT.replace(":9/", ":9/oauth/../"),
        REDIRECT.replace("?tenant=acme", ""),
        OTHER_REDIRECT + "/evil",
        OTHER_REDIRECT + "%2F",
        "http://attacker.example/oauth/callback",
        DROP,
    ],
)
def test_a_redirect_uri_not_registered_exactly_is_an_error_page_not_a_redirect(
    server: LocalAuthorizationServer, http: requests.Session, redirect_uri: Any
) -> None:
    _, challenge = pkce_pair()
    response = authorize(http, server, challenge, redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert server.counts()["codes_issued"] == 0


@pytest.mark.parametrize("client_id", ["someone-else", DROP])
def test_an_unknown_client_is_an_error_page(
    server: LocalAuthorizationServer, http: requests.Session, client_id: Any
) -> None:
    _, challenge = pkce_pair()
    response = authorize(http, server, challenge, client_id=client_id)
    assert response.status_code == 400
    assert "Location" not in response.headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": DROP, "code_challenge_method": DROP}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": DROP}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": DROP}, "invalid_request"),
        ({"scope": "okta.users.read okta.users.manage"}, "invalid_scope"),
        ({"scope": ["okta.users.read", "offline_access"]}, "invalid_request"),  # repeated
    ],
)
def test_an_invalid_authorization_request_redirects_back_with_the_error_and_state(
    server: LocalAuthorizationServer,
    http: requests.Session,
    overrides: dict[str, Any],
    error: str,
) -> None:
    _, challenge = pkce_pair()
    response = authorize(http, server, challenge, state="keep-me", **overrides)
    assert response.status_code == 302
    query = query_of(response)
    assert query["error"] == [error]
    assert query["state"] == ["keep-me"]
    assert "code" not in query
    assert server.counts()["codes_issued"] == 0


def test_deny_next_authorization_redirects_with_access_denied_once(
    server: LocalAuthorizationServer, http: requests.Session
) -> None:
    server.deny_next_authorization()
    _, challenge = pkce_pair()

    denied = authorize(http, server, challenge, state="s1")
    allowed = authorize(http, server, challenge, state="s2")

    assert query_of(denied) == {
        "tenant": ["acme"],
        "error": ["access_denied"],
        "state": ["s1"],
        "iss": [server.url],
    }
    assert "code" in query_of(allowed)


def test_a_code_is_single_use_and_its_reuse_revokes_what_it_gave(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    code, verifier = new_code(http, server)
    first = exchange(http, server, secret, code, verifier).json()

    second = exchange(http, server, secret, code, verifier)

    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert second.headers["Cache-Control"] == "no-store"
    assert not server.is_active(first["access_token"])
    assert not server.is_active(first["refresh_token"])
    assert server.counts()["code_reuse_detected"] == 1
    assert server.counts()["invalid_grant"] == 1


def test_a_code_expires_after_60_seconds(
    server: LocalAuthorizationServer, http: requests.Session, secret: str, clock: FakeClock
) -> None:
    fresh, fresh_verifier = new_code(http, server)
    stale, stale_verifier = new_code(http, server)
    clock.advance(59)
    assert exchange(http, server, secret, fresh, fresh_verifier).status_code == 200
    clock.advance(1)
    response = exchange(http, server, secret, stale, stale_verifier)
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("mismatch", ["verifier", "redirect_uri", "client"])
def test_a_code_is_bound_to_its_verifier_redirect_uri_and_client(
    server: LocalAuthorizationServer, http: requests.Session, secret: str, mismatch: str
) -> None:
    server.register_client("other", redirect_uris=[REDIRECT], secret=secret)
    code, verifier = new_code(http, server)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    headers = basic(CLIENT, secret)
    if mismatch == "verifier":
        data["code_verifier"] = pkce_pair()[0]
    elif mismatch == "redirect_uri":
        data["redirect_uri"] = OTHER_REDIRECT
    else:
        headers = basic("other", secret)

    response = token(http, server, data, headers=headers)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    # Spent by the failed attempt: the right request cannot use it any more.
    assert exchange(http, server, secret, code, verifier).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            {"grant_type": "authorization_code", "code": "x", "redirect_uri": REDIRECT},
            "invalid_request",
        ),
        ({"code": "x"}, "invalid_request"),
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        (
            {
                "grant_type": "authorization_code",
                "code": "x",
                "redirect_uri": REDIRECT,
                "code_verifier": "short",
            },
            "invalid_request",
        ),
    ],
)
def test_token_requests_missing_or_malformed_parameters(
    server: LocalAuthorizationServer,
    http: requests.Session,
    secret: str,
    data: dict[str, str],
    error: str,
) -> None:
    response = token(http, server, data, headers=basic(CLIENT, secret))
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_token_requests_must_be_form_encoded_in_the_body(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    data = {"grant_type": "client_credentials"}
    as_json = http.post(server.token_endpoint, json=data, headers=basic(CLIENT, secret), timeout=10)
    in_query = http.post(
        server.token_endpoint,
        params=data,
        data={"scope": "okta.users.read"},
        headers=basic(CLIENT, secret),
        timeout=10,
    )
    get = http.get(server.token_endpoint, params=data, timeout=10)
    assert as_json.status_code == 400
    assert as_json.json()["error"] == "invalid_request"
    assert in_query.status_code == 400
    assert in_query.json()["error"] == "invalid_request"
    assert get.status_code == 405


# Client authentication


def test_client_secret_basic_needs_the_form_urlencoded_credentials(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    data = {"grant_type": "client_credentials"}
    encoded = token(http, server, data, headers=basic(CLIENT, secret))
    raw = http.post(server.token_endpoint, data=data, auth=(CLIENT, secret), timeout=10)

    assert encoded.status_code == 200, encoded.text
    assert raw.status_code == 401
    assert raw.json()["error"] == "invalid_client"
    assert raw.headers["WWW-Authenticate"].startswith("Basic ")
    assert server.counts()["client_auth_failures"] == 1


def test_client_secret_post(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    data = {"grant_type": "client_credentials", "client_id": CLIENT, "client_secret": secret}
    response = token(http, server, data)
    assert response.status_code == 200, response.text
    document = response.json()
    assert "refresh_token" not in document
    assert server.is_active(document["access_token"])
    assert server.counts()["grant_client_credentials"] == 1


@pytest.mark.parametrize(
    "case",
    [
        "wrong_secret_basic",
        "wrong_secret_post",
        "unknown_client",
        "basic_and_post",
        "basic_and_assertion",
        "no_credentials",
        "bearer_header",
        "basic_not_base64",
        "basic_client_id_differs_from_form",
        "method_not_registered",
    ],
)
def test_client_authentication_failures_are_invalid_client(
    server: LocalAuthorizationServer,
    http: requests.Session,
    secret: str,
    signing_keys: dict[str, SigningKey],
    case: str,
) -> None:
    server.register_client(
        "jwt-only", redirect_uris=[REDIRECT], secret=secret, auth_methods=["private_key_jwt"]
    )
    data: dict[str, str] = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    if case == "wrong_secret_basic":
        headers = basic(CLIENT, secret + "x")
    elif case == "wrong_secret_post":
        data |= {"client_id": CLIENT, "client_secret": secret[:-1]}
    elif case == "unknown_client":
        headers = basic("nobody", secret)
    elif case == "basic_and_post":
        headers = basic(CLIENT, secret)
        data |= {"client_id": CLIENT, "client_secret": secret}
    elif case == "basic_and_assertion":
        headers = basic(CLIENT, secret)
        signed = assertion(signing_keys["RS256"], now=START, aud=server.token_endpoint)
        data |= jwt_auth(signed)
    elif case == "no_credentials":
        data |= {"client_id": CLIENT}
    elif case == "bearer_header":
        headers = {"Authorization": "Bearer " + secret}
    elif case == "basic_not_base64":
        headers = {"Authorization": "Basic not*base64"}
    elif case == "basic_client_id_differs_from_form":
        headers = basic(CLIENT, secret)
        data |= {"client_id": "jwt-only"}
    else:
        data |= {"client_id": "jwt-only", "client_secret": secret}

    response = token(http, server, data, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["Cache-Control"] == "no-store"
    assert ("WWW-Authenticate" in response.headers) == ("Authorization" in headers)
    assert server.counts()["client_auth_failures"] == 1
    assert server.counts()["tokens_issued"] == 0


def test_a_public_client_authenticates_with_its_id_only_and_cannot_use_client_credentials(
    server: LocalAuthorizationServer, http: requests.Session
) -> None:
    server.register_client("public", redirect_uris=[REDIRECT], auth_methods=["none"])
    verifier, challenge = pkce_pair()
    code = query_of(authorize(http, server, challenge, client_id="public", scope=DROP))["code"][0]
    data = {
        "grant_type": "authorization_code",
        "client_id": "public",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    assert token(http, server, data).status_code == 200
    denied = token(http, server, {"grant_type": "client_credentials", "client_id": "public"})
    assert denied.json()["error"] == "unauthorized_client"


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "ES384", "ES512"])
def test_private_key_jwt_is_verified_by_kid_and_recorded(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    clock: FakeClock,
    algorithm: str,
) -> None:
    key = signing_keys[algorithm]
    signed = assertion(key, now=clock(), aud=server.token_endpoint)
    data = {"grant_type": "client_credentials", "scope": "okta.users.read", **jwt_auth(signed)}

    response = token(http, server, data)

    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "okta.users.read"
    (seen,) = server.assertions_seen
    assert seen.accepted
    assert seen.header is not None
    assert seen.header["kid"] == key.jwk["kid"]
    assert seen.header["alg"] == algorithm
    assert seen.claims is not None
    assert seen.claims["exp"] == int(clock()) + 60
    assert seen.endpoint == server.token_endpoint


def test_private_key_jwt_accepts_an_audience_list_and_lifetime_from_now_without_iat(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    clock: FakeClock,
) -> None:
    key = signing_keys["ES256"]
    signed = assertion(
        key, now=clock(), aud=[server.url, server.token_endpoint], iat=DROP, exp=clock() + 300
    )
    response = token(http, server, {"grant_type": "client_credentials", **jwt_auth(signed)})
    assert response.status_code == 200, response.text


def assert_refused(response: requests.Response, server: LocalAuthorizationServer) -> None:
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" not in response.headers
    assert not server.assertions_seen[-1].accepted
    assert server.counts()["tokens_issued"] == 0


@pytest.mark.parametrize(
    "claims",
    [
        {"jti": DROP},
        {"jti": ""},
        {"aud": "{token_endpoint}/"},
        {"aud": "{issuer}"},
        {"aud": DROP},
        {"exp": DROP},
        {"exp": 0},
        {"exp": 301},
        {"exp": "60"},
        {"iat": 120, "exp": 180},
        {"nbf": 120},
        {"sub": "someone"},
        {"sub": DROP},
        {"iss": "nobody", "sub": "nobody"},
    ],
    ids=lambda claims: ",".join(f"{k}={'absent' if v is DROP else v!r}" for k, v in claims.items()),
)
def test_private_key_jwt_claims_are_enforced(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    claims: dict[str, Any],
) -> None:
    """Times are offsets from the server's clock; `{...}` names one of the server's URLs."""

    def resolve(name: str, value: Any) -> Any:
        if name in {"exp", "iat", "nbf"} and isinstance(value, int):
            return int(START) + value
        if isinstance(value, str):
            return value.format(token_endpoint=server.token_endpoint, issuer=server.url)
        return value

    resolved = {"aud": server.token_endpoint}
    resolved |= {name: resolve(name, value) for name, value in claims.items()}
    signed = assertion(signing_keys["RS256"], now=START, **resolved)

    response = token(http, server, {"grant_type": "client_credentials", **jwt_auth(signed)})

    assert_refused(response, server)


@pytest.mark.parametrize(
    "signing",
    ["unknown_kid", "missing_kid", "another_key", "hs256_with_the_secret", "alg_none", "garbage"],
)
def test_private_key_jwt_signatures_are_enforced(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    rsa_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    signing: str,
) -> None:
    key = signing_keys["RS256"]
    aud = server.token_endpoint
    # Every variant claims the registered kid (except where the kid is the point) and a key
    # or algorithm that does not belong to it.
    variants = {
        "unknown_kid": lambda: assertion(key, now=START, aud=aud, kid="kid-retired"),
        "missing_kid": lambda: jwt.encode(
            {"iss": CLIENT, "sub": CLIENT, "aud": aud, "exp": int(START) + 60, "jti": "j"},
            key.private,
            algorithm="RS256",
        ),
        "another_key": lambda: assertion(
            SigningKey(rsa_keys[1], key.jwk, "RS256"), now=START, aud=aud
        ),
        "hs256_with_the_secret": lambda: assertion(
            SigningKey(secrets.token_bytes(32), key.jwk, "HS256"), now=START, aud=aud
        ),
        "alg_none": lambda: assertion(SigningKey(None, key.jwk, "none"), now=START, aud=aud),
        "garbage": lambda: "not-a-jwt",
    }
    signed = variants[signing]()

    response = token(http, server, {"grant_type": "client_credentials", **jwt_auth(signed)})

    assert_refused(response, server)


def test_private_key_jwt_jti_is_single_use(
    server: LocalAuthorizationServer, http: requests.Session, signing_keys: dict[str, SigningKey]
) -> None:
    signed = assertion(signing_keys["ES256"], now=START, aud=server.token_endpoint)
    data = {"grant_type": "client_credentials", **jwt_auth(signed)}
    assert token(http, server, data).status_code == 200
    replayed = token(http, server, data)
    assert replayed.status_code == 401
    assert replayed.json()["error"] == "invalid_client"


def test_private_key_jwt_expiry_follows_the_injected_clock(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    clock: FakeClock,
) -> None:
    signed = assertion(signing_keys["ES256"], now=START, aud=server.token_endpoint)
    clock.advance(60)
    response = token(http, server, {"grant_type": "client_credentials", **jwt_auth(signed)})
    assert_refused(response, server)


@pytest.mark.parametrize(
    "form", ["wrong_assertion_type", "client_id_of_another", "method_not_registered"]
)
def test_private_key_jwt_request_form_is_enforced(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    form: str,
) -> None:
    key = signing_keys["RS256"]
    data = {"grant_type": "client_credentials"}
    data |= jwt_auth(assertion(key, now=START, aud=server.token_endpoint))
    if form == "wrong_assertion_type":
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"
    elif form == "client_id_of_another":
        server.register_client("other", redirect_uris=[], jwks={"keys": [key.jwk]})
        data["client_id"] = "other"
    else:
        server.register_client(
            CLIENT, redirect_uris=[REDIRECT], jwks={"keys": [key.jwk]}, auth_methods=["none"]
        )

    response = token(http, server, data)

    assert_refused(response, server)


def test_a_rotated_out_kid_is_refused_after_re_registration(
    server: LocalAuthorizationServer,
    http: requests.Session,
    signing_keys: dict[str, SigningKey],
    clock: FakeClock,
) -> None:
    old, new = signing_keys["RS256"], signing_keys["ES256"]
    server.register_client(CLIENT, redirect_uris=[REDIRECT], jwks={"keys": [new.jwk]})
    data = {"grant_type": "client_credentials"}
    with_old = assertion(old, now=clock(), aud=server.token_endpoint)
    with_new = assertion(new, now=clock(), aud=server.token_endpoint)
    assert token(http, server, {**data, **jwt_auth(with_old)}).status_code == 401
    assert token(http, server, {**data, **jwt_auth(with_new)}).status_code == 200


# Refresh tokens


def test_refresh_rotates_and_reuse_of_an_old_token_revokes_the_whole_grant(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    first = tokens(http, server, secret)

    rotated = refresh(http, server, secret, first["refresh_token"])

    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == first["scope"]
    assert not server.is_active(first["refresh_token"])
    assert server.is_active(second["refresh_token"])
    assert server.current_refresh_tokens(CLIENT) == [second["refresh_token"]]

    reused = refresh(http, server, secret, first["refresh_token"])

    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    for value in (second["refresh_token"], second["access_token"], first["access_token"]):
        assert not server.is_active(value)
    assert server.current_refresh_tokens(CLIENT) == []
    assert refresh(http, server, secret, second["refresh_token"]).status_code == 400
    counts = server.counts()
    assert counts["refreshes_succeeded"] == 1
    assert counts["refresh_reuse_detected"] == 1
    assert counts["grant_refresh_token"] == 3
    assert counts["invalid_grant"] == 2


def test_refresh_may_narrow_the_scope_but_never_widen_it(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    first = tokens(http, server, secret)
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    wider = token(http, server, data | {"scope": "okta.groups.read"}, headers=basic(CLIENT, secret))
    narrower = token(
        http, server, data | {"scope": "okta.users.read"}, headers=basic(CLIENT, secret)
    )
    assert wider.json()["error"] == "invalid_scope"
    assert narrower.json()["scope"] == "okta.users.read"
    # The grant keeps its scope: the next refresh without `scope` gets all of it back.
    again = refresh(http, server, secret, narrower.json()["refresh_token"]).json()
    assert again["scope"] == first["scope"]


def test_a_refresh_token_of_another_client_is_invalid_grant_and_harms_nothing(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    server.register_client("other", redirect_uris=[], secret=secret)
    first = tokens(http, server, secret)
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    response = token(http, server, data, headers=basic("other", secret))
    assert response.json()["error"] == "invalid_grant"
    assert server.is_active(first["refresh_token"])


def test_invalidate_grants_ends_every_refresh_token_of_the_client(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    one, two = tokens(http, server, secret), tokens(http, server, secret)
    assert len(server.current_refresh_tokens(CLIENT)) == 2

    server.invalidate_grants(CLIENT)

    assert server.current_refresh_tokens(CLIENT) == []
    for document in (one, two):
        response = refresh(http, server, secret, document["refresh_token"])
        assert response.json()["error"] == "invalid_grant"


def test_access_tokens_expire_by_the_injected_clock(
    server: LocalAuthorizationServer, http: requests.Session, secret: str, clock: FakeClock
) -> None:
    document = tokens(http, server, secret)
    clock.advance(599)
    assert server.is_active(document["access_token"])
    clock.advance(1)
    assert not server.is_active(document["access_token"])
    assert server.is_active(document["refresh_token"])


def test_twenty_concurrent_refreshes_with_one_token_exactly_one_succeeds(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    refresh_token = tokens(http, server, secret)["refresh_token"]
    start = threading.Barrier(20)
    statuses: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        with requests.Session() as session:
            session.trust_env = False
            start.wait()
            response = refresh(session, server, secret, refresh_token)
        with lock:
            statuses.append(response.status_code)
            if response.status_code != 200:
                errors.append(response.json()["error"])

    threads = [threading.Thread(target=one) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [400] * 19
    assert errors == ["invalid_grant"] * 19
    assert server.counts()["refreshes_succeeded"] == 1
    # Every loser presented a rotated-away token: reuse detection ended the family.
    assert server.current_refresh_tokens(CLIENT) == []


def test_concurrent_exchanges_of_one_code_issue_tokens_once(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    code, verifier = new_code(http, server)
    start = threading.Barrier(8)
    statuses: list[int] = []

    def one() -> None:
        with requests.Session() as session:
            session.trust_env = False
            start.wait()
            statuses.append(exchange(session, server, secret, code, verifier).status_code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [400] * 7
    assert server.counts()["tokens_issued"] == 1


# Revocation


def revoke(
    http: requests.Session,
    server: LocalAuthorizationServer,
    data: dict[str, str],
    headers: dict[str, str] | None = None,
) -> requests.Response:
    return http.post(server.revocation_endpoint, data=data, headers=headers, timeout=10)


def test_revoking_a_refresh_token_revokes_its_access_tokens(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    document = tokens(http, server, secret)
    data = {"token": document["refresh_token"], "token_type_hint": "refresh_token"}

    response = revoke(http, server, data, basic(CLIENT, secret))

    assert response.status_code == 200
    assert not server.is_active(document["refresh_token"])
    assert not server.is_active(document["access_token"])
    assert refresh(http, server, secret, document["refresh_token"]).status_code == 400
    assert server.counts()["revocations"] == 1


def test_revoking_an_access_token_leaves_the_refresh_token(
    server: LocalAuthorizationServer,
    http: requests.Session,
    secret: str,
    signing_keys: dict[str, SigningKey],
    clock: FakeClock,
) -> None:
    document = tokens(http, server, secret)
    # The wrong hint does not matter; a private_key_jwt assertion may name /revoke as its aud.
    signed = assertion(signing_keys["ES256"], now=clock(), aud=server.revocation_endpoint)
    data = {"token": document["access_token"], "token_type_hint": "refresh_token"}
    response = revoke(http, server, data | jwt_auth(signed))
    assert response.status_code == 200
    assert not server.is_active(document["access_token"])
    assert server.is_active(document["refresh_token"])
    assert server.assertions_seen[-1].endpoint == server.revocation_endpoint


def test_revocation_answers_200_for_unknown_tokens_and_other_clients_tokens(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    server.register_client("other", redirect_uris=[], secret=secret)
    document = tokens(http, server, secret)
    unknown = revoke(http, server, {"token": "no-such-token"}, basic(CLIENT, secret))
    foreign = revoke(http, server, {"token": document["refresh_token"]}, basic("other", secret))
    assert unknown.status_code == 200
    assert foreign.status_code == 200
    assert server.is_active(document["refresh_token"])
    assert server.counts()["revocations"] == 2


def test_revocation_needs_client_authentication_and_a_token(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    document = tokens(http, server, secret)
    anonymous = revoke(http, server, {"token": document["refresh_token"]})
    wrong = revoke(http, server, {"token": document["refresh_token"]}, basic(CLIENT, "nope"))
    missing = revoke(http, server, {"token_type_hint": "access_token"}, basic(CLIENT, secret))
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Basic ")
    assert missing.json()["error"] == "invalid_request"
    assert server.is_active(document["refresh_token"])
    assert server.counts()["revocations"] == 0


# Fault injection


def test_status_500_and_html_faults_then_service_resumes_untouched(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    code, verifier = new_code(http, server)
    server.fail_next_token_requests(2, "status_500")
    server.fail_next_token_requests(1, "html")

    failures = [exchange(http, server, secret, code, verifier) for _ in range(3)]
    recovered = exchange(http, server, secret, code, verifier)

    assert [response.status_code for response in failures] == [500, 500, 200]
    assert failures[0].json()["error"] == "server_error"
    assert failures[2].headers["Content-Type"].startswith("text/html")
    with pytest.raises(requests.JSONDecodeError):
        failures[2].json()
    # The faults never reached the grant: the code was still unspent.
    assert recovered.status_code == 200, recovered.text
    counts = server.counts()
    assert counts["faults_injected"] == 3
    assert counts["token_requests"] == 4
    assert counts["grant_authorization_code"] == 4


def test_invalid_grant_fault_leaves_the_refresh_token_valid(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    document = tokens(http, server, secret)
    server.fail_next_token_requests(1, "invalid_grant")
    failed = refresh(http, server, secret, document["refresh_token"])
    assert failed.status_code == 400
    assert failed.json()["error"] == "invalid_grant"
    assert refresh(http, server, secret, document["refresh_token"]).status_code == 200
    assert server.counts()["invalid_grant"] == 1


def test_oversized_fault_streams_more_than_2_mib_without_a_content_length(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    server.fail_next_token_requests(1, "oversized")
    data = {"grant_type": "client_credentials"}
    received = 0
    with http.post(
        server.token_endpoint, data=data, headers=basic(CLIENT, secret), stream=True, timeout=10
    ) as response:
        assert response.status_code == 200
        assert "Content-Length" not in response.headers
        for chunk in response.iter_content(64 * 1024):
            received += len(chunk)
            if received > 2 * 1024 * 1024:
                break  # what a careful client does: stop reading at its cap
    assert received > 2 * 1024 * 1024
    assert OVERSIZED_BODY_BYTES > 2 * 1024 * 1024
    # The server is unharmed by the client hanging up mid-body.
    assert token(http, server, data, headers=basic(CLIENT, secret)).status_code == 200


def test_hang_fault_closes_without_an_answer(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    server.fail_next_token_requests(1, "hang", hang_seconds=0.2)
    data = {"grant_type": "client_credentials"}
    with pytest.raises(requests.ConnectionError):
        token(http, server, data, headers=basic(CLIENT, secret))
    assert token(http, server, data, headers=basic(CLIENT, secret)).status_code == 200


def test_a_hanging_request_blocks_neither_other_requests_nor_stop(
    clock: FakeClock, secret: str
) -> None:
    server = LocalAuthorizationServer(clock=clock).start()
    server.register_client(CLIENT, redirect_uris=[REDIRECT], secret=secret)
    server.fail_next_token_requests(1, "hang", hang_seconds=300)
    data = {"grant_type": "client_credentials"}
    outcome: list[BaseException] = []

    def hanging() -> None:
        with requests.Session() as session:
            session.trust_env = False
            try:
                # If stop() did not end the hang, this would fail with ReadTimeout instead.
                session.post(
                    server.token_endpoint, data=data, headers=basic(CLIENT, secret), timeout=60
                )
            except requests.RequestException as exc:
                outcome.append(exc)

    thread = threading.Thread(target=hanging)
    thread.start()
    try:
        wait_for(lambda: server.counts()["faults_injected"] == 1)
        with requests.Session() as session:
            session.trust_env = False
            other = session.post(
                server.token_endpoint, data=data, headers=basic(CLIENT, secret), timeout=10
            )
        assert other.status_code == 200
    finally:
        server.stop()
    thread.join()

    (error,) = outcome
    assert isinstance(error, requests.ConnectionError)
    assert not isinstance(error, requests.Timeout)
    server.stop()  # idempotent


def test_token_delay_keeps_the_client_waiting_after_the_rotation(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    old = tokens(http, server, secret)["refresh_token"]
    server.set_token_delay(1.0)
    result: list[requests.Response] = []

    def slow_refresh() -> None:
        with requests.Session() as session:
            session.trust_env = False
            result.append(refresh(session, server, secret, old))

    thread = threading.Thread(target=slow_refresh)
    thread.start()
    wait_for(lambda: not server.is_active(old))
    # The old token is dead while its successor is still on the way: the race window.
    assert thread.is_alive()
    thread.join()
    assert result[0].status_code == 200
    assert server.current_refresh_tokens(CLIENT) == [result[0].json()["refresh_token"]]


# Set-up and surface


def test_every_authorization_response_names_the_issuer(
    server: LocalAuthorizationServer, http: requests.Session
) -> None:
    # RFC 9207: on success and error alike, so a client can tell which server answered.
    _, challenge = pkce_pair()
    granted = authorize(http, server, challenge)
    refused = authorize(http, server, challenge, code_challenge_method="plain")
    server.deny_next_authorization()
    denied = authorize(http, server, challenge)
    for response in (granted, refused, denied):
        assert response.status_code == 302
        assert query_of(response)["iss"] == [server.url]
    metadata = http.get(server.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["authorization_response_iss_parameter_supported"] is True


def test_oktas_org_authorization_server_paths_are_served_too(
    server: LocalAuthorizationServer, http: requests.Session, secret: str
) -> None:
    # An `okta` connection whose domain is the server's host:port uses /oauth2/v1/...
    okta = server.url + "/oauth2/v1"
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT,
        "scope": "okta.users.read offline_access",
        "state": "s",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = http.get(okta + "/authorize", params=params, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert query_of(response)["iss"] == [server.url]
    code = query_of(response)["code"][0]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    exchanged = token(http, server, data, headers=basic(CLIENT, secret), url=okta + "/token")
    assert exchanged.status_code == 200, exchanged.text
    refresh_token = exchanged.json()["refresh_token"]
    revoked = http.post(
        okta + "/revoke", data={"token": refresh_token}, headers=basic(CLIENT, secret), timeout=10
    )
    assert revoked.status_code == 200
    assert not server.is_active(refresh_token)
    assert http.get(server.url + "/oauth2/v1/nowhere", timeout=10).status_code == 404


def test_addresses_and_metadata(server: LocalAuthorizationServer, http: requests.Session) -> None:
    assert server.url == f"http://{server.host_port}"
    assert server.host_port.startswith("127.0.0.1:")
    assert server.authorization_endpoint == server.url + "/authorize"
    metadata = http.get(server.url + "/.well-known/oauth-authorization-server", timeout=10).json()
    assert metadata["issuer"] == server.url
    assert metadata["token_endpoint"] == server.token_endpoint
    assert metadata["revocation_endpoint"] == server.revocation_endpoint
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert http.get(server.url + "/nowhere", timeout=10).status_code == 404
    assert http.post(server.authorization_endpoint, timeout=10).status_code == 405


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"redirect_uris": ["http://127.0.0.1:9/cb#frag"]}, "fragment"),
        ({"redirect_uris": ["/relative"]}, "absolute"),
        ({"redirect_uris": [REDIRECT], "auth_methods": ["client_secret_jwt"]}, "auth_methods"),
        ({"redirect_uris": [REDIRECT], "scopes": ["bad scope"]}, "scope"),
        ({"redirect_uris": [REDIRECT], "jwks": {"keys": [{"kty": "RSA", "n": "x"}]}}, "kid"),
    ],
)
def test_register_client_refuses_what_a_real_server_would(
    arguments: dict[str, Any], message: str
) -> None:
    server = LocalAuthorizationServer()
    with pytest.raises(ValueError, match=message):
        server.register_client(CLIENT, **arguments)


def test_register_client_refuses_a_private_jwk(
    signing_keys: dict[str, SigningKey],
) -> None:
    private_jwk = ECAlgorithm.to_jwk(signing_keys["ES256"].private, as_dict=True)
    with pytest.raises(ValueError, match="public keys only"):
        LocalAuthorizationServer().register_client(
            CLIENT, redirect_uris=[], jwks={"keys": [{**private_jwk, "kid": "k"}]}
        )


def test_fault_and_denial_arguments_are_checked() -> None:
    server = LocalAuthorizationServer()
    with pytest.raises(ValueError, match="kind"):
        server.fail_next_token_requests(1, "teapot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error"):
        server.deny_next_authorization('bad "error"')
    with pytest.raises(ValueError, match="seconds"):
        server.set_token_delay(-1)
