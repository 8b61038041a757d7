"""The sealed-value format, version 1.

A sealed value is the bytes (stored as a DynamoDB Binary attribute)

    0x01 | DEK version (4 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16)

and its AAD is

    header (the first 5 bytes above) | org_id | 0x00 | kind | 0x00 | field | 0x00 | item_id

Org ids are validated and seal_field takes only printable ASCII parts, so no part ever holds the
0x00 separator: ("ab", "c") never reads as ("a", "bc"), and a part holding 0x00 on the open path
adds a separator no sealed value has. The header is in the AAD, so the format and DEK version of
a value cannot be changed either. The item id comes last so that everything before it, fixed by
the DEK, the org, the kind and the field, can be encoded once and reused (`field_aad_prefix`).

Raw bytes rather than text: there is one spelling of each value, so nothing but the bytes GCM
authenticates needs checking, and nothing needs decoding.
"""

from __future__ import annotations

FORMAT_V1 = 1
HEADER_SIZE = 5
NONCE_SIZE = 12
TAG_SIZE = 16
NONCE_END = HEADER_SIZE + NONCE_SIZE
MIN_SIZE = HEADER_SIZE + NONCE_SIZE + TAG_SIZE
# The table's sort key spells the version with 6 digits.
MAX_DEK_VERSION = 999_999
MAX_PART_LENGTH = 127
SEPARATOR = "\x00"


def header(dek_version: int) -> bytes:
    """The first bytes of every value sealed under this DEK version."""
    if not 1 <= dek_version <= MAX_DEK_VERSION:
        raise ValueError("DEK version out of range")
    return bytes((FORMAT_V1,)) + dek_version.to_bytes(4, "big")


def version_of(sealed_value: bytes) -> int | None:
    """The DEK version a sealed value's header names, or None if it has no such header."""
    if len(sealed_value) < HEADER_SIZE or sealed_value[0] != FORMAT_V1:
        return None
    return int.from_bytes(sealed_value[1:HEADER_SIZE], "big")


def aad_prefix(header_bytes: bytes, org_id: str) -> bytes:
    """The part of the AAD fixed by the DEK version and the org."""
    return header_bytes + (org_id + SEPARATOR).encode("ascii")


def check_part(name: str, part: object) -> str:
    """`part` if seal_field may bind it (1 to 127 printable ASCII characters), else TypeError
    (not a str) or ValueError."""
    if not isinstance(part, str):
        raise TypeError(f"{name} must be a str")
    if not (1 <= len(part) <= MAX_PART_LENGTH and part.isascii() and part.isprintable()):
        raise ValueError(f"{name} must be 1 to {MAX_PART_LENGTH} printable ASCII characters")
    return part


def field_aad_prefix(aad_prefix_bytes: bytes, kind: str, field: str) -> bytes:
    """aad_prefix | kind | 0x00 | field | 0x00: the AAD up to the item id. Checks both parts
    (TypeError or ValueError), so what a DEK caches is only ever what seal_field could bind."""
    check_part("kind", kind)
    check_part("field", field)
    return aad_prefix_bytes + (kind + SEPARATOR + field + SEPARATOR).encode("ascii")


def aad(dek_version: int, org_id: str, *, kind: str, item_id: str, field: str) -> bytes:
    """The whole AAD of a value, as seal_field binds it (the reference spelling of the format)."""
    prefix = field_aad_prefix(aad_prefix(header(dek_version), org_id), kind, field)
    return prefix + check_part("item_id", item_id).encode("ascii")
