"""Who is calling: only the claims API Gateway's JWT authorizer verified, never a body or header."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.errors import ReauthRequired, Unauthenticated

# Subjects become parts of DynamoDB sort keys: keep them to a safe alphabet. `system:` and
# `operator:` are the audit log's actors for Strongroom's own work and for operator commands
# (`system:scheduler`, `operator:local`): no caller may pass for either.
_SUBJECT = re.compile(r"^(?!(?i:system|operator):)[A-Za-z0-9._:@|+-]{1,128}$")


@dataclass(frozen=True)
class Caller:
    """The verified identity of the caller."""

    sub: str
    auth_time: int | None = None
    email: str | None = None

    def require_fresh_auth(self, *, now: float, max_age_seconds: int = 300) -> None:
        """Raise ReauthRequired unless the caller signed in within `max_age_seconds` of `now`."""
        if self.auth_time is None or not 0 <= now - self.auth_time <= max_age_seconds:
            raise ReauthRequired("Sign in again (within the last 5 minutes) to do this.")


def is_subject(value: str) -> bool:
    """Whether `value` can be a caller's subject (a member's user id): the safe alphabet, and not
    one of the audit log's own actors."""
    return _SUBJECT.fullmatch(value) is not None


def caller_from_event(event: Mapping[str, Any]) -> Caller:
    """The caller of an API Gateway HTTP API (payload v2) event; Unauthenticated if absent."""
    try:
        claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    except (KeyError, TypeError):
        raise Unauthenticated() from None
    if not isinstance(claims, Mapping):
        raise Unauthenticated()
    sub = claims.get("sub")
    if not isinstance(sub, str) or not is_subject(sub):
        raise Unauthenticated()
    auth_time: int | None = None
    raw_auth_time = claims.get("auth_time")
    if raw_auth_time is not None:
        try:
            auth_time = int(str(raw_auth_time))
        except ValueError:
            auth_time = None
    email = claims.get("email")
    return Caller(sub=sub, auth_time=auth_time, email=email if isinstance(email, str) else None)
