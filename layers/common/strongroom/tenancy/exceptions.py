"""Errors of the tenancy concern.

Messages name the operation and, for DynamoDB failures, the AWS error code; never a key, an
attribute value or AWS's own message (which can quote values). `StoreUnavailable` is kept apart
from `ItemNotFound` so that an outage or a throttle is never answered as "no such item".
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class TenancyError(StrongroomError):
    """Root of every error of the tenancy concern."""


class InvalidOrgId(TenancyError):
    """The org id is not `org_` followed by 26 lowercase base32 characters."""


class InvalidKey(TenancyError):
    """A kind, item id, index key or attribute name is malformed, reserved or could inject `#`."""


class ItemNotFound(TenancyError):
    """The item does not exist or has expired."""


class ItemExists(TenancyError):
    """The item to create already exists (and has not expired)."""


class ConditionFailed(TenancyError):
    """The item exists but does not hold the expected attribute values."""


class LimitReached(ConditionFailed):
    """A counter would pass its ceiling, or drop below zero."""


class InvalidCursor(TenancyError):
    """The pagination cursor is malformed or belongs to another org or listing."""


class StoreUnavailable(TenancyError):
    """DynamoDB failed, throttled or refused the request."""


class WriteConflict(StoreUnavailable):
    """DynamoDB cancelled the transaction for another one under way on its items
    (TransactionConflict): nothing was written. Transient, like the outages it is kept with, so
    no caller reads it as a lost condition (the other transaction may yet fail); a caller whose
    answer to a race is 409 catches it by name."""
