"""Audit events: what a caller records, what is stored, and the hash that chains them.

An event is stored as canonical JSON (sorted keys, no spaces, UTF-8, no floats). Its `hash` is
the SHA-256 of the canonical JSON of every other field, and the next event of the org carries it
as `prev_hash`; the first event's `prev_hash` is 64 zeros. Hashes are computed over the JSON
document itself, not over a model round trip, so the verifier recomputes exactly what was
hashed.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

GENESIS_HASH = "0" * 64
FORMAT: Final = 1
_MAX_DETAILS_BYTES = 8192
_MAX_DEPTH = 4
_MAX_KEY_LENGTH = 64
# JSON consumers (JavaScript among them) hold integers exactly only up to 2**53.
_MAX_SAFE_INTEGER = 2**53 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A pending entry's id: milliseconds since the epoch (13 digits, so ids sort by time) and 64
# random bits.
ENTRY_ID_PATTERN: Final = r"^[0-9]{13}-[0-9a-f]{16}$"


class AuditAction(enum.StrEnum):
    """The audited actions of DESIGN.md. Other `noun.verb` names are accepted as well."""

    ORG_CREATE = "org.create"
    ORG_DELETE = "org.delete"
    MEMBER_ADD = "member.add"
    MEMBER_CHANGE_ROLE = "member.change_role"
    MEMBER_REMOVE = "member.remove"
    CONNECTION_CREATE = "connection.create"
    CONNECTION_DELETE = "connection.delete"
    CREDENTIAL_WRITE = "credential.write"
    CREDENTIAL_ROTATE = "credential.rotate"
    CREDENTIAL_DELETE = "credential.delete"
    CREDENTIAL_DECRYPT = "credential.decrypt"
    CREDENTIAL_USE = "credential.use"
    CREDENTIAL_REVOKE = "credential.revoke"
    CREDENTIAL_RESEAL = "credential.reseal"
    DEK_ROTATE = "dek.rotate"
    CONNECTION_NEEDS_REAUTH = "connection.needs_reauth"
    OAUTH_AUTHORIZE = "oauth.authorize"
    OAUTH_CONNECT = "oauth.connect"
    BACKUP_START = "backup.start"
    BACKUP_COMPLETE = "backup.complete"
    BACKUP_FAIL = "backup.fail"
    DOWNLOAD_URL_ISSUE = "download_url.issue"
    WEBHOOK_EFFECT = "webhook.effect"
    BILLING_CHECKOUT = "billing.checkout"


Outcome = Literal["success", "failure", "denied"]

_Text = Annotated[str, Field(min_length=1, max_length=256)]
_Action = Annotated[str, Field(pattern=r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$", max_length=64)]
_Token = Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,200}$")]
_Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of a JSON value: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(document: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of an event document without its `hash` field.

    ValueError (or RecursionError) if the document has no canonical JSON: read documents pass
    through `objects.parse_event_document`, which refuses those.
    """
    unhashed = {name: value for name, value in document.items() if name != "hash"}
    return hashlib.sha256(canonical_json(unhashed)).hexdigest()


_HASH_TEXT = re.compile(r"[0-9a-f]{64}")


def same_hash(claimed: object, expected: str) -> bool:
    """Whether `claimed` (read from storage, so anything) is the hash `expected`, compared in
    constant time; a value that is not a hash's hex text is simply not it."""
    return (
        isinstance(claimed, str)
        and _HASH_TEXT.fullmatch(claimed) is not None
        and _HASH_TEXT.fullmatch(expected) is not None
        and hmac.compare_digest(claimed, expected)
    )


def _check_json(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError(f"details nest deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INTEGER:
            raise ValueError("details integers must be within +-2**53")
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not 0 < len(key) <= _MAX_KEY_LENGTH:
                raise ValueError(f"details keys must be strings of 1-{_MAX_KEY_LENGTH} characters")
            _check_json(item, depth + 1)
        return
    # Floats have no single canonical text; bytes, sets and objects are not JSON.
    raise ValueError("details hold only strings, integers, booleans, null, lists and objects")


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    _check_json(details, 1)
    if len(canonical_json(details)) > _MAX_DETAILS_BYTES:
        raise ValueError(f"details exceed {_MAX_DETAILS_BYTES} bytes")
    return details


def _check_text(value: str | None) -> str | None:
    if value is not None and _CONTROL.search(value):
        raise ValueError("control characters are not allowed")
    return value


class AuditEntry(BaseModel):
    """What a caller records: who did what to which item, for which request, and how it went.

    `actor` is the JWT `sub` of the caller, or `system:<component>` for scheduled work and
    webhooks. `details` is passed through the layer's redaction before it is stored, and holds
    only JSON strings, integers, booleans, null, lists and objects.
    """

    # Built when first used (AuditEvent too): only requests that audit or read the log need it.
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )

    actor: _Text
    action: _Action
    request_id: _Token
    outcome: Outcome
    target_kind: Annotated[str, Field(pattern=r"^[a-z][a-z_]{0,31}$")] | None = None
    target_id: _Token | None = None
    details: dict[str, Any] = Field(default_factory=dict)

    _no_control = field_validator("actor")(_check_text)
    _json_details = field_validator("details")(_check_details)


class AuditEvent(AuditEntry):
    """A stored event: the entry, its org, position and time, and the chain hashes.

    `entry_id` names the pending entry an event was recorded as, together with its change
    (`AuditLog.prepare`), or, for an event appended directly, that append: a writer tells its
    own event from another's by it. Events stored before direct appends carried one omit it.
    """

    format: Literal[1] = FORMAT
    org_id: Annotated[str, Field(pattern=r"^org_[a-z2-7]{26}$")]
    seq: Annotated[int, Field(ge=1)]
    occurred_at: datetime
    prev_hash: _Hash
    hash: _Hash
    entry_id: Annotated[str, Field(pattern=ENTRY_ID_PATTERN)] | None = None

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("occurred_at must be timezone-aware")
        try:
            return value.astimezone(UTC)
        except OverflowError:  # read from storage: 0001-01-01T00:00:00+01:00 has no UTC time
            raise ValueError("occurred_at is out of range") from None

    @field_serializer("occurred_at")
    def _iso(self, value: datetime) -> str:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def document(self) -> dict[str, Any]:
        """The stored JSON document (what `hash` and the next `prev_hash` are computed over)."""
        return self.model_dump(mode="json", exclude=None if self.entry_id else {"entry_id"})


def seal_event(
    entry: AuditEntry,
    *,
    org_id: str,
    seq: int,
    prev_hash: str,
    occurred_at: datetime,
    details: dict[str, Any],
    entry_id: str | None = None,
) -> AuditEvent:
    """The event `entry` becomes at position `seq` after `prev_hash`, with its own hash.

    Raises pydantic's ValidationError (inputs hidden) if a field is invalid.
    """
    fields = entry.model_dump()
    fields.update(
        details=details,
        org_id=org_id,
        seq=seq,
        occurred_at=occurred_at,
        prev_hash=prev_hash,
        hash=GENESIS_HASH,
        entry_id=entry_id,
    )
    document = AuditEvent.model_validate(fields).document()
    document["hash"] = event_hash(document)
    return AuditEvent.model_validate(document)
