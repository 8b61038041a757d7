"""How the client authenticates at a token or revocation endpoint (RFC 6749 §2.3, RFC 7523).

`client_secret_basic` is the method every server must support (RFC 6749 §2.3.1); the id and the
secret are form-encoded before they are joined and base64-encoded, as that section requires.
`private_key_jwt` signs a short-lived assertion: `iss` = `sub` = the client id, `aud` = the token
endpoint, a unique `jti`, `exp` two minutes ahead (RFC 7523 wants it short; five minutes at
most), and the key's id in the `kid` header so the provider picks the right key while keys
rotate.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote_plus

from strongroom.oauth.exceptions import InvalidClientKey

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_SECONDS: Final = 120
_ALGORITHMS: Final = frozenset({"RS256", "ES256", "ES384", "ES512"})


@dataclass(frozen=True, slots=True, repr=False)
class ClientAuthentication:
    """Headers and form fields that authenticate the client. The repr shows neither."""

    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "ClientAuthentication([REDACTED])"


def client_secret_basic(client_id: str, client_secret: str) -> ClientAuthentication:
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
    return ClientAuthentication(
        headers={"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    )


def client_secret_post(client_id: str, client_secret: str) -> ClientAuthentication:
    return ClientAuthentication(form={"client_id": client_id, "client_secret": client_secret})


def client_assertion(
    *,
    client_id: str,
    audience: str,
    private_key_pem: bytes,
    algorithm: str,
    key_id: str | None,
    now: float,
) -> str:
    """A signed RFC 7523 client assertion; InvalidClientKey if the key cannot sign it."""
    if algorithm not in _ALGORITHMS:
        raise InvalidClientKey("unsupported signing algorithm")
    issued_at = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    headers = {"kid": key_id} if key_id else None
    # Imported here: only private_key_jwt connections sign, so cold starts do not load PyJWT
    # nor cryptography's key parsers.
    import jwt  # noqa: PLC0415
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    try:
        key = load_pem_private_key(private_key_pem, password=None)
        return jwt.encode(claims, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]
    except (ValueError, TypeError, jwt.PyJWTError):
        raise InvalidClientKey("the stored private key cannot sign") from None


def private_key_jwt(
    *,
    client_id: str,
    audience: str,
    private_key_pem: bytes,
    algorithm: str,
    key_id: str | None,
    now: float,
) -> ClientAuthentication:
    assertion = client_assertion(
        client_id=client_id,
        audience=audience,
        private_key_pem=private_key_pem,
        algorithm=algorithm,
        key_id=key_id,
        now=now,
    )
    return ClientAuthentication(
        form={
            "client_id": client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    )
