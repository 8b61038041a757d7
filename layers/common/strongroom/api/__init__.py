"""The HTTP API plumbing every function shares: resolver, limits, identity, error mapping."""

from strongroom.api.identity import Caller, caller_from_event, is_subject
from strongroom.api.resolver import MAX_BODY_BYTES, create_resolver, handle_request

__all__ = [
    "MAX_BODY_BYTES",
    "Caller",
    "caller_from_event",
    "create_resolver",
    "handle_request",
    "is_subject",
]
