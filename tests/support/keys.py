"""Keys for tests, generated at test time: no private key, and no PEM armour, is ever a literal.

Tests that need only a PEM block's BEGIN/END lines take them from a freshly generated key, so a
tracked file never holds anything that looks like key material.
"""

from __future__ import annotations

import functools

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_FORMATS = {
    "pkcs8": serialization.PrivateFormat.PKCS8,
    "traditional": serialization.PrivateFormat.TraditionalOpenSSL,
}


@functools.cache
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def ec_private_key_pem(fmt: str = "pkcs8") -> str:
    """A P-256 private key generated in this test process, as unencrypted PEM."""
    return (
        _key()
        .private_bytes(serialization.Encoding.PEM, _FORMATS[fmt], serialization.NoEncryption())
        .decode("ascii")
    )


def ec_public_key_pem() -> str:
    return (
        _key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def pem_armour(fmt: str = "pkcs8") -> tuple[str, str]:
    """The BEGIN and END lines of a private key PEM in `fmt` ("pkcs8" or "traditional")."""
    lines = ec_private_key_pem(fmt).splitlines()
    return lines[0], lines[-1]


def garbled_private_key_pem() -> str:
    """A PEM private key block whose body is not a key."""
    begin, end = pem_armour()
    return f"{begin}\nnot a key\n{end}\n"
