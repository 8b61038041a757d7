"""Okta's cursor pagination: page-size rules per endpoint and opaque, tamper-evident cursors.

A cursor (`after=`) names a position in one listing. It is the position XOR a per-listing mask,
followed by a MAC of (listing, position), base64url-encoded: it is not an offset a client could
compute or edit, it is only valid for the listing that issued it, and it is a pure function of
the seed, so a sandbox restarted with the same seed still accepts the cursors it gave out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from strongroom_local.sandbox_okta.exceptions import InvalidParameter

_POSITION_BYTES = 4
_TAG_BYTES = 6


@dataclass(frozen=True)
class PageRule:
    """How an endpoint pages: `default` and `maximum` page sizes (None: everything).

    `paged=False`: the endpoint has no `limit`/`after` and returns every item at once.
    A `limit` above `maximum` is clamped to it and one below `minimum` raised to it, as Okta
    does; a `limit` of zero or less means the default.
    """

    paged: bool = True
    default: int | None = 200
    maximum: int | None = 200
    minimum: int = 1

    def page_size(self, limit_text: str | None, available: int) -> int:
        """The number of items one page holds for a request's `limit`."""
        if not self.paged:
            return max(available, 1)
        limit: int | None = None
        if limit_text is not None and limit_text != "":
            try:
                limit = int(limit_text)
            except ValueError:
                raise InvalidParameter("limit") from None
        if limit is None or limit <= 0:
            limit = self.default
        if limit is None:
            limit = self.maximum if self.maximum is not None else max(available, 1)
        if self.maximum is not None:
            limit = min(limit, self.maximum)
        return max(limit, self.minimum)


UNPAGED = PageRule(paged=False, default=None, maximum=None)


class CursorCodec:
    """Encodes and checks `after=` cursors under a key derived from the org's seed."""

    def __init__(self, seed: int) -> None:
        self._key = hashlib.sha256(b"strongroom-sandbox-okta-cursor:%d" % seed).digest()

    def _mask(self, scope: str) -> int:
        digest = hmac.new(self._key, b"mask:" + scope.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:_POSITION_BYTES], "big")

    def _tag(self, scope: str, position: int) -> bytes:
        message = b"tag:%d:" % position + scope.encode()
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def encode(self, scope: str, position: int) -> str:
        masked = (position ^ self._mask(scope)).to_bytes(_POSITION_BYTES, "big")
        raw = masked + self._tag(scope, position)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def decode(self, scope: str, cursor: str) -> int:
        """The position `cursor` names; InvalidParameter if it was not issued for `scope`."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError):
            raise InvalidParameter("after") from None
        if len(raw) != _POSITION_BYTES + _TAG_BYTES:
            raise InvalidParameter("after")
        position = int.from_bytes(raw[:_POSITION_BYTES], "big") ^ self._mask(scope)
        if not hmac.compare_digest(raw[_POSITION_BYTES:], self._tag(scope, position)):
            raise InvalidParameter("after")
        return position
