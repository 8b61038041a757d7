"""Deployment secrets (webhook signing secrets and the like) from AWS Secrets Manager.

One secret per purpose holds the list of its currently active values, newest first, so a value
rotates without downtime: add the new one in front, switch the sender over, drop the old one.

    {"active": ["whsec_new...", "whsec_old..."]}

Read through Powertools' parameters utility, which caches each secret for a short time
(`POWERTOOLS_PARAMETERS_MAX_AGE` seconds unless the caller says otherwise):

    secrets = ActiveSecrets(secretsmanager=session.client("secretsmanager"))
    values = secrets.values(secret_arn)        # tuple of str; may be empty (nothing active)
"""

from strongroom.deployment_secrets.active import ActiveSecrets
from strongroom.deployment_secrets.exceptions import (
    DeploymentSecretError,
    DeploymentSecretInvalid,
    DeploymentSecretUnavailable,
)

__all__ = [
    "ActiveSecrets",
    "DeploymentSecretError",
    "DeploymentSecretInvalid",
    "DeploymentSecretUnavailable",
]
