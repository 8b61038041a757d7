"""Outbound HTTP to providers: one hardened client with an SSRF guard and DNS pinning.

Use `OutboundClient` for every provider request, `check_url` when a provider URL is configured,
and `is_forbidden_address` for the address rule itself.
"""

from typing import TYPE_CHECKING

from strongroom.outbound.addresses import is_forbidden_address
from strongroom.outbound.guard import Resolver, check_url, system_resolver
from strongroom.outbound.response import OutboundResponse, ResponseHeaders
from strongroom.outbound.retry import RetryPolicy

if TYPE_CHECKING:
    from strongroom.outbound.client import OutboundClient

__all__ = [
    "OutboundClient",
    "OutboundResponse",
    "Resolver",
    "ResponseHeaders",
    "RetryPolicy",
    "check_url",
    "is_forbidden_address",
    "system_resolver",
]


def __getattr__(name: str) -> object:
    # The client is loaded on first use: it imports requests, which a function that only checks
    # URLs (credential_store) would otherwise load at every cold start for nothing.
    if name == "OutboundClient":
        from strongroom.outbound.client import OutboundClient  # noqa: PLC0415

        return OutboundClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
