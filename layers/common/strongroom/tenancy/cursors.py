"""Opaque pagination cursors, bound to the org and the listing that issued them.

A cursor carries DynamoDB's LastEvaluatedKey. Before it is followed, its org must be the caller's
org and its key must lie in the listed partition and kind, so a cursor from org A cannot start a
read in org B's partition. It needs no MAC: a forged cursor can only move the start within the
caller's own listing, which the caller may read anyway.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from strongroom.tenancy.exceptions import InvalidCursor

_FORMAT = 1
_MAX_LENGTH = 4096


def encode_cursor(*, org_id: str, listing: str, key: Mapping[str, Any]) -> str:
    """A cursor continuing `listing` of `org_id` after `key` (a LastEvaluatedKey of strings)."""
    plain_key = {name: value["S"] for name, value in key.items()}
    document = {"v": _FORMAT, "o": org_id, "l": listing, "k": plain_key}
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(
    cursor: str, *, org_id: str, listing: str, key_names: frozenset[str]
) -> dict[str, str]:
    """The key a cursor continues after, if it was issued for this org and listing."""
    document = _parse(cursor)
    if document.get("o") != org_id:
        raise InvalidCursor("the cursor belongs to another org")
    if document.get("l") != listing:
        raise InvalidCursor("the cursor belongs to another listing")
    key = document.get("k")
    if (
        not isinstance(key, dict)
        or set(key) != key_names
        or not all(isinstance(value, str) for value in key.values())
    ):
        raise InvalidCursor("the cursor is malformed")
    return key


def _parse(cursor: str) -> dict[str, Any]:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= _MAX_LENGTH:
        raise InvalidCursor("the cursor is malformed")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        document = json.loads(raw.decode("utf-8"))
    # RecursionError: JSON nested deeper than the decoder goes (a 4 KiB cursor can be, on 3.11).
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidCursor("the cursor is malformed") from None
    if not isinstance(document, dict) or document.get("v") != _FORMAT:
        raise InvalidCursor("the cursor is malformed")
    return document
