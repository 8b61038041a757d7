"""The active values of a deployment secret, read through Powertools' SecretsProvider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import (
    GetParameterError,
    TransformParameterError,
)

from strongroom.deployment_secrets.exceptions import (
    DeploymentSecretInvalid,
    DeploymentSecretUnavailable,
)

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

# Enough for a rotation in progress with room to spare; more is a mistake worth refusing.
MAX_ACTIVE_VALUES = 5
_MAX_VALUE_LENGTH = 4096


class ActiveSecrets:
    """Reads `{"active": [...]}` secrets; each is cached for `max_age_seconds`.

    `max_age_seconds=None` leaves the age to Powertools (`POWERTOOLS_PARAMETERS_MAX_AGE`,
    5 seconds when unset). Values are returned as given, newest first; an empty list means
    nothing is active, and every signature checked against it fails.
    """

    def __init__(
        self, *, secretsmanager: SecretsManagerClient, max_age_seconds: int | None = None
    ) -> None:
        self._provider = SecretsProvider(boto3_client=secretsmanager)
        self._max_age = max_age_seconds

    def values(self, secret_id: str) -> tuple[str, ...]:
        """The secret's active values; DeploymentSecretUnavailable or DeploymentSecretInvalid."""
        try:
            document = self._provider.get(secret_id, max_age=self._max_age, transform="json")
        except TransformParameterError:
            # The parser's message may quote part of the secret: never pass it on.
            raise DeploymentSecretInvalid(f"secret {secret_id} is not JSON") from None
        except GetParameterError:
            raise DeploymentSecretUnavailable(f"secret {secret_id} could not be read") from None
        return _active_values(secret_id, document)


def _active_values(secret_id: str, document: Any) -> tuple[str, ...]:
    active = document.get("active") if isinstance(document, dict) else None
    if not isinstance(active, list) or len(active) > MAX_ACTIVE_VALUES:
        raise DeploymentSecretInvalid(
            f'secret {secret_id} must hold {{"active": [...]}} with at most'
            f" {MAX_ACTIVE_VALUES} values"
        )
    for value in active:
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_VALUE_LENGTH:
            raise DeploymentSecretInvalid(
                f"secret {secret_id}: every active value must be a non-empty string"
            )
    return tuple(active)
