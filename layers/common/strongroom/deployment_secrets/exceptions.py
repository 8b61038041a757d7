"""Errors of deployment secrets. Messages name the secret, never a value."""

from __future__ import annotations

from strongroom.errors import StrongroomError


class DeploymentSecretError(StrongroomError):
    """Root of the deployment secrets' errors."""


class DeploymentSecretUnavailable(DeploymentSecretError):
    """Secrets Manager could not be read (missing secret, no permission, service error)."""


class DeploymentSecretInvalid(DeploymentSecretError):
    """The secret is not a JSON object with an `active` list of non-empty strings."""
