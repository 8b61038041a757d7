"""Errors of the audit concern.

An outage (`AuditUnavailable`: S3 or DynamoDB failed) is kept apart from a tampering finding
(`AuditChainBroken`), so that a throttle is never reported as tampering nor tampering as a
throttle. The verifier reports findings in its `ChainReport`; an append that meets a chain it
cannot extend raises `AuditChainBroken` and writes nothing.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class AuditError(StrongroomError):
    """Root of every error of the audit concern."""


class InvalidAuditEvent(AuditError):
    """A field of the event is missing or invalid (the message names fields, never values)."""


class InvalidAuditCursor(AuditError):
    """The audit listing cursor is malformed or belongs to another org."""


class AuditUnavailable(AuditError):
    """S3 or DynamoDB failed; nothing was appended (or, if the event was, the next append
    anchors it)."""


class AuditContention(AuditUnavailable):
    """Concurrent appends to the org kept winning; try again."""


class AuditChainBroken(AuditError):
    """The stored chain does not extend from its head: an event or the head was tampered with."""
