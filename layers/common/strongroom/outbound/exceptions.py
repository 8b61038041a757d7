"""Errors of the outbound HTTP client.

Every message is fixed text: a URL's query or userinfo and a header's value may carry codes and
tokens, so none of them is ever part of an error (and the underlying library error, which does
quote the URL, is never chained).
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class OutboundError(StrongroomError):
    """Root of every error of the outbound HTTP client."""


class DestinationRefused(OutboundError):
    """The guard refused the destination: scheme, host, port or a resolved address."""


class TooManyRedirects(OutboundError):
    """The provider redirected more times than allowed."""


class ResponseTooLarge(OutboundError):
    """The response body is larger than the cap."""


class ProviderTimeout(OutboundError):
    """The provider did not connect or answer in time, on every attempt."""


class ProviderUnavailable(OutboundError):
    """The provider failed (5xx, connection error) on every attempt."""


class ProviderRateLimited(OutboundError):
    """The provider answered 429 on every attempt."""


class DeadlineReached(OutboundError):
    """A retry was due, but its wait would end after the caller's deadline."""


class CertificateRejected(OutboundError):
    """The provider's TLS certificate did not verify for the requested name."""


class MalformedOutboundRequest(OutboundError):
    """The request cannot be sent as given (bad method, header name or value, or body)."""


class MalformedResponse(OutboundError):
    """The response body could not be decoded as expected (for example, not JSON)."""
