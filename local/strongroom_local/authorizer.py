"""API Gateway's HTTP API JWT authorizer, emulated against the local dev issuer's JWKS.

What API Gateway checks (and so what this checks): an `Authorization: Bearer <JWT>` header; a
`kid` found in the JWKS; an allowed algorithm (RS256 only: `none`, HMAC and anything else are
refused before a key is used); the signature; `iss` equal to the configured issuer; `aud` (or,
without `aud`, `client_id`) among the configured audiences; `exp` present and in the future;
`nbf` and `iat`, when present, not in the future; and, on routes with authorization scopes, at
least one of them in the token's `scp` or `scope`. Every refusal raises the same opaque
`Unauthorized`: the caller learns nothing about which check failed. Nothing else is checked:
`sub` and `jti` pass whatever their type (`{"sub": 123}` reaches the function as "123").

Verified claims reach the function the way API Gateway passes them: every value a string
(numbers in decimal, booleans `true`/`false`, arrays `[a b]`, objects `map[k:v]`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from strongroom_local.exceptions import InsufficientScope, Unauthorized

ALLOWED_ALGORITHMS = ("RS256",)
# API Gateway refuses request headers above 10 KB; a token longer than that is not a token.
_MAX_TOKEN_LENGTH = 10 * 1024


def format_claim(value: Any) -> str:
    """A claim value as API Gateway renders it in `requestContext.authorizer.jwt.claims`."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        integral = math.isfinite(value) and value.is_integer() and abs(value) < 1e21
        text = str(int(value)) if integral else repr(value)
    elif isinstance(value, list):
        text = "[" + " ".join(format_claim(item) for item in value) + "]"
    elif isinstance(value, dict):
        text = "map[" + " ".join(f"{k}:{format_claim(value[k])}" for k in sorted(value)) + "]"
    else:
        text = "<nil>"
    return text


def _is_number(value: Any) -> bool:
    # A NumericDate is finite: json reads NaN and Infinity, and NaN compares false both ways.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def token_scopes(claims: Mapping[str, Any]) -> list[str]:
    """The token's scopes: `scp` (list or space-separated) first, else `scope`."""
    for name in ("scp", "scope"):
        value = claims.get(name)
        if isinstance(value, str):
            return value.split()
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return list(value)
    return []


@dataclass(frozen=True)
class JwtContext:
    """`requestContext.authorizer` for a verified request."""

    claims: dict[str, str]
    scopes: list[str] | None

    def as_event_value(self) -> dict[str, Any]:
        return {"jwt": {"claims": dict(self.claims), "scopes": self.scopes}}


class JwtAuthorizer:
    """Verifies bearer tokens for one HTTP API authorizer configuration."""

    def __init__(
        self,
        jwks: Mapping[str, Any],
        *,
        issuer: str,
        audiences: Sequence[str],
        clock: Callable[[], float],
        identity_header: str = "authorization",
    ) -> None:
        self._keys = jwt.PyJWKSet.from_dict(dict(jwks))
        self._issuer = issuer
        self._audiences = frozenset(audiences)
        self._clock = clock
        self.identity_header = identity_header.lower()

    def authorize(
        self, header_value: str | None, *, required_scopes: Sequence[str] = ()
    ) -> JwtContext:
        """The authorizer context for a valid token; Unauthorized (opaque) otherwise."""
        claims = self._verified_claims(header_value)
        scopes: list[str] | None = None
        if required_scopes:
            scopes = token_scopes(claims)
            if not set(scopes) & set(required_scopes):
                raise InsufficientScope()
        return JwtContext({name: format_claim(value) for name, value in claims.items()}, scopes)

    def _verified_claims(self, header_value: str | None) -> dict[str, Any]:
        if not header_value:
            raise Unauthorized()
        value = header_value.strip()
        scheme, space, rest = value.partition(" ")
        # API Gateway takes the token alone or after "Bearer " (any other scheme is refused).
        token = rest.strip() if space else value
        if (space and scheme.lower() != "bearer") or not token or len(token) > _MAX_TOKEN_LENGTH:
            raise Unauthorized()
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALLOWED_ALGORITHMS:
                raise Unauthorized()
            kid = header.get("kid")
            if not isinstance(kid, str):
                raise Unauthorized()
            key = self._keys[kid]
            # Signature and algorithm by PyJWT; the time checks below use the injected clock.
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=list(ALLOWED_ALGORITHMS),
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                    # PyJWT refuses a sub or jti that is not a string; API Gateway does not.
                    "verify_sub": False,
                    "verify_jti": False,
                    "require": [],
                },
            )
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise Unauthorized() from None
        if not (
            self._issuer_matches(claims)
            and self._audience_matches(claims)
            and self._times_valid(claims)
        ):
            raise Unauthorized()
        return claims

    def _issuer_matches(self, claims: Mapping[str, Any]) -> bool:
        return claims.get("iss") == self._issuer

    def _audience_matches(self, claims: Mapping[str, Any]) -> bool:
        if "aud" in claims:
            aud = claims["aud"]
            values = [aud] if isinstance(aud, str) else aud
            if not isinstance(values, list):
                return False
            return any(isinstance(value, str) and value in self._audiences for value in values)
        client_id = claims.get("client_id")
        return isinstance(client_id, str) and client_id in self._audiences

    def _times_valid(self, claims: Mapping[str, Any]) -> bool:
        now = self._clock()
        exp = claims.get("exp")
        if exp is None or not _is_number(exp) or now >= exp:
            return False
        for name in ("nbf", "iat"):
            if name in claims:
                value = claims[name]
                if not _is_number(value) or value > now:
                    return False
        return True
