"""Org keyrings: the org's KMS key, its wrapped DEKs in the table, and sealing with them.

Table layout (the one table, `pk`/`sk` strings):

    pk=<org_id>  sk="KEYRING"          kms_key_arn (S), current_version (N)
    pk=<org_id>  sk="DEK#<6 digits>"   wrapped (B), version (N), created_at (S, ISO-8601 UTC)

Only KMS-wrapped DEKs are stored. A DEK is made by KMS GenerateDataKey under the org's key with
encryption context {"org_id": org_id}, and unwrapped with the same context and key, so a wrapped
DEK copied under another org does not unwrap. New DEK versions are written in one transaction
that puts the DEK item only if absent and moves KEYRING.current_version only if it still holds
the version the writer read, so concurrent rotations can neither fork nor skip a version.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag

from strongroom import tenancy
from strongroom.crypto import sealed
from strongroom.crypto.cache import NO_DEK, CachedDek, CurrentDek, DekCache
from strongroom.crypto.exceptions import (
    InvalidOrgId,
    InvalidSealedValue,
    KeyringConflict,
    KeyringNotFound,
    KeyringUnavailable,
)
from strongroom.crypto.sealed import HEADER_SIZE, MIN_SIZE, NONCE_END, NONCE_SIZE
from strongroom.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, TransactWriteItemTypeDef
    from mypy_boto3_kms.client import KMSClient

_KEYRING_SK = "KEYRING"
_DEK_SIZE = 32
# Each lost attempt means another rotation won; past this many, report a conflict.
_ROTATION_ATTEMPTS = 10
_LOST_RACE_CODES = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
_INVALID_SEALED_VALUE = "sealed value does not open"
# Slice objects built once: the open path slices every value three times.
_HEADER = slice(0, HEADER_SIZE)
_NONCE = slice(HEADER_SIZE, NONCE_END)
_CIPHERTEXT = slice(NONCE_END, None)


@dataclass(frozen=True)
class DekInUse:
    """An org's current DEK version, and since when it has been current."""

    version: int
    since: datetime


def validate_org_id(org_id: object) -> str:
    """`org_id` if it is well formed (tenancy's one rule for org ids), else InvalidOrgId."""
    try:
        return tenancy.validate_org_id(org_id)
    except tenancy.InvalidOrgId:
        raise InvalidOrgId("org id is malformed") from None


def _invalid() -> InvalidSealedValue:
    return InvalidSealedValue(_INVALID_SEALED_VALUE)


def _aad_on_miss(dek: CachedDek, kind: str, item_id: str, field: str) -> bytes:
    """The AAD the open path did not find among the DEK's cached ones, built (and kept while
    the DEK has room), or InvalidSealedValue if a part is one seal_field refuses (it cannot
    open)."""
    try:
        return dek.item_aad(kind, field, item_id)
    except (TypeError, ValueError, AttributeError):
        raise _invalid() from None


class OrgKeyring:
    """Seals and opens the secret fields of one org's items.

    `kind`, `item_id` and `field` name where a value lives (e.g. "connection", its id,
    "client_secret"); a value opens only with the org, kind, item id and field it was sealed
    with. Get one from `Keyrings.for_org`.
    """

    __slots__ = ("_cache", "_clock", "_dek", "_keyrings", "org_id")

    def __init__(self, keyrings: Keyrings, org_id: str) -> None:
        self.org_id = validate_org_id(org_id)
        self._keyrings = keyrings
        self._cache = keyrings.cache
        self._clock = keyrings.cache.clock
        # The DEK of the last open: the next one most likely names it too.
        self._dek = NO_DEK

    def seal_field(self, value: str | bytes, *, kind: str, item_id: str, field: str) -> bytes:
        """Seal `value` (str is sealed as UTF-8) under the org's current DEK; the sealed bytes
        (store them as a Binary attribute)."""
        if isinstance(value, str):
            plaintext = value.encode("utf-8")
        elif isinstance(value, bytes):
            plaintext = value
        else:
            raise TypeError("value must be str or bytes")
        sealed.check_part("kind", kind)
        sealed.check_part("field", field)
        item = sealed.check_part("item_id", item_id).encode("ascii")
        dek = self._keyrings._current_dek(self.org_id)
        try:
            prefix = dek.field_prefixes[kind][field]
        except KeyError:
            prefix = dek.field_prefix(kind, field)
        nonce = os.urandom(NONCE_SIZE)
        return dek.header + nonce + dek.aead.encrypt(nonce, plaintext, prefix + item)

    def open_field(self, sealed_value: bytes, *, kind: str, item_id: str, field: str) -> bytes:
        """The plaintext of `sealed_value` (exactly bytes: anything else does not open), or
        InvalidSealedValue for any reason it does not open; KeyringUnavailable if KMS or the
        table failed on the way."""
        # The hot path of a warm function: no KMS call, no table read, no Python call but
        # the clock, each step as cheap as measured (benchmarks/bench_crypto.py).
        dek = self._dek
        # A header equal to a DEK's proves format and version (only headers this process built
        # are cached). A slice, not bytes.startswith: that is cheaper on 3.13 alone, dearer on
        # 3.11, and no faster here on either (bench_crypto.py). CachedDek.take, inlined: one use
        # counted per open, then the age.
        if (
            sealed_value.__class__ is not bytes
            or sealed_value[_HEADER] != dek.header
            or next(dek.uses_left) <= 0
            or self._clock() >= dek.expires_at
        ):
            dek = self._dek_to_open(sealed_value)
        try:
            # Built once per item and field while the DEK lives (CachedDek.item_aad); get, not
            # [], for the item: a first open finds no AAD without raising.
            aad = dek.item_aads[kind][field].get(item_id)
        except (KeyError, TypeError, ValueError, AttributeError):
            # The DEK's first open of this kind and field, or parts that can never open.
            aad = None
        if aad is None:
            aad = _aad_on_miss(dek, kind, item_id, field)
        # Bytes slices, not memoryviews: AESGCM takes both, but decrypts views slower than
        # slicing costs (cryptography 50). A value shorter than MIN_SIZE whose header matched
        # gets a nonce under 8 bytes (ValueError) or less than a tag to open (InvalidTag).
        try:
            return dek.aead.decrypt(sealed_value[_NONCE], sealed_value[_CIPHERTEXT], aad)
        except (InvalidTag, ValueError):
            raise _invalid() from None

    def _dek_to_open(self, sealed_value: object) -> CachedDek:
        """The DEK to open `sealed_value` with when the last one does not do: from the cache,
        else the table and KMS; it becomes the keyring's last DEK. InvalidSealedValue if the
        value is no sealed value at all."""
        if type(sealed_value) is not bytes or len(sealed_value) < MIN_SIZE:
            raise _invalid()
        header = sealed_value[_HEADER]
        dek = self._cache.take_dek(self.org_id, header)
        if dek is None:
            dek = self._keyrings._dek_to_open(self.org_id, header)
        self._dek = dek
        return dek

    def open_text_field(self, sealed_value: bytes, *, kind: str, item_id: str, field: str) -> str:
        """open_field, decoded as UTF-8 (a value that is not UTF-8 is InvalidSealedValue)."""
        plaintext = self.open_field(sealed_value, kind=kind, item_id=item_id, field=field)
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            pass
        # Raised outside the handler: the decode error holds the plaintext and must not ride
        # along as __context__ into a log line.
        raise _invalid()

    def reseal_field(self, sealed_value: bytes, *, kind: str, item_id: str, field: str) -> bytes:
        """`sealed_value` sealed under the org's current DEK, for re-encryption after rotation.

        The plaintext is unchanged. A value already under the current DEK, or under a newer one
        (a rotation this process has not seen yet), is returned as it is, so a re-encryption run
        writes back only what moves forward and can be run again safely.
        """
        plaintext = self.open_field(sealed_value, kind=kind, item_id=item_id, field=field)
        current = self._keyrings._current_dek(self.org_id)
        if (sealed.version_of(sealed_value) or 0) >= current.version:
            return sealed_value
        return self.seal_field(plaintext, kind=kind, item_id=item_id, field=field)


class Keyrings:
    """Every org's keyring: KMS key life cycle, DEK creation and rotation, and `for_org`.

    Build one per process and keep it (its cache is what makes warm calls free of KMS calls).
    """

    def __init__(
        self,
        *,
        kms: KMSClient,
        dynamodb: DynamoDBClient,
        settings: Settings,
        cache: DekCache | None = None,
    ) -> None:
        self._kms = kms
        self._dynamodb = dynamodb
        self._settings = settings
        self._table = settings.table_name
        self.cache = cache if cache is not None else DekCache.from_settings(settings)

    def for_org(self, org_id: str) -> OrgKeyring:
        """The keyring that seals and opens `org_id`'s fields."""
        return OrgKeyring(self, org_id)

    def dek_in_use(self, org_id: str) -> DekInUse:
        """The org's current DEK version and when it became current, as stored (KeyringNotFound
        if it has no keyring). Warm processes may seal under the previous version until their
        cache's max age has passed since then."""
        org_id = validate_org_id(org_id)
        version = self._read_keyring(org_id).version
        item = self._get_item(org_id, _dek_sk(version))
        if not item or "S" not in item.get("created_at", {}):
            raise KeyringUnavailable("the keyring names a DEK version that is not stored")
        since = datetime.fromisoformat(item["created_at"]["S"].replace("Z", "+00:00"))
        return DekInUse(version=version, since=since)

    def kms_key_arn(self, org_id: str) -> str:
        """The ARN of the org's KMS key (for SSE-KMS of its backups); KeyringNotFound if none."""
        return self._read_keyring(validate_org_id(org_id)).kms_key_arn

    # ---- KMS key ------------------------------------------------------------------------------

    def create_org_key(self, org_id: str) -> str:
        """Create the org's customer-managed KMS key (rotation on, tagged, aliased); its ARN."""
        org_id = validate_org_id(org_id)
        alias = self._settings.org_key_alias_prefix + org_id
        try:
            created = self._kms.create_key(
                Description=f"Strongroom {self._settings.stage} key of {org_id}",
                KeyUsage="ENCRYPT_DECRYPT",
                KeySpec="SYMMETRIC_DEFAULT",
                Tags=[
                    {"TagKey": "strongroom:org_id", "TagValue": org_id},
                    {"TagKey": "strongroom:stage", "TagValue": self._settings.stage},
                ],
            )["KeyMetadata"]
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("KMS CreateKey", exc) from exc
        key_id = created["KeyId"]
        try:
            self._kms.enable_key_rotation(KeyId=key_id)
            self._kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        except (ClientError, BotoCoreError) as exc:
            # Nothing can find this key without its alias: schedule it away (best effort).
            with contextlib.suppress(ClientError, BotoCoreError):
                self._kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
            if _error_code(exc) == "AlreadyExistsException":
                raise KeyringConflict("the org already has a KMS key alias") from exc
            raise _unavailable("KMS key setup", exc) from exc
        return created["Arn"]

    def org_key_enabled(self, org_id: str) -> bool:
        """Whether the org's KMS key can still be used (False once disabled or shredded, or if
        there is none)."""
        alias = self._settings.org_key_alias_prefix + validate_org_id(org_id)
        try:
            metadata = self._kms.describe_key(KeyId=alias)["KeyMetadata"]
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "NotFoundException":
                return False
            raise _unavailable("KMS DescribeKey", exc) from exc
        return metadata["KeyState"] == "Enabled"

    def shred_org_key(self, org_id: str, *, pending_window_days: int) -> None:
        """Disable the org's KMS key now and schedule its deletion (crypto-shredding).

        Idempotent. Every wrapped DEK, and so every sealed value and SSE-KMS backup of the org,
        becomes unreadable; this process forgets the org's cached DEKs at once, other warm
        processes within the cache's max age.
        """
        org_id = validate_org_id(org_id)
        if not 7 <= pending_window_days <= 30:
            raise ValueError("pending_window_days must be 7 to 30")
        self.cache.shut_out(org_id)
        alias = self._settings.org_key_alias_prefix + org_id
        try:
            metadata = self._kms.describe_key(KeyId=alias)["KeyMetadata"]
            if metadata["KeyState"] == "PendingDeletion":
                return
            if metadata["KeyState"] != "Disabled":
                self._kms.disable_key(KeyId=metadata["KeyId"])
            self._kms.schedule_key_deletion(
                KeyId=metadata["KeyId"], PendingWindowInDays=pending_window_days
            )
        except (ClientError, BotoCoreError) as exc:
            if _error_code(exc) == "NotFoundException":
                raise KeyringNotFound("the org has no KMS key") from exc
            raise _unavailable("KMS key shredding", exc) from exc

    def discard_first_keyring(self, org_id: str) -> None:
        """Delete the keyring and first DEK of an org that never came to be (its key shredded):
        nothing is left pointing at the key. Idempotent."""
        org_id = validate_org_id(org_id)
        self.cache.shut_out(org_id)
        self._delete_items(org_id, [_KEYRING_SK, _dek_sk(1)])

    def discard_keyring(self, org_id: str) -> None:
        """Delete the keyring and every wrapped DEK of a deleted org, once its key is shredded.
        Idempotent; the keyring item goes last, so a retry still knows how many DEKs there are.
        """
        org_id = validate_org_id(org_id)
        self.cache.shut_out(org_id)
        try:
            versions = self._read_keyring(org_id).version
        except KeyringNotFound:
            return
        # One past the current version too: a rotation that wrote its DEK but lost the race to
        # move the keyring leaves that DEK behind.
        dek_keys = [_dek_sk(version) for version in range(1, versions + 2)]
        # A transaction holds at most 100 items.
        for start in range(0, len(dek_keys), 100):
            self._delete_items(org_id, dek_keys[start : start + 100])
        self._delete_items(org_id, [_KEYRING_SK])

    def _delete_items(self, org_id: str, sort_keys: list[str]) -> None:
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {"Delete": {"TableName": self._table, "Key": _key(org_id, sk)}}
                    for sk in sort_keys
                ],
                ClientRequestToken=secrets.token_hex(16),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("DynamoDB TransactWriteItems", exc) from exc

    # ---- DEKs ---------------------------------------------------------------------------------

    def create_keyring(self, org_id: str, *, kms_key_arn: str, now: datetime) -> OrgKeyring:
        """Store the org's first DEK (version 1) under `kms_key_arn`; KeyringConflict if the
        org already has a keyring."""
        org_id = validate_org_id(org_id)
        created_at = _iso_utc(now)
        if not isinstance(kms_key_arn, str) or not kms_key_arn.startswith("arn:"):
            raise ValueError("kms_key_arn must be a KMS key ARN")
        plaintext, wrapped = self._generate_dek(org_id, kms_key_arn)
        keyring_item: dict[str, AttributeValueTypeDef] = {
            "pk": {"S": org_id},
            "sk": {"S": _KEYRING_SK},
            "kms_key_arn": {"S": kms_key_arn},
            "current_version": {"N": "1"},
        }
        try:
            self._dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": keyring_item,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    self._put_dek_item(org_id, 1, wrapped, created_at),
                ],
                # botocore's retries of a write whose answer was lost are then idempotent.
                ClientRequestToken=secrets.token_hex(16),
            )
        except (ClientError, BotoCoreError) as exc:
            if _lost_race(exc):
                raise KeyringConflict("the org already has a keyring") from exc
            raise _unavailable("DynamoDB TransactWriteItems", exc) from exc
        self._remember(org_id, CurrentDek(1, kms_key_arn), plaintext)
        return self.for_org(org_id)

    def rotate_dek(
        self,
        org_id: str,
        *,
        now: datetime,
        also: Callable[[int], Sequence[TransactWriteItemTypeDef]] | None = None,
    ) -> int:
        """Make DEK version n+1 the org's current one; its number.

        Values sealed under older versions still open; re-seal them with
        `OrgKeyring.reseal_field`. A rotation that loses to a concurrent one retries on top of it.
        `also(new_version)` gives writes that commit in the rotation's own transaction (its audit
        entry), or not at all.
        """
        org_id = validate_org_id(org_id)
        created_at = _iso_utc(now)
        for _ in range(_ROTATION_ATTEMPTS):
            current = self._read_keyring(org_id)
            new_version = current.version + 1
            if new_version > sealed.MAX_DEK_VERSION:
                raise KeyringConflict("the keyring has no DEK version left")
            plaintext, wrapped = self._generate_dek(org_id, current.kms_key_arn)
            try:
                self._dynamodb.transact_write_items(
                    TransactItems=[
                        self._put_dek_item(org_id, new_version, wrapped, created_at),
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": {"pk": {"S": org_id}, "sk": {"S": _KEYRING_SK}},
                                "UpdateExpression": "SET current_version = :new",
                                "ConditionExpression": "current_version = :old",
                                "ExpressionAttributeValues": {
                                    ":new": {"N": str(new_version)},
                                    ":old": {"N": str(current.version)},
                                },
                            }
                        },
                        *(also(new_version) if also is not None else ()),
                    ],
                    ClientRequestToken=secrets.token_hex(16),
                )
            except (ClientError, BotoCoreError) as exc:
                # The DEK's put and the keyring's move are the first two items.
                if _lost_race(exc, own_items=2):
                    continue
                raise _unavailable("DynamoDB TransactWriteItems", exc) from exc
            self._remember(org_id, CurrentDek(new_version, current.kms_key_arn), plaintext)
            return new_version
        raise KeyringConflict("rotation kept losing to concurrent rotations")

    # ---- internals used by OrgKeyring ---------------------------------------------------------

    def _current_dek(self, org_id: str) -> CachedDek:
        current = self.cache.take_current(org_id)
        if current is None:
            current = self._read_keyring(org_id)
            self.cache.put_current(org_id, current)
        dek = self.cache.take_dek(org_id, current.header)
        if dek is None:
            wrapped = self._read_wrapped_dek(org_id, current.version)
            if wrapped is None:
                raise KeyringUnavailable("the keyring names a DEK version that is not stored")
            dek = self._unwrap(org_id, current.version, current.kms_key_arn, wrapped)
        return dek

    def _dek_to_open(self, org_id: str, header: bytes) -> CachedDek:
        """The DEK a sealed value's header names, from the table and KMS; InvalidSealedValue
        if the format is unknown or the org has no such version (the value cannot be ours)."""
        version = int.from_bytes(header[1:], "big")
        if header[0] != sealed.FORMAT_V1 or not 1 <= version <= sealed.MAX_DEK_VERSION:
            raise _invalid()
        try:
            response = self._dynamodb.transact_get_items(
                TransactItems=[
                    {"Get": {"TableName": self._table, "Key": _key(org_id, _KEYRING_SK)}},
                    {"Get": {"TableName": self._table, "Key": _key(org_id, _dek_sk(version))}},
                ]
            )
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("DynamoDB TransactGetItems", exc) from exc
        keyring_item, dek_item = (r.get("Item") for r in response["Responses"])
        if not keyring_item or not dek_item:
            raise _invalid()
        current = _parse_keyring(keyring_item)
        return self._unwrap(org_id, version, current.kms_key_arn, _parse_wrapped(dek_item))

    def _read_keyring(self, org_id: str) -> CurrentDek:
        item = self._get_item(org_id, _KEYRING_SK)
        if not item:
            raise KeyringNotFound("the org has no keyring")
        return _parse_keyring(item)

    def _read_wrapped_dek(self, org_id: str, version: int) -> bytes | None:
        item = self._get_item(org_id, _dek_sk(version))
        return _parse_wrapped(item) if item else None

    def _get_item(self, org_id: str, sk: str) -> dict[str, AttributeValueTypeDef] | None:
        try:
            item = self._dynamodb.get_item(
                TableName=self._table, Key=_key(org_id, sk), ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("DynamoDB GetItem", exc) from exc
        return item or None

    def _generate_dek(self, org_id: str, kms_key_arn: str) -> tuple[bytes, bytes]:
        try:
            response = self._kms.generate_data_key(
                KeyId=kms_key_arn, KeySpec="AES_256", EncryptionContext={"org_id": org_id}
            )
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("KMS GenerateDataKey", exc) from exc
        plaintext, wrapped = response.get("Plaintext"), response.get("CiphertextBlob")
        if not isinstance(plaintext, bytes) or len(plaintext) != _DEK_SIZE or not wrapped:
            raise KeyringUnavailable("KMS GenerateDataKey returned no usable key")
        return plaintext, wrapped

    def _unwrap(self, org_id: str, version: int, kms_key_arn: str, wrapped: bytes) -> CachedDek:
        try:
            plaintext = self._kms.decrypt(
                CiphertextBlob=wrapped,
                KeyId=kms_key_arn,
                EncryptionContext={"org_id": org_id},
                EncryptionAlgorithm="SYMMETRIC_DEFAULT",
            ).get("Plaintext")
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable("KMS Decrypt", exc) from exc
        if not isinstance(plaintext, bytes) or len(plaintext) != _DEK_SIZE:
            raise KeyringUnavailable("KMS Decrypt returned no usable key")
        return self.cache.put_dek(org_id, version, plaintext)

    def _remember(self, org_id: str, current: CurrentDek, plaintext: bytes) -> None:
        self.cache.put_dek(org_id, current.version, plaintext)
        self.cache.put_current(org_id, current)

    def _put_dek_item(
        self, org_id: str, version: int, wrapped: bytes, created_at: str
    ) -> TransactWriteItemTypeDef:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": org_id},
                    "sk": {"S": _dek_sk(version)},
                    "wrapped": {"B": wrapped},
                    "version": {"N": str(version)},
                    "created_at": {"S": created_at},
                },
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }


def _key(org_id: str, sk: str) -> dict[str, AttributeValueTypeDef]:
    return {"pk": {"S": org_id}, "sk": {"S": sk}}


def _dek_sk(version: int) -> str:
    return f"DEK#{version:06d}"


def _parse_keyring(item: dict[str, AttributeValueTypeDef]) -> CurrentDek:
    try:
        version = int(item["current_version"]["N"])
        kms_key_arn = item["kms_key_arn"]["S"]
    except (KeyError, ValueError):
        raise KeyringUnavailable("the keyring item is malformed") from None
    if not 1 <= version <= sealed.MAX_DEK_VERSION or not kms_key_arn:
        raise KeyringUnavailable("the keyring item is malformed")
    return CurrentDek(version, kms_key_arn)


def _parse_wrapped(item: dict[str, AttributeValueTypeDef]) -> bytes:
    wrapped = item.get("wrapped", {}).get("B")
    if not isinstance(wrapped, bytes) or not wrapped:
        raise KeyringUnavailable("the DEK item is malformed")
    return wrapped


def _iso_utc(now: datetime) -> str:
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _lost_race(exc: Exception, *, own_items: int | None = None) -> bool:
    """A transaction cancelled only because another writer got there first. With `own_items`,
    only the transaction's first `own_items` items (the keyring's) may have lost; a failure of
    a later one (a write the caller added) is not a race this code can win by retrying."""
    if not isinstance(exc, ClientError) or _error_code(exc) != "TransactionCanceledException":
        return False
    reasons = [str(r.get("Code")) for r in exc.response.get("CancellationReasons", [])]
    if own_items is not None and set(reasons[own_items:]) - {"None"}:
        return False
    codes = set(reasons)
    return bool(codes & _LOST_RACE_CODES) and codes <= _LOST_RACE_CODES | {"None"}


def _unavailable(operation: str, exc: Exception) -> KeyringUnavailable:
    reason = _error_code(exc) or type(exc).__name__
    return KeyringUnavailable(f"{operation} failed ({reason})")
