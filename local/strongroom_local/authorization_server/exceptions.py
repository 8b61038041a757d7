"""Protocol errors of the local authorization server: one root, docstring-only subclasses.

Each subclass is one RFC 6749 error code; `server.py` maps them to the wire (code and status)
in one place. The message becomes `error_description`: it is always a fixed text written here
in the package, never caller input, so no credential can be echoed back.
"""

from __future__ import annotations

from strongroom_local.exceptions import LocalStackError


class OAuthError(LocalStackError):
    """Root of every error the authorization server answers with."""


class UntrustedRedirect(OAuthError):
    """Unknown client or unregistered redirect_uri: shown as an error page, never redirected."""


class InvalidRequest(OAuthError):
    """A parameter is missing, repeated, malformed, or the request is framed wrongly."""


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, wrong credential, unregistered method)."""


class InvalidGrant(OAuthError):
    """The code or refresh token is invalid, expired, spent, revoked or bound to another."""


class UnauthorizedClient(OAuthError):
    """The client may not use this grant type."""


class UnsupportedGrantType(OAuthError):
    """The grant type is not one this server issues tokens for."""


class UnsupportedResponseType(OAuthError):
    """The authorization request asked for a response type other than `code`."""


class InvalidScope(OAuthError):
    """The scope is malformed or exceeds what the client (or the grant) holds."""
