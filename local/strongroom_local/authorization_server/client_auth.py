"""Client authentication at /token and /revoke (RFC 6749 §2.3, RFC 7521, RFC 7523).

Exactly one method per request: HTTP Basic (`client_secret_basic`), the secret in the form
(`client_secret_post`), a signed JWT assertion (`private_key_jwt`), or, for a client
registered as public, `none`. Every refusal is the same `InvalidClient`; the reason goes into
`error_description` as fixed text (it helps a developer, and says nothing a caller could not
know already).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from strongroom_local.authorization_server.clients import RegisteredClient
from strongroom_local.authorization_server.exceptions import InvalidClient
from strongroom_local.authorization_server.ledger import Ledger

JWT_BEARER_ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_MAX_LIFETIME_SECONDS = 300
# How far ahead of our clock a client's `iat`/`nbf` may be (clocks drift; real servers allow it).
CLOCK_SKEW_SECONDS = 60
MIN_RSA_KEY_BITS = 2048
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_RSA_ALGORITHMS = frozenset({"RS256", "PS256"})
ASSERTION_ALGORITHMS = _RSA_ALGORITHMS | frozenset(_EC_CURVES)


@dataclass(frozen=True)
class SeenAssertion:
    """A `private_key_jwt` assertion as received (decoded, not trusted), and what became of it.

    `header` and `claims` are None when the assertion was not a decodable JWT; `refusal` is the
    reason it was refused, None when it authenticated the client.
    """

    endpoint: str
    header: Mapping[str, Any] | None
    claims: Mapping[str, Any] | None
    accepted: bool
    refusal: str | None = None
    raw: str = field(default="", repr=False)


@dataclass(frozen=True)
class ClientAuthenticator:
    """Authenticates the client of one request; `record` keeps every assertion it sees."""

    ledger: Ledger
    token_endpoint: str
    record: Callable[[SeenAssertion], None]

    def authenticate(
        self,
        parameters: Mapping[str, str],
        authorization: str | None,
        *,
        endpoint_url: str,
        now: float,
    ) -> tuple[RegisteredClient, str]:
        """The authenticated client and the method it used, or `InvalidClient`."""
        methods = []
        if authorization is not None:
            methods.append("client_secret_basic")
        if "client_secret" in parameters:
            methods.append("client_secret_post")
        if "client_assertion" in parameters or "client_assertion_type" in parameters:
            methods.append("private_key_jwt")
        if len(methods) > 1:
            raise InvalidClient("more than one client authentication method")
        method = methods[0] if methods else "none"
        if method == "client_secret_basic":
            client = self._basic(authorization or "", parameters.get("client_id"))
        elif method == "client_secret_post":
            client = self._post(parameters)
        elif method == "private_key_jwt":
            client = self._assertion(parameters, endpoint_url=endpoint_url, now=now)
        else:
            client = self._known(parameters.get("client_id"))
        if method not in client.auth_methods:
            raise InvalidClient("client authentication method not registered for this client")
        return client, method

    def _known(self, client_id: str | None) -> RegisteredClient:
        client = self.ledger.client(client_id) if client_id else None
        if client is None:
            raise InvalidClient("unknown client")
        return client

    def _check_secret(self, client: RegisteredClient, secret: str) -> None:
        if client.secret is None or not hmac.compare_digest(
            secret.encode(), client.secret.encode()
        ):
            raise InvalidClient("client authentication failed")

    def _basic(self, authorization: str, form_client_id: str | None) -> RegisteredClient:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise InvalidClient("the Authorization header is not HTTP Basic")
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidClient("malformed HTTP Basic credentials") from None
        encoded_id, colon, encoded_secret = decoded.partition(":")
        if not colon:
            raise InvalidClient("malformed HTTP Basic credentials")
        # RFC 6749 §2.3.1: both are form-urlencoded before they are joined and encoded.
        client_id = unquote_plus(encoded_id, errors="strict")
        secret = unquote_plus(encoded_secret, errors="strict")
        if form_client_id is not None and form_client_id != client_id:
            raise InvalidClient("client_id differs from the authenticated client")
        client = self._known(client_id)
        self._check_secret(client, secret)
        return client

    def _post(self, parameters: Mapping[str, str]) -> RegisteredClient:
        client = self._known(parameters.get("client_id"))
        self._check_secret(client, parameters["client_secret"])
        return client

    def _assertion(
        self, parameters: Mapping[str, str], *, endpoint_url: str, now: float
    ) -> RegisteredClient:
        assertion = parameters.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            self.record(SeenAssertion(endpoint_url, None, None, False, "not a JWT", assertion))
            raise InvalidClient("client_assertion is not a JWT") from None
        try:
            client = self._verify_assertion(
                parameters, assertion, header, claims, endpoint_url=endpoint_url, now=now
            )
        except InvalidClient as exc:
            self.record(SeenAssertion(endpoint_url, header, claims, False, str(exc), assertion))
            raise
        self.record(SeenAssertion(endpoint_url, header, claims, True, None, assertion))
        return client

    def _verify_assertion(
        self,
        parameters: Mapping[str, str],
        assertion: str,
        header: Mapping[str, Any],
        claims: Mapping[str, Any],
        *,
        endpoint_url: str,
        now: float,
    ) -> RegisteredClient:
        if parameters.get("client_assertion_type") != JWT_BEARER_ASSERTION:
            raise InvalidClient("client_assertion_type must be the JWT bearer URN")
        issuer = claims.get("iss")
        if not isinstance(issuer, str) or claims.get("sub") != issuer:
            raise InvalidClient("iss and sub must both be the client_id")
        client_id = parameters.get("client_id")
        if client_id is not None and client_id != issuer:
            raise InvalidClient("client_id differs from the assertion's iss")
        client = self._known(issuer)
        if "private_key_jwt" not in client.auth_methods:
            raise InvalidClient("client authentication method not registered for this client")
        self._verify_signature(client, assertion, header)
        # RFC 7523 §3: the token endpoint URL identifies this server; at /revoke its own URL
        # is accepted too (some servers ask for the URL the assertion is sent to).
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        if not isinstance(audiences, list) or not (
            {self.token_endpoint, endpoint_url} & {a for a in audiences if isinstance(a, str)}
        ):
            raise InvalidClient("aud must contain the token endpoint URL")
        expires_at = _number(claims.get("exp"))
        if expires_at is None:
            raise InvalidClient("exp is required")
        if expires_at <= now:
            raise InvalidClient("the assertion has expired")
        issued_at = _number(claims.get("iat"))
        if "iat" in claims and (issued_at is None or issued_at > now + CLOCK_SKEW_SECONDS):
            raise InvalidClient("iat is malformed or in the future")
        not_before = _number(claims.get("nbf"))
        if "nbf" in claims and (not_before is None or not_before > now + CLOCK_SKEW_SECONDS):
            raise InvalidClient("the assertion is not valid yet")
        if expires_at - (issued_at if issued_at is not None else now) > (
            ASSERTION_MAX_LIFETIME_SECONDS
        ):
            raise InvalidClient("the assertion lives longer than 5 minutes")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise InvalidClient("jti is required")
        if not self.ledger.spend_jti(client.client_id, jti, expires_at=expires_at, now=now):
            raise InvalidClient("jti already used")
        return client

    def _verify_signature(
        self, client: RegisteredClient, assertion: str, header: Mapping[str, Any]
    ) -> None:
        algorithm = header.get("alg")
        if algorithm not in ASSERTION_ALGORITHMS:
            raise InvalidClient("unsupported assertion algorithm")
        kid = header.get("kid")
        registered = client.keys.get(kid) if isinstance(kid, str) else None
        if registered is None:
            raise InvalidClient("no registered key has the assertion's kid")
        if registered.algorithm is not None and registered.algorithm != algorithm:
            raise InvalidClient("the key's alg differs from the assertion's")
        key = registered.key
        if algorithm in _RSA_ALGORITHMS:
            suitable = isinstance(key, rsa.RSAPublicKey) and key.key_size >= MIN_RSA_KEY_BITS
        else:
            suitable = isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
                key.curve, _EC_CURVES[algorithm]
            )
        if not suitable:
            raise InvalidClient("the key does not fit the assertion's algorithm")
        try:
            jwt.decode(
                assertion,
                key=key,
                algorithms=[algorithm],
                # Claims are checked above against the injected clock, not PyJWT's.
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.PyJWTError:
            raise InvalidClient("the assertion's signature does not verify") from None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
