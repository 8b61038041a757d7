"""Errors of the sandbox Okta: one root, docstring-only subclasses.

The server maps each to Okta's error body in one place (`server._okta_error_for`).
"""

from __future__ import annotations

from strongroom_local.exceptions import LocalStackError


class SandboxOktaError(LocalStackError):
    """Root of every error raised by the sandbox Okta."""


class ResourceNotFound(SandboxOktaError):
    """The path names no endpoint, or an id the org does not hold (Okta E0000007)."""


class InvalidParameter(SandboxOktaError):
    """A query parameter is malformed or unsupported (Okta E0000001); the message names it."""


class InvalidSandboxSetting(SandboxOktaError):
    """A size, rate limit or fault setting is out of range; the message names it."""


class ControlRequestRefused(SandboxOktaError):
    """The sandbox refused a control request (bad token, unknown route)."""
