"""A stored connection as the token service and the OAuth flow read it.

credential_store writes connections (kind `CONN`, item id = the connection id). Each secret field
is sealed on its own under the org's DEK with kind `connection`, the connection id and the
field's name, and stored as the Binary attribute `sealed_<field>`. The token service adds the
refresh token from the OAuth flow (`sealed_refresh_token`) and its cache of the current access
token (`sealed_access_token`, `access_token_expires_at`), guarded by `token_generation`. A
revocation still owed keeps copies of the sealed values under OWED_REVOCATION_KIND.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from strongroom.oauth.exceptions import ConnectionUnusable
from strongroom.tenancy import Item

CONNECTION_KIND = "CONN"
SEALED_KIND = "connection"  # the `kind` bound into every sealed connection secret's AAD
# A revocation still owed after a change dropped a connection's tokens (credential_store's
# `revocations`): a copy of the connection's sealed values, which open under its id, kept in
# OWED_CONNECTION_ID.
OWED_REVOCATION_KIND = "REVOCATION"
OWED_CONNECTION_ID = "connection_id"
SEALED_PREFIX = "sealed_"

# Names of fields the token service writes on the connection item (names, not secrets).
REFRESH_TOKEN = "refresh_token"  # noqa: S105
ACCESS_TOKEN = "access_token"  # noqa: S105
ACCESS_TOKEN_EXPIRES_AT = "access_token_expires_at"  # noqa: S105
TOKEN_GENERATION = "token_generation"  # noqa: S105
STATUS = "status"


class ConnectionStatus(enum.StrEnum):
    ACTIVE = "active"
    # An authorization-code connection before its first successful OAuth flow.
    PENDING_AUTHORIZATION = "pending_authorization"
    # The provider answered invalid_grant: an admin must authorize again.
    NEEDS_REAUTH = "needs_reauth"


def sealed_attribute(field: str) -> str:
    return SEALED_PREFIX + field


@dataclass(frozen=True, slots=True, repr=False)
class ConnectionRecord:
    """What the OAuth code needs of a connection item. The repr names only the ids."""

    org_id: str
    connection_id: str
    provider: str
    auth_method: str
    client_id: str | None
    key_id: str | None
    key_algorithm: str | None
    scopes: tuple[str, ...]
    domain: str | None
    tenant_id: str | None
    authorization_endpoint: str | None
    token_endpoint: str | None
    revocation_endpoint: str | None
    status: ConnectionStatus
    token_generation: int
    access_token_expires_at: int | None
    _attributes: dict[str, Any]

    def __repr__(self) -> str:
        return f"ConnectionRecord({self.org_id}, {self.connection_id})"

    def credentials(self) -> dict[str, Any]:
        """The fingerprint records of the connection's credentials (no secret)."""
        records = self._attributes.get("credentials", {})
        return dict(records) if isinstance(records, dict) else {}

    def sealed(self, field: str) -> bytes | None:
        """The sealed value of a secret field, or None if the connection holds none."""
        value = self._attributes.get(sealed_attribute(field))
        if value is None:
            return None
        if not isinstance(value, bytes):
            raise ConnectionUnusable("a sealed field is not stored as Binary")
        return value


def read_connection(org_id: str, item: Item) -> ConnectionRecord:
    """The record of a connection item read within `org_id`."""
    a = item.attributes
    method = str(a["auth_method"])
    default_status = (
        ConnectionStatus.PENDING_AUTHORIZATION
        if method == "authorization_code" and sealed_attribute(REFRESH_TOKEN) not in a
        else ConnectionStatus.ACTIVE
    )
    expires_at = a.get(ACCESS_TOKEN_EXPIRES_AT)
    return ConnectionRecord(
        org_id=org_id,
        connection_id=str(item.item_id),
        provider=str(a["provider"]),
        auth_method=method,
        client_id=_text(a.get("client_id")),
        key_id=_text(a.get("key_id")),
        key_algorithm=_text(a.get("key_algorithm")),
        scopes=tuple(str(scope) for scope in a.get("scopes", ())),
        domain=_text(a.get("domain")),
        tenant_id=_text(a.get("tenant_id")),
        authorization_endpoint=_text(a.get("authorization_endpoint")),
        token_endpoint=_text(a.get("token_endpoint")),
        revocation_endpoint=_text(a.get("revocation_endpoint")),
        status=ConnectionStatus(a.get(STATUS, default_status)),
        token_generation=int(a.get(TOKEN_GENERATION, 0)),
        access_token_expires_at=int(expires_at) if expires_at is not None else None,
        _attributes=dict(a),
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
