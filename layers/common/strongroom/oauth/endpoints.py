"""Each provider's OAuth endpoints, from a connection's settings.

Okta's org authorization server (`/oauth2/v1/...`) is the one that grants Management API scopes
(`okta.users.read`, ...). Auth0 and Entra use their documented paths; Entra has no RFC 7009
revocation endpoint. `oauth2` connections carry their own endpoints, checked by the outbound
guard when they were stored and again by the outbound client at every use.

`issuer` is the provider's issuer identifier (RFC 8414), as its discovery document names it,
for RFC 9207's check of an authorization response's `iss`: Okta's org authorization server is
`https://<domain>`, Auth0's tenant `https://<domain>/`, an Entra tenant (by its GUID only: a
`.onmicrosoft.com` name is not what its issuer names) `https://login.microsoftonline.com/<tenant
GUID>/v2.0`. An `oauth2` connection's settings name no issuer, so it has none.

A domain that is one of the deployment's dev allow-list entries (`127.0.0.1:8443`) stands in for
the provider over plain HTTP: only the local stack and tests set that list.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from strongroom.oauth.connection import ConnectionRecord
from strongroom.oauth.exceptions import ConnectionUnusable


@dataclass(frozen=True, slots=True)
class ProviderEndpoints:
    authorization: str | None
    token: str
    revocation: str | None
    # How a client secret is presented (RFC 6749 §2.3.1): Entra documents only the form body.
    client_secret_in_body: bool = False
    # The issuer identifier, None when the connection's settings do not tell it.
    issuer: str | None = None


_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


def provider_endpoints(
    connection: ConnectionRecord, dev_hosts: Collection[tuple[str, int]] = ()
) -> ProviderEndpoints:
    """The connection's endpoints; ConnectionUnusable when its settings name none."""
    provider = connection.provider
    if provider == "okta":
        base = _base(connection.domain, dev_hosts)
        return ProviderEndpoints(
            authorization=f"{base}/oauth2/v1/authorize",
            token=f"{base}/oauth2/v1/token",
            revocation=f"{base}/oauth2/v1/revoke",
            issuer=base,
        )
    if provider == "auth0":
        base = _base(connection.domain, dev_hosts)
        return ProviderEndpoints(
            authorization=f"{base}/authorize",
            token=f"{base}/oauth/token",
            revocation=f"{base}/oauth/revoke",
            issuer=f"{base}/",
        )
    if provider == "entra":
        if not connection.tenant_id:
            raise ConnectionUnusable("the connection has no tenant id")
        tenant = connection.tenant_id
        base = f"https://login.microsoftonline.com/{tenant}/oauth2/v2.0"
        return ProviderEndpoints(
            authorization=f"{base}/authorize",
            token=f"{base}/token",
            revocation=None,
            client_secret_in_body=True,
            issuer=(
                f"https://login.microsoftonline.com/{tenant.lower()}/v2.0"
                if _GUID.fullmatch(tenant)
                else None
            ),
        )
    if provider == "oauth2" and connection.token_endpoint:
        return ProviderEndpoints(
            authorization=connection.authorization_endpoint,
            token=connection.token_endpoint,
            revocation=connection.revocation_endpoint,
        )
    raise ConnectionUnusable("the connection names no token endpoint")


def api_base_url(connection: ConnectionRecord, dev_hosts: Collection[tuple[str, int]] = ()) -> str:
    """The origin of the provider's management API for okta and auth0 connections
    (`https://<domain>`, or `http://127.0.0.1:PORT` for a dev allow-list entry)."""
    if connection.provider not in ("okta", "auth0"):
        raise ConnectionUnusable("the connection's provider has no domain-based API")
    return _base(connection.domain, dev_hosts)


def _base(domain: str | None, dev_hosts: Collection[tuple[str, int]]) -> str:
    if not domain:
        raise ConnectionUnusable("the connection has no domain")
    host, _, port = domain.rpartition(":")
    if port.isdigit() and (host.strip("[]"), int(port)) in set(dev_hosts):
        return f"http://{domain}"
    return f"https://{domain}"
