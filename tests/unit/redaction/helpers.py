"""Canaries and leak checks for the redaction tests.

Every secret is generated at test time; a leak is any 8-character window of a secret found in
the output, so a secret cut in two by a sloppy pattern counts as leaked too.
"""

from __future__ import annotations

import secrets

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

WINDOW = 8


def canary() -> str:
    """A fresh random token (base64url, 32 characters)."""
    return secrets.token_urlsafe(24)


def alphanumeric_canary(length: int = 32) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def leaked_fragments(output: str, secret: str) -> list[int]:
    """Offsets of the secret's windows that appear in `output` (empty: nothing leaked)."""
    if len(secret) < WINDOW:
        return [0] if secret in output else []
    return [i for i in range(len(secret) - WINDOW + 1) if secret[i : i + WINDOW] in output]


def assert_not_leaked(output: str, *secret_values: str) -> None:
    for number, secret in enumerate(secret_values):
        offsets = leaked_fragments(output, secret)
        # The message names the secret's position, never the secret.
        assert not offsets, f"secret #{number} leaked at offsets {offsets[:5]}"


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block: the part that must never be shown."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def private_key_pems() -> dict[str, str]:
    """Freshly generated private keys in every PEM flavour we may meet."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    pkcs8 = serialization.PrivateFormat.PKCS8
    traditional = serialization.PrivateFormat.TraditionalOpenSSL
    openssh = serialization.PrivateFormat.OpenSSH
    none = serialization.NoEncryption()
    pem = serialization.Encoding.PEM

    def encoded(
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
        fmt: serialization.PrivateFormat,
        encryption: serialization.KeySerializationEncryption = none,
    ) -> str:
        return key.private_bytes(pem, fmt, encryption).decode()

    return {
        "rsa-pkcs8": encoded(rsa_key, pkcs8),
        "rsa-traditional": encoded(rsa_key, traditional),
        "ec-pkcs8": encoded(ec_key, pkcs8),
        "ec-traditional": encoded(ec_key, traditional),
        "ed25519-pkcs8": encoded(ed_key, pkcs8),
        "ec-openssh": encoded(ec_key, openssh),
        "rsa-pkcs8-encrypted": encoded(
            rsa_key, pkcs8, serialization.BestAvailableEncryption(secrets.token_bytes(16))
        ),
    }


def private_key_ders() -> dict[str, bytes]:
    """The same kinds of keys as bare DER (for base64 without PEM armour)."""
    der = serialization.Encoding.DER
    none = serialization.NoEncryption()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    return {
        "rsa-pkcs8": rsa_key.private_bytes(der, serialization.PrivateFormat.PKCS8, none),
        "rsa-traditional": rsa_key.private_bytes(
            der, serialization.PrivateFormat.TraditionalOpenSSL, none
        ),
        "ec-pkcs8": ec_key.private_bytes(der, serialization.PrivateFormat.PKCS8, none),
        "ec-traditional": ec_key.private_bytes(
            der, serialization.PrivateFormat.TraditionalOpenSSL, none
        ),
        "ed25519-pkcs8": ed_key.private_bytes(der, serialization.PrivateFormat.PKCS8, none),
    }


def fullwidth(text: str) -> str:
    """`text` with each printable ASCII character but the space in its fullwidth form."""
    return "".join(chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in text)


def math_bold(text: str) -> str:
    """`text` with each ASCII letter in its MATHEMATICAL BOLD form (NFKC gives it back)."""
    return "".join(
        chr(0x1D400 + ord(char) - ord("A"))
        if "A" <= char <= "Z"
        else chr(0x1D41A + ord(char) - ord("a"))
        if "a" <= char <= "z"
        else char
        for char in text
    )
