"""The sealed-value format, version 1.

A sealed value is the lowercase hex text of

    0x01 | DEK version (4 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM ciphertext + tag (16)

and its AAD is

    header (the first 5 bytes above) | lp(org_id) | lp(kind) | lp(item_id) | lp(field)

where lp(s) is one byte holding len(s) followed by s. Every part is ASCII of 1 to 127
characters, so the length byte is also the byte count and ("ab", "c") never reads as ("a", "bc").
The header is in the AAD, so the format and DEK version of a value cannot be changed either.

Hex rather than base64: it is the cheapest text to decode on the open path and the cheapest to
hold to one canonical form (binascii takes uppercase too, so uppercase is refused), which makes
every change to the text fail rather than decode to the same bytes.
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

# The length byte of every possible part, as a character, so a whole AAD is built as one string.
_LENGTH_CHARS = tuple(chr(n) for n in range(MAX_PART_LENGTH + 1))


def header(dek_version: int) -> bytes:
    """The first bytes of every value sealed under this DEK version."""
    if not 1 <= dek_version <= MAX_DEK_VERSION:
        raise ValueError("DEK version out of range")
    return bytes((FORMAT_V1,)) + dek_version.to_bytes(4, "big")


def aad_prefix(header_bytes: bytes, org_id: str) -> bytes:
    """The part of the AAD fixed by the DEK version and the org."""
    return header_bytes + (_LENGTH_CHARS[len(org_id)] + org_id).encode("ascii")


def field_context_aad(kind: str, item_id: str, field: str) -> bytes:
    """lp(kind) | lp(item_id) | lp(field). Raises TypeError, ValueError or IndexError for parts
    that seal_field refuses (not str, not ASCII, longer than 127), so the open path can turn them
    into its one opaque error without checking each part first: this runs on every open."""
    return (
        _LENGTH_CHARS[len(kind)]
        + kind
        + _LENGTH_CHARS[len(item_id)]
        + item_id
        + _LENGTH_CHARS[len(field)]
        + field
    ).encode("ascii")


def checked_field_context_aad(kind: str, item_id: str, field: str) -> bytes:
    """field_context_aad, refusing with TypeError or ValueError what it must not be given."""
    for name, part in (("kind", kind), ("item_id", item_id), ("field", field)):
        if not isinstance(part, str):
            raise TypeError(f"{name} must be a str")
        if not (1 <= len(part) <= MAX_PART_LENGTH and part.isascii() and part.isprintable()):
            raise ValueError(f"{name} must be 1 to {MAX_PART_LENGTH} printable ASCII characters")
    return field_context_aad(kind, item_id, field)
