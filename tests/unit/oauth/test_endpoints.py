"""Each provider's OAuth endpoints, and dev allow-list hosts standing in over plain HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom.oauth.connection import ConnectionStatus, read_connection
from strongroom.oauth.endpoints import provider_endpoints
from strongroom.oauth.exceptions import ConnectionUnusable
from strongroom.tenancy import Item

ORG = "org_" + "a" * 26


def _record(**attributes: Any) -> Any:
    base = {"provider": "okta", "auth_method": "client_credentials"}
    return read_connection(
        ORG, Item(kind="CONN", item_id="conn_x", attributes={**base, **attributes})
    )


def test_okta_uses_the_org_authorization_server() -> None:
    endpoints = provider_endpoints(_record(domain="acme.okta.com"))
    assert endpoints.token == "https://acme.okta.com/oauth2/v1/token"
    assert endpoints.authorization == "https://acme.okta.com/oauth2/v1/authorize"
    assert endpoints.revocation == "https://acme.okta.com/oauth2/v1/revoke"
    assert not endpoints.client_secret_in_body


def test_auth0_and_entra_paths() -> None:
    auth0 = provider_endpoints(_record(provider="auth0", domain="acme.us.auth0.com"))
    assert auth0.token == "https://acme.us.auth0.com/oauth/token"
    assert auth0.revocation == "https://acme.us.auth0.com/oauth/revoke"
    entra = provider_endpoints(_record(provider="entra", tenant_id="contoso.onmicrosoft.com"))
    assert entra.token == (
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert entra.revocation is None
    assert entra.client_secret_in_body


def test_oauth2_connections_carry_their_own_endpoints() -> None:
    endpoints = provider_endpoints(
        _record(
            provider="oauth2",
            token_endpoint="https://idp.example.com/token",
            authorization_endpoint="https://idp.example.com/authorize",
        )
    )
    assert endpoints.token == "https://idp.example.com/token"
    assert endpoints.revocation is None


def test_only_an_allow_listed_dev_host_is_reached_over_http() -> None:
    record = _record(domain="127.0.0.1:8443")
    assert provider_endpoints(record, {("127.0.0.1", 8443)}).token.startswith("http://127.0.0.1")
    # Not on the list: https, which the outbound guard then refuses for a loopback address.
    assert provider_endpoints(record).token.startswith("https://127.0.0.1:8443/")


@pytest.mark.parametrize(
    "attributes",
    [{"provider": "okta"}, {"provider": "entra"}, {"provider": "oauth2"}, {"provider": "x"}],
)
def test_a_connection_without_endpoints_is_unusable(attributes: dict[str, Any]) -> None:
    with pytest.raises(ConnectionUnusable):
        provider_endpoints(_record(**attributes))


def test_status_defaults_follow_the_method_and_the_grant() -> None:
    assert _record().status is ConnectionStatus.ACTIVE
    pending = _record(auth_method="authorization_code")
    assert pending.status is ConnectionStatus.PENDING_AUTHORIZATION
    authorized = _record(auth_method="authorization_code", sealed_refresh_token=b"x")
    assert authorized.status is ConnectionStatus.ACTIVE
    assert "conn_x" in repr(authorized)
    assert "sealed" not in repr(authorized)


def test_each_provider_names_the_issuer_its_discovery_document_does() -> None:
    assert provider_endpoints(_record(domain="acme.okta.com")).issuer == "https://acme.okta.com"
    auth0 = provider_endpoints(_record(provider="auth0", domain="acme.us.auth0.com"))
    assert auth0.issuer == "https://acme.us.auth0.com/"
    guid = "9188040D-6C67-4C5B-B112-36A304B66DAD"
    entra = provider_endpoints(_record(provider="entra", tenant_id=guid))
    assert entra.issuer == f"https://login.microsoftonline.com/{guid.lower()}/v2.0"
    # A tenant's domain name is not what its issuer names; an oauth2 connection names none.
    named = provider_endpoints(_record(provider="entra", tenant_id="contoso.onmicrosoft.com"))
    assert named.issuer is None
    oauth2 = _record(provider="oauth2", token_endpoint="https://idp.example.com/token")
    assert provider_endpoints(oauth2).issuer is None
    dev = provider_endpoints(_record(domain="127.0.0.1:8443"), {("127.0.0.1", 8443)})
    assert dev.issuer == "http://127.0.0.1:8443"
