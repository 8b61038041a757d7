"""Registered clients and their verification keys (the public JWK Set of `private_key_jwt`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

AUTH_METHODS = frozenset({"client_secret_basic", "client_secret_post", "private_key_jwt", "none"})


@dataclass(frozen=True)
class VerificationKey:
    """One signing key of a client; `algorithm` is the JWK's `alg` when it declares one."""

    key: Any
    algorithm: str | None


@dataclass(frozen=True)
class RegisteredClient:
    """A client as registered."""

    client_id: str
    redirect_uris: tuple[str, ...]
    secret: str | None = field(repr=False)
    keys: Mapping[str, VerificationKey]
    auth_methods: frozenset[str]
    scopes: frozenset[str] | None


def load_jwks(jwks: Mapping[str, Any]) -> dict[str, VerificationKey]:
    """The signing keys of a public JWK Set by `kid`; refuses private or unusable keys."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, Sequence) or isinstance(keys, str):
        raise ValueError("jwks must be a JWK Set: {'keys': [...]}")
    loaded: dict[str, VerificationKey] = {}
    for document in keys:
        if not isinstance(document, Mapping):
            raise ValueError("every JWK must be an object")
        kid = document.get("kid")
        if not isinstance(kid, str) or not kid:
            raise ValueError("every JWK must have a kid")
        if kid in loaded:
            raise ValueError("kids must be unique within the JWK Set")
        # A JWK Set is published: a private member ("d") means someone pasted a private key.
        if "d" in document or document.get("kty") not in {"RSA", "EC"}:
            raise ValueError("the JWK Set must hold RSA or EC public keys only")
        if document.get("use", "sig") != "sig":
            continue
        algorithm = document.get("alg")
        if algorithm is not None and not isinstance(algorithm, str):
            raise ValueError(f"JWK {kid!r} has a malformed alg")
        try:
            loaded[kid] = VerificationKey(jwt.PyJWK(dict(document)).key, algorithm)
        except jwt.PyJWTError as exc:
            raise ValueError(f"unusable JWK {kid!r}") from exc
    return loaded
