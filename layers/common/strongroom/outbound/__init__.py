"""Outbound HTTP to providers: one hardened client with an SSRF guard and DNS pinning.

Use `OutboundClient` for every provider request, `check_url` when a provider URL is configured,
and `is_forbidden_address` for the address rule itself.
"""

from strongroom.outbound.addresses import is_forbidden_address
from strongroom.outbound.client import OutboundClient
from strongroom.outbound.guard import Resolver, check_url, system_resolver
from strongroom.outbound.response import OutboundResponse, ResponseHeaders
from strongroom.outbound.retry import RetryPolicy

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
