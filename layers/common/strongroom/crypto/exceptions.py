"""Errors of the crypto concern.

`InvalidSealedValue` is deliberately opaque (like fernet's `InvalidToken`): one class and one
message for every reason a value does not open, so a caller learns nothing about why.
`KeyringUnavailable` is kept apart from it so that a KMS or DynamoDB outage is never mistaken
for tampering.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError
from strongroom.tenancy import InvalidOrgId as TenancyInvalidOrgId


class CryptoError(StrongroomError):
    """Root of every error of the crypto concern."""


class InvalidOrgId(CryptoError, TenancyInvalidOrgId):
    """The org id is malformed by tenancy's rule (so this is also tenancy's InvalidOrgId)."""


class InvalidSealedValue(CryptoError):
    """The sealed value does not open here (tampered, moved, truncated, unknown key or garbage)."""


class KeyringUnavailable(CryptoError):
    """KMS or the table failed or answered something unusable; the value itself may be fine."""


class KeyringNotFound(CryptoError):
    """The org has no keyring or no KMS key (never created, or already gone)."""


class KeyringConflict(CryptoError):
    """The keyring or key already exists, or a rotation kept losing to concurrent rotations."""
