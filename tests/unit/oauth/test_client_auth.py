"""Client authentication: RFC 6749 §2.3.1 basic encoding and RFC 7523 assertions."""

from __future__ import annotations

import base64
from urllib.parse import unquote_plus

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from strongroom.oauth.client_auth import (
    ASSERTION_LIFETIME_SECONDS,
    ASSERTION_TYPE,
    client_assertion,
    client_secret_basic,
    client_secret_post,
    private_key_jwt,
)
from strongroom.oauth.exceptions import InvalidClientKey
from tests.support.keys import garbled_private_key_pem, pem_armour

NOW = 1_795_000_000
TOKEN_ENDPOINT = "https://acme.okta.com/oauth2/v1/token"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_basic_form_encodes_id_and_secret_before_base64() -> None:
    auth = client_secret_basic("client:one", "s3cr&t +/=")
    scheme, _, encoded = auth.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("client:one", "s3cr&t +/=")
    assert ":" not in user  # the colon in the id is encoded, so the split is unambiguous
    assert auth.form == {}
    assert "s3cr" not in repr(auth)


def test_post_puts_the_secret_in_the_form_only() -> None:
    auth = client_secret_post("cid", "secret-value")
    assert auth.form == {"client_id": "cid", "client_secret": "secret-value"}
    assert auth.headers == {}
    assert "secret-value" not in repr(auth)


@pytest.mark.parametrize(
    ("make_key", "algorithm"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
    ],
)
def test_assertion_verifies_with_the_public_key_and_has_rfc_7523_claims(
    make_key: object, algorithm: str
) -> None:
    key = make_key()  # type: ignore[operator]
    assertion = client_assertion(
        client_id="cid",
        audience=TOKEN_ENDPOINT,
        private_key_pem=_pem(key),
        algorithm=algorithm,
        key_id="key-2026",
        now=NOW,
    )
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == algorithm
    assert header["kid"] == "key-2026"
    claims = jwt.decode(
        assertion,
        key.public_key(),
        algorithms=[algorithm],
        audience=TOKEN_ENDPOINT,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "cid"
    assert claims["aud"] == TOKEN_ENDPOINT
    assert claims["iat"] == NOW
    assert 0 < claims["exp"] - NOW == ASSERTION_LIFETIME_SECONDS <= 300
    assert len(claims["jti"]) >= 22


def test_every_assertion_has_a_fresh_jti() -> None:
    pem = _pem(ec.generate_private_key(ec.SECP256R1()))
    jtis = {
        jwt.decode(
            client_assertion(
                client_id="c",
                audience=TOKEN_ENDPOINT,
                private_key_pem=pem,
                algorithm="ES256",
                key_id=None,
                now=NOW,
            ),
            options={"verify_signature": False},
        )["jti"]
        for _ in range(50)
    }
    assert len(jtis) == 50


def test_private_key_jwt_form_carries_the_assertion_type() -> None:
    auth = private_key_jwt(
        client_id="cid",
        audience=TOKEN_ENDPOINT,
        private_key_pem=_pem(ec.generate_private_key(ec.SECP256R1())),
        algorithm="ES256",
        key_id="k1",
        now=NOW,
    )
    assert auth.form["client_assertion_type"] == ASSERTION_TYPE
    assert auth.form["client_id"] == "cid"
    assert auth.headers == {}


@pytest.mark.parametrize(
    ("pem", "algorithm"),
    [
        (b"not a key", "ES256"),
        (b"", "RS256"),
        ((pem_armour()[0] + "\n").encode(), "RS256"),  # armour, no body
        (garbled_private_key_pem().encode(), "ES256"),
    ],
)
def test_a_key_that_cannot_sign_is_one_opaque_error(pem: bytes, algorithm: str) -> None:
    with pytest.raises(InvalidClientKey) as caught:
        client_assertion(
            client_id="c",
            audience=TOKEN_ENDPOINT,
            private_key_pem=pem,
            algorithm=algorithm,
            key_id=None,
            now=NOW,
        )
    assert caught.value.__cause__ is None


def test_an_algorithm_outside_the_list_is_refused() -> None:
    with pytest.raises(InvalidClientKey):
        client_assertion(
            client_id="c",
            audience=TOKEN_ENDPOINT,
            private_key_pem=_pem(ec.generate_private_key(ec.SECP256R1())),
            algorithm="HS256",
            key_id=None,
            now=NOW,
        )
