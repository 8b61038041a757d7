"""Errors of the OAuth concern: token requests, the token service, authorization and revocation.

Messages are fixed text. A provider's error response may echo a code, a token or a client id,
so only the RFC 6749 error code of a refusal is kept (on `ProviderRefused.error`), never the
provider's description.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class OAuthError(StrongroomError):
    """Root of every error of the OAuth concern."""


class TokenUnavailable(OAuthError):
    """No token now (provider outage, timeout, malformed answer, or the lease not taken in time).

    Says nothing about the credentials: the caller may retry later.
    """


class LeaseTimeout(TokenUnavailable):
    """Another caller held the connection's token lease for longer than this caller waits."""


class GrantNotStored(TokenUnavailable):
    """The provider issued a grant that could not be stored (DynamoDB or KMS failing); it was
    revoked there. Authorize again later."""


class ProviderRefused(OAuthError):
    """The token endpoint refused the request with an RFC 6749 error code other than
    invalid_grant (for example invalid_client: the client credentials are wrong)."""

    def __init__(self, message: str, *, error: str = "invalid_request") -> None:
        super().__init__(message)
        self.error = error


class InvalidGrant(ProviderRefused):
    """The grant (code or refresh token) is invalid, expired or revoked: re-authorize."""


class NeedsReauthorization(OAuthError):
    """The connection holds no usable grant; an admin must run the OAuth flow again."""


class ConnectionUnusable(OAuthError):
    """The connection does not exist, or holds no credential the token service can use."""


class InvalidClientKey(OAuthError):
    """The stored private key cannot sign a client assertion."""


class ResealContention(OAuthError):
    """A connection kept changing while it was being resealed; run the command again."""
