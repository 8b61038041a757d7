"""Shared helpers for the connection tests: org set-up, bodies, keys made at test time."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from strongroom.crypto import KeyringUnavailable
from tests.unit.credential_store.conftest import Call

CONNECTIONS = "/orgs/{org_id}/connections"
CONNECTION = "/orgs/{org_id}/connections/{connection_id}"
CREDENTIALS = "/orgs/{org_id}/connections/{connection_id}/credentials"
# The loopback entry the tests allow (STRONGROOM_DEV_ALLOW_HOSTS); nothing listens on it.
DEV_HOST = "127.0.0.1:8443"


def canary(label: str = "c") -> str:
    """A unique secret-looking string that must never show up in plaintext anywhere."""
    return f"CANARY{label}{secrets.token_hex(12)}"


def kms_throttled(*_: Any, **__: Any) -> str:
    """A revocation (or any call) that meets KMS throttling while it opens a sealed value."""
    raise KeyringUnavailable("KMS Decrypt failed (ThrottlingException)")


def holds_a_revocable_grant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connections count as holding a grant their provider can revoke (an OAuth grant needs the
    whole authorization flow; tests/unit/oauth_flow has those)."""
    from strongroom.oauth import TokenService

    monkeypatch.setattr(TokenService, "revocable", lambda *_, **__: True)


def revocations_recorded(
    app_module: Any, org: str, *, actor: str | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """(outcome, details) of the org's `credential.revoke` entries, oldest first (by `actor`)."""
    services = app_module.services()
    services.audit.flush(org, now=datetime.now(UTC))
    events = services.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    return [
        (e.outcome, dict(e.details))
        for e in reversed(events)
        if e.action == "credential.revoke" and actor in (None, e.actor)
    ]


def new_org(call: Call, owner: str = "alice") -> str:
    status, body = call("POST", "/orgs", sub=owner, body={"name": "Acme"})
    assert status == 201, body
    org = str(body["org_id"])
    for user, role in (("bob", "admin"), ("carol", "member")):
        status, body = call(
            "PUT",
            f"/orgs/{org}/members/{user}",
            sub=owner,
            route="/orgs/{org_id}/members/{user_id}",
            path_parameters={"org_id": org, "user_id": user},
            body={"role": role},
        )
        assert status == 200, body
    return org


def okta_body(token: str | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Acme Okta",
        "provider": "okta",
        "domain": "acme.okta.com",
        "scopes": ["okta.users.read", "okta.groups.read"],
        "auth": {"method": "api_token", "token": token or canary("tok")},
        "schedule": "rate(1 day)",
    }
    body.update(overrides)
    return body


def create(call: Call, org: str, body: dict[str, Any], sub: str = "bob") -> tuple[int, Any]:
    return call(
        "POST",
        f"/orgs/{org}/connections",
        sub=sub,
        route=CONNECTIONS,
        path_parameters={"org_id": org},
        body=body,
    )


def created(call: Call, org: str, body: dict[str, Any], sub: str = "bob") -> str:
    status, response = create(call, org, body, sub)
    assert status == 201, response
    return str(response["connection_id"])


def get(call: Call, org: str, connection_id: str, sub: str = "carol") -> tuple[int, Any]:
    return call(
        "GET",
        f"/orgs/{org}/connections/{connection_id}",
        sub=sub,
        route=CONNECTION,
        path_parameters={"org_id": org, "connection_id": connection_id},
    )


def listing(call: Call, org: str, sub: str = "carol") -> tuple[int, Any]:
    return call(
        "GET",
        f"/orgs/{org}/connections",
        sub=sub,
        route=CONNECTIONS,
        path_parameters={"org_id": org},
    )


def rotate(
    call: Call, org: str, connection_id: str, auth: dict[str, Any], sub: str = "bob"
) -> tuple[int, Any]:
    return call(
        "PUT",
        f"/orgs/{org}/connections/{connection_id}/credentials",
        sub=sub,
        route=CREDENTIALS,
        path_parameters={"org_id": org, "connection_id": connection_id},
        body={"auth": auth},
    )


def delete(call: Call, org: str, connection_id: str, sub: str = "bob") -> tuple[int, Any]:
    return call(
        "DELETE",
        f"/orgs/{org}/connections/{connection_id}",
        sub=sub,
        route=CONNECTION,
        path_parameters={"org_id": org, "connection_id": connection_id},
    )


def rsa_pem(bits: int = 2048) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def ec_pem(curve: ec.EllipticCurve) -> str:
    key = ec.generate_private_key(curve)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def ec_jwk(curve: ec.EllipticCurve | None = None) -> str:
    return str(ECAlgorithm.to_jwk(ec.generate_private_key(curve or ec.SECP256R1())))


def rsa_jwk(bits: int = 2048) -> str:
    return str(RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=bits)))


def public_only_jwk() -> str:
    jwk = json.loads(ec_jwk())
    del jwk["d"]
    return json.dumps(jwk)


def pem_body_lines(pem: str) -> list[str]:
    """The base64 lines of a PEM block: none may appear in plaintext anywhere."""
    return [line for line in pem.splitlines() if line and not line.startswith("-----")]


def spki_fingerprint(private_pem: str) -> str:
    import hashlib

    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
