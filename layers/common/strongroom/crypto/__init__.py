"""Application-layer encryption of secret fields: per-org KMS keys, versioned DEKs, AES-256-GCM.

    keyrings = Keyrings(kms=kms, dynamodb=dynamodb, settings=settings)   # once per process
    arn = keyrings.create_org_key(org_id)                                # with the org
    keyring = keyrings.create_keyring(org_id, kms_key_arn=arn, now=now)
    sealed = keyring.seal_field(secret, kind="connection", item_id=cid, field="client_secret")
    secret = keyring.open_text_field(sealed, kind="connection", item_id=cid, field="client_secret")

Sealed values are bytes (`strongroom.crypto.sealed` has the format): store them as DynamoDB
Binary (B) attributes and pass back exactly `bytes` to open. Every value that does not open,
and anything that is not `bytes`, raises the one `InvalidSealedValue`; KMS or table failures raise
`KeyringUnavailable` instead, so an outage never looks like tampering.
"""

from strongroom.crypto.cache import DekCache
from strongroom.crypto.exceptions import (
    CryptoError,
    InvalidOrgId,
    InvalidSealedValue,
    KeyringConflict,
    KeyringNotFound,
    KeyringUnavailable,
)
from strongroom.crypto.keyrings import DekInUse, Keyrings, OrgKeyring, validate_org_id

__all__ = [
    "CryptoError",
    "DekCache",
    "DekInUse",
    "InvalidOrgId",
    "InvalidSealedValue",
    "KeyringConflict",
    "KeyringNotFound",
    "KeyringUnavailable",
    "Keyrings",
    "OrgKeyring",
    "validate_org_id",
]
