"""Errors of the redaction concern.

Redacting never raises: a value it cannot render is shown as `[REDACTED]`. The only error is a
configuration mistake caught when a logger is built.
"""

from __future__ import annotations

from strongroom.errors import StrongroomError


class RedactionError(StrongroomError):
    """Root of every error of the redaction concern."""


class UnsafeLoggerConfiguration(RedactionError):
    """A logger was asked to use a formatter that does not redact."""
