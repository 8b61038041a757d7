"""Request and response bodies of the credential_store routes.

Every model's schema is built when first used (`defer_build`), not at import: a cold start
builds only what its first request's route needs.
"""

from __future__ import annotations

import unicodedata
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
)

from strongroom.audit.events import Outcome
from strongroom.oauth import ConnectionStatus
from strongroom.roles import Role

# A name people read: no control characters, line or paragraph separators, or bidirectional
# overrides or marks (which make a name display as something else); emoji and their joiners
# are fine. Escapes that both pydantic's (Rust) and OpenAPI clients' (ECMA-262) regular
# expressions read.
_DISPLAY_NAME = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]+$"
# Nothing a reader sees: format characters (zero-width space, word joiner, BOM, soft hyphen),
# combining marks with nothing to combine with, spaces, private-use code points, and code points
# no Unicode version assigns. Not those merely unassigned so far: which they are depends on the
# interpreter's Unicode version (a new emoji would be refused on one Python, not on Lambda's).
_UNSEEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Mn", "Me", "Zs", "Zl", "Zp"})
# Letters and symbols that render as blanks.
_BLANK_GLYPHS: Final = frozenset("\u115f\u1160\u2800\u3164\uffa0")


def _never_assigned(c: str) -> bool:
    """Noncharacters, and planes 4 to 13: unassigned in every Unicode version."""
    point = ord(c)
    return 0xFDD0 <= point <= 0xFDEF or point & 0xFFFE == 0xFFFE or 0x40000 <= point <= 0xDFFFF


def _has_a_visible_character(name: str) -> str:
    if not any(
        unicodedata.category(c) not in _UNSEEN_CATEGORIES
        and c not in _BLANK_GLYPHS
        and not _never_assigned(c)
        for c in name
    ):
        raise ValueError("must contain a visible character")
    return name


OrgName = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=_DISPLAY_NAME),
    AfterValidator(_has_a_visible_character),
]


class Request(BaseModel):
    """Request bodies refuse unknown fields (422)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class ResponseBody(BaseModel):
    """Response bodies."""

    model_config = ConfigDict(defer_build=True)


class CreateOrg(Request):
    name: OrgName


class SetMemberRole(Request):
    role: Role


class OrgCreated(ResponseBody):
    org_id: str


class Org(ResponseBody):
    org_id: str
    name: str
    plan: str
    created_at: str
    created_by: str
    your_role: Role
    # Set while a deletion that stopped (for time or a fault) waits for an owner's next DELETE or
    # the scheduled sweep, which carries it on by itself.
    deletion_started_at: str | None = None


class OrgDeleting(ResponseBody):
    """A deletion that stopped for time; an owner's next DELETE, or the sweep, continues it."""

    status: Literal["deleting"] = "deleting"


class Member(ResponseBody):
    user_id: str
    role: Role
    added_at: str
    added_by: str


class Members(ResponseBody):
    members: list[Member]
    next_cursor: str | None = Field(default=None)


# ---- connections ------------------------------------------------------------------------------

REDACTED: Final = "[REDACTED]"


class Provider(StrEnum):
    OKTA = "okta"
    ENTRA = "entra"
    AUTH0 = "auth0"
    OAUTH2 = "oauth2"


class AuthMethod(StrEnum):
    API_TOKEN = "api_token"  # noqa: S105 (a method name, not a secret)
    CLIENT_CREDENTIALS = "client_credentials"
    PRIVATE_KEY_JWT = "private_key_jwt"
    AUTHORIZATION_CODE = "authorization_code"


class SecretRequest(BaseModel):
    """Bodies that carry secrets: unknown fields refused, and no input ever copied into errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, hide_input_in_errors=True, defer_build=True
    )


ConnectionName = OrgName
# Printable ASCII without spaces: client ids, key ids and secrets as providers issue them.
ClientId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]
KeyId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]
# At least 8 characters: the fingerprint shows the last 4, which must not be most of it.
SecretText = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{8,4096}$")]
# PEM blocks have newlines and spaces; JWKs are JSON. The key itself is checked by parsing.
PrivateKeyText = Annotated[str, StringConstraints(min_length=1, max_length=16384)]
# RFC 6749 scope-token: printable ASCII except space, '"' and '\'.
Scope = Annotated[str, StringConstraints(pattern=r"^[\x21\x23-\x5b\x5d-\x7e]{1,256}$")]
HostText = Annotated[str, StringConstraints(min_length=1, max_length=253)]
UrlText = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
ScheduleText = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class ApiTokenAuth(SecretRequest):
    method: Literal[AuthMethod.API_TOKEN]
    token: SecretText = Field(repr=False)


class ClientCredentialsAuth(SecretRequest):
    method: Literal[AuthMethod.CLIENT_CREDENTIALS]
    client_id: ClientId
    client_secret: SecretText = Field(repr=False)


class PrivateKeyJwtAuth(SecretRequest):
    method: Literal[AuthMethod.PRIVATE_KEY_JWT]
    client_id: ClientId
    private_key: PrivateKeyText = Field(repr=False)
    key_id: KeyId


class AuthorizationCodeAuth(SecretRequest):
    method: Literal[AuthMethod.AUTHORIZATION_CODE]
    client_id: ClientId
    client_secret: SecretText = Field(repr=False)


def _auth_method(value: Any) -> str | None:
    method = value.get("method") if isinstance(value, dict) else getattr(value, "method", None)
    return str(method) if method is not None else None


# A callable discriminator so that an unknown method is reported without echoing it.
Auth = Annotated[
    Annotated[ApiTokenAuth, Tag(AuthMethod.API_TOKEN)]
    | Annotated[ClientCredentialsAuth, Tag(AuthMethod.CLIENT_CREDENTIALS)]
    | Annotated[PrivateKeyJwtAuth, Tag(AuthMethod.PRIVATE_KEY_JWT)]
    | Annotated[AuthorizationCodeAuth, Tag(AuthMethod.AUTHORIZATION_CODE)],
    Discriminator(
        _auth_method,
        custom_error_type="invalid_auth_method",
        custom_error_message=(
            "method must be api_token, client_credentials, private_key_jwt or authorization_code"
        ),
    ),
]


class CreateConnection(SecretRequest):
    name: ConnectionName
    provider: Provider
    domain: HostText | None = None
    tenant_id: HostText | None = None
    authorization_endpoint: UrlText | None = None
    token_endpoint: UrlText | None = None
    revocation_endpoint: UrlText | None = None
    scopes: list[Scope] = Field(default_factory=list, max_length=64)
    auth: Auth
    schedule: ScheduleText


class ReplaceCredentials(SecretRequest):
    auth: Auth


class ConnectionCreated(ResponseBody):
    connection_id: str


class Credential(ResponseBody):
    """One stored secret as the API shows it: never the value, only what identifies it."""

    field: str
    value: Literal["[REDACTED]"] = REDACTED
    # Last four characters of a token or client secret; `sha256:<hex>` of a private key's
    # public SubjectPublicKeyInfo (DER).
    fingerprint: str
    created_at: str


class ConnectionAuth(ResponseBody):
    method: AuthMethod
    client_id: str | None = None
    key_id: str | None = None
    key_algorithm: str | None = None


class Connection(ResponseBody):
    connection_id: str
    name: str
    provider: Provider
    domain: str | None = None
    tenant_id: str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    revocation_endpoint: str | None = None
    scopes: list[str]
    schedule: str
    auth: ConnectionAuth
    # active; pending_authorization (an authorization_code connection not yet through OAuth);
    # needs_reauth (the provider refused the grant: run the OAuth flow again).
    status: ConnectionStatus
    credentials: list[Credential]
    created_at: str
    created_by: str
    updated_at: str


class Connections(ResponseBody):
    connections: list[Connection]
    next_cursor: str | None = Field(default=None)


# ---- audit log --------------------------------------------------------------------------------


class AuditLogEvent(ResponseBody):
    """One stored audit event as its org's admins read it, under its stored field names.

    Only what the event holds: its details were redacted when it was written.
    """

    seq: int
    occurred_at: str
    actor: str
    action: str
    target_kind: str | None = None
    target_id: str | None = None
    outcome: Outcome
    request_id: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


class AuditLogPage(ResponseBody):
    events: list[AuditLogEvent]
    next_cursor: str | None = Field(default=None)
    # Seqs in this page's range that are absent or not valid events: a gap shows as a gap, not
    # as a shorter page (the chain's verifier says what happened to them).
    missing: list[int]
    # Seqs of listed events edited since written: their stored hash is not their content's, or
    # not the one the chain head or the event above them names, or the first does not start from
    # genesis, or one above the head does not follow it. `strongroom audit-verify` checks all.
    tampered: list[int]
