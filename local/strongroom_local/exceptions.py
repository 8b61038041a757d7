"""Errors of the local stack: one root, docstring-only subclasses."""

from __future__ import annotations

# mypy cannot follow the editable install's import hook to the layer package (see the report).
from strongroom.errors import StrongroomError

# The parser lives in the layer (connections validate schedules too); re-exported here.
from strongroom.schedules import InvalidScheduleExpression

__all__ = ["InvalidScheduleExpression"]


class LocalStackError(StrongroomError):
    """Root of every error raised by the local stack and its CLI."""


class Unauthorized(LocalStackError):
    """The request's bearer token was refused (the reason is deliberately not kept)."""


class InsufficientScope(LocalStackError):
    """A valid token lacks every scope the route requires."""


class UnsafeStateDir(LocalStackError):
    """The state directory or the dev issuer key in it is not ours alone (another user's, open to
    others, or a link): it is refused rather than used."""


class UnsupportedTemplate(LocalStackError):
    """The template uses a feature the local stack cannot emulate."""


class InvalidTemplate(LocalStackError):
    """CloudFormation would refuse the template, or a parameter value given for it."""


class StackAlreadyRunning(LocalStackError):
    """Another local stack holds the state directory."""


class StartInterrupted(LocalStackError):
    """A stop was asked for (a signal) while the stack was starting; what had started stopped."""


class StackNotRunning(LocalStackError):
    """No running local stack was found for the state directory."""


class ControlRequestFailed(LocalStackError):
    """The running stack refused or failed a control request."""


class StackStartFailed(LocalStackError):
    """A local stack started as a subprocess did not become ready."""


class UnknownSecret(LocalStackError):
    """The running stack has no such secret, or it holds no active value."""


class NoSandbox(LocalStackError):
    """The running stack runs no sandbox Okta."""
