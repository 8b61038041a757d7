"""OAuth 2.0 for connections: client authentication, token requests, the token service.

`TokenService.access_token` is what backups call; `exchange_code` is what the OAuth callback
calls; `revoke` is what a connection's deletion calls. See `tokens` for the guarantees.
"""

from strongroom.oauth.client_auth import ClientAuthentication, client_assertion
from strongroom.oauth.connection import (
    CONNECTION_KIND,
    SEALED_KIND,
    ConnectionRecord,
    ConnectionStatus,
    read_connection,
    sealed_attribute,
)
from strongroom.oauth.endpoints import ProviderEndpoints, api_base_url, provider_endpoints
from strongroom.oauth.exceptions import (
    ConnectionUnusable,
    GrantNotStored,
    InvalidClientKey,
    InvalidGrant,
    LeaseTimeout,
    NeedsReauthorization,
    OAuthError,
    ProviderRefused,
    TokenUnavailable,
)
from strongroom.oauth.token_endpoint import TokenGrant, request_token, revoke_token
from strongroom.oauth.tokens import AccessToken, TokenService, token_client, token_service

__all__ = [
    "CONNECTION_KIND",
    "SEALED_KIND",
    "AccessToken",
    "ClientAuthentication",
    "ConnectionRecord",
    "ConnectionStatus",
    "ConnectionUnusable",
    "GrantNotStored",
    "InvalidClientKey",
    "InvalidGrant",
    "LeaseTimeout",
    "NeedsReauthorization",
    "OAuthError",
    "ProviderEndpoints",
    "ProviderRefused",
    "TokenGrant",
    "TokenService",
    "TokenUnavailable",
    "api_base_url",
    "client_assertion",
    "provider_endpoints",
    "read_connection",
    "request_token",
    "revoke_token",
    "sealed_attribute",
    "token_client",
    "token_service",
]
