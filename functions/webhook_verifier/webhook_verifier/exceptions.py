"""Errors of webhook handling; app.py turns them into the API's errors."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class WebhookError(StrongroomError):
    """Root of webhook_verifier's errors."""


class SignatureRejected(WebhookError):
    """The delivery did not verify. Deliberately one error for every reason (opaque 401)."""


class EventUnreadable(WebhookError):
    """A verified delivery's body is not an event this source sends (400)."""


class SecretMisconfigured(WebhookError):
    """A configured signing secret cannot be used by its scheme (500, logged)."""


class BillingContention(WebhookError):
    """Concurrent plan changes kept an effect from applying; answered 500 so it is retried."""
