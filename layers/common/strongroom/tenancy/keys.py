"""Org ids, kinds, item ids and the table keys built from them.

Tenant items:   pk = "<org_id>"          sk = "<KIND>#<item_id>" or "<KIND>" for a singleton
                gsi1pk = "<org_id>#<partition>"   gsi1sk = "<sort>"
Platform items: pk = "<KIND>#<item_id>"  sk = "<KIND>"

Kinds are upper case, so a platform pk can never start with `org_`, and ids may not hold `#`,
so no input can move a key into another kind, another item or another org's partition.
"""

from __future__ import annotations

import base64
import re
import secrets

from strongroom.tenancy.exceptions import InvalidKey, InvalidOrgId

_ORG_ID = re.compile(r"org_[a-z2-7]{26}")
_KIND = re.compile(r"[A-Z][A-Z0-9_]{0,31}")
# Visible ASCII except `#`, the key separator: room for JWT subjects such as `auth0|abc`.
_ITEM_ID = re.compile(r"[\x21\x22\x24-\x7e]{1,200}")
# Index values are composed by our code ("CONN#<id>", timestamps): visible ASCII.
_INDEX_VALUE = re.compile(r"[\x21-\x7e]{1,512}")
_ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

SEPARATOR = "#"
# Attributes the table itself gives meaning to; callers never read or write them directly.
KEY_ATTRIBUTES = frozenset({"pk", "sk", "gsi1pk", "gsi1sk", "expires_at"})
# Sort keys of each org owned by strongroom.crypto (`KEYRING`, `DEK#<version>`).
RESERVED_TENANT_KINDS = frozenset({"KEYRING", "DEK"})


def new_org_id() -> str:
    """A fresh org id: `org_` and 26 lowercase base32 characters (128 random bits)."""
    return "org_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def validate_org_id(org_id: object) -> str:
    """`org_id` if it is `org_` and 26 lowercase base32 characters, else InvalidOrgId."""
    if not isinstance(org_id, str) or _ORG_ID.fullmatch(org_id) is None:
        raise InvalidOrgId("org id is malformed")
    return org_id


def validate_kind(kind: object, *, tenant: bool) -> str:
    """`kind` if it is an upper-case word; tenant kinds owned by crypto are refused."""
    if not isinstance(kind, str) or _KIND.fullmatch(kind) is None:
        raise InvalidKey("kind must be an upper-case word (A-Z, 0-9, _)")
    if tenant and kind in RESERVED_TENANT_KINDS:
        raise InvalidKey("kind is reserved")
    return kind


def validate_item_id(item_id: object) -> str:
    """`item_id` if it is 1-200 visible ASCII characters without `#`."""
    if not isinstance(item_id, str) or _ITEM_ID.fullmatch(item_id) is None:
        raise InvalidKey("item id must be 1-200 visible ASCII characters without '#'")
    return item_id


def validate_index_value(value: object) -> str:
    """`value` if it is 1-512 visible ASCII characters (a gsi1 partition or sort value)."""
    if not isinstance(value, str) or _INDEX_VALUE.fullmatch(value) is None:
        raise InvalidKey("index values must be 1-512 visible ASCII characters")
    return value


def validate_attribute_name(name: object) -> str:
    """`name` if it is a snake_case attribute name that the table does not reserve."""
    if not isinstance(name, str) or _ATTRIBUTE_NAME.fullmatch(name) is None:
        raise InvalidKey("attribute names must be snake_case (a-z, 0-9, _), at most 64 long")
    if name in KEY_ATTRIBUTES:
        raise InvalidKey("attribute name is reserved by the table")
    return name


def tenant_sort_key(kind: str, item_id: str | None) -> str:
    """`<KIND>#<item_id>`, or the bare kind for a singleton (item_id None)."""
    kind = validate_kind(kind, tenant=True)
    if item_id is None:
        return kind
    return kind + SEPARATOR + validate_item_id(item_id)


def tenant_kind_prefix(kind: str) -> str:
    """The sort key prefix shared by every item of `kind` (singletons excluded)."""
    return validate_kind(kind, tenant=True) + SEPARATOR


def tenant_index_partition(org_id: str, partition: str) -> str:
    """The gsi1pk of an org's index partition: always under the org's own prefix."""
    return validate_org_id(org_id) + SEPARATOR + validate_index_value(partition)


def platform_key(kind: str, item_id: str) -> tuple[str, str]:
    """(pk, sk) of a platform item."""
    kind = validate_kind(kind, tenant=False)
    return kind + SEPARATOR + validate_item_id(item_id), kind


def split_sort_key(sk: str) -> tuple[str, str | None]:
    """(kind, item_id) of a sort key built by `tenant_sort_key`."""
    kind, separator, item_id = sk.partition(SEPARATOR)
    return kind, (item_id if separator else None)
