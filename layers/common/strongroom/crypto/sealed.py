"""The sealed-value format, version 1.

A sealed value is the lowercase hex text of

    0x01 | DEK version (4 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16)

and its AAD is

    header (the first 5 bytes above) | org_id | 0x00 | kind | 0x00 | item_id | 0x00 | field

Org ids are validated and seal_field takes only printable ASCII parts, so no part ever holds the
0x00 separator: ("ab", "c") never reads as ("a", "bc"), and a part holding 0x00 on the open path
adds a separator no sealed value has. The header is in the AAD, so the format and DEK version of
a value cannot be changed either.

Hex rather than base64: binascii decodes it several times faster, and its one non-canonical
spelling (uppercase a-f, which unhexlify also takes) is refused, so every change to the text
fails rather than decode to the same bytes.
"""

from __future__ import annotations

FORMAT_V1 = 1
HEADER_SIZE = 5
NONCE_SIZE = 12
TAG_SIZE = 16
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


def aad_prefix(header_bytes: bytes, org_id: str) -> bytes:
    """The part of the AAD fixed by the DEK version and the org."""
    return header_bytes + (org_id + SEPARATOR).encode("ascii")


def field_context_aad(kind: str, item_id: str, field: str) -> bytes:
    """kind | 0x00 | item_id | 0x00 | field. Raises TypeError (a part is not a str) or
    ValueError (not ASCII), so the open path can turn them into its one opaque error without
    checking each part first: this runs on every open."""
    return SEPARATOR.join((kind, item_id, field)).encode("ascii")


def checked_field_context_aad(kind: str, item_id: str, field: str) -> bytes:
    """field_context_aad, refusing with TypeError or ValueError what it must not be given."""
    for name, part in (("kind", kind), ("item_id", item_id), ("field", field)):
        if not isinstance(part, str):
            raise TypeError(f"{name} must be a str")
        if not (1 <= len(part) <= MAX_PART_LENGTH and part.isascii() and part.isprintable()):
            raise ValueError(f"{name} must be 1 to {MAX_PART_LENGTH} printable ASCII characters")
    return field_context_aad(kind, item_id, field)
