"""Response bodies of the oauth_callback routes."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class AuthorizationStarted(BaseModel):
    # Built when first used: the callback, this function's busiest route, never needs it.
    model_config = ConfigDict(frozen=True, defer_build=True)

    # The provider's authorization URL: open it in the admin's browser.
    authorization_url: str
    # When the state in that URL stops being accepted (ISO-8601 UTC).
    expires_at: str


class CallbackResult(StrEnum):
    """The `result` query parameter of the redirect to the return URL."""

    CONNECTED = "connected"
    ACCESS_DENIED = "access_denied"
    PROVIDER_ERROR = "provider_error"
    INVALID_STATE = "invalid_state"
    INVALID_REQUEST = "invalid_request"
    CONNECTION_GONE = "connection_gone"
    # It changed while the code was exchanged (another flow's grant landed first, say), or
    # cannot be used as stored: the grant just issued is not kept.
    CONNECTION_CHANGED = "connection_changed"
    EXCHANGE_REFUSED = "exchange_refused"
    PROVIDER_UNAVAILABLE = "provider_unavailable"
    # Strongroom could not finish once the state was spent (its stores failing, or another
    # fault): a grant issued but not stored was revoked unless the connection holds it already.
    UNAVAILABLE = "unavailable"
    # The user who started the flow is no longer an admin or owner of the org.
    NOT_ALLOWED = "not_allowed"
    # The org's deletion has shredded its key: nothing is stored (a grant issued is revoked).
    ORG_DELETING = "org_deleting"
