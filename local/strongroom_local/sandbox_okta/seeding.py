"""Deterministic values derived from a seed and an index: numbers, Okta-style ids, timestamps.

Everything the sandbox serves is a pure function of (seed, kind, index), so an item can be
rendered on demand without storing the org, and the same seed gives the same bytes in any
process on any Python version (no `random` module, no `hash()` of strings).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from enum import IntEnum

_MASK64 = (1 << 64) - 1
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_VALUE = {char: value for value, char in enumerate(_BASE62)}
_BASE62_PAIRS = [high + low for high in _BASE62 for low in _BASE62]
_ID_BODY_LENGTH = 17  # Okta ids: a 3-character prefix and 17 base-62 characters
_INDEX_BITS = 24
MAX_INDEX = (1 << _INDEX_BITS) - 1
_TAG_BITS = 76  # 76 + 24 bits < 62**17, so every id has exactly 17 characters once padded

# 2019-01-01T00:00:00Z: every generated timestamp falls in the five years after it.
EPOCH = 1_546_300_800
_YEAR = 365 * 86_400


class Kind(IntEnum):
    """What a derived value is for; part of every derivation so kinds never collide."""

    USER = 1
    GROUP = 2
    GROUP_RULE = 3
    APP = 4
    POLICY = 5
    POLICY_RULE = 6
    AUTH_SERVER = 7
    SCOPE = 8
    CLAIM = 9
    AUTH_SERVER_POLICY = 10
    AUTH_SERVER_RULE = 11
    ZONE = 12
    TRUSTED_ORIGIN = 13
    IDP = 14
    AUTHENTICATOR = 15
    BEHAVIOR = 16
    CUSTOM_ROLE = 17
    ROLE_ASSIGNMENT = 18
    RESOURCE_SET = 19
    MEMBERSHIP = 20
    APP_ASSIGNMENT = 21
    APP_GROUP = 22
    SECRET = 23
    SCHEMA = 24
    USER_TYPE = 25
    ID_TAG = 26
    ORG = 27


def _mix(value: int) -> int:
    """splitmix64's finaliser: a bijective scramble of 64 bits."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class Seeded:
    """Numbers, ids and timestamps derived from one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._base = _mix(seed & _MASK64)

    def number(self, *parts: int) -> int:
        """A 64-bit value determined by the seed and `parts`."""
        value = self._base
        for part in parts:
            value = _mix(value ^ (part & _MASK64))
        return value

    def stream(self, *parts: int) -> Iterator[int]:
        """Successive 64-bit values determined by the seed and `parts` (one mix each)."""
        value = self.number(*parts)
        while True:
            yield value
            value = _mix(value)

    def below(self, bound: int, *parts: int) -> int:
        """A value in [0, bound)."""
        return self.number(*parts) % bound

    def token(self, length: int, *parts: int) -> str:
        """`length` base-62 characters."""
        characters: list[str] = []
        counter = 0
        while len(characters) < length:
            value = self.number(*parts, counter)
            counter += 1
            for _ in range(10):  # 62**10 < 2**64
                value, digit = divmod(value, 62)
                characters.append(_BASE62[digit])
        return "".join(characters[:length])

    def hex(self, length: int, *parts: int) -> str:
        digits = "".join(f"{self.number(*parts, n):016x}" for n in range(length // 16 + 1))
        return digits[:length]

    # ---- ids -------------------------------------------------------------------------------

    def _tag(self, kind: Kind, index: int) -> int:
        high = self.number(Kind.ID_TAG, kind, index)
        return (high << (_TAG_BITS - 64)) | (_mix(high) >> (128 - _TAG_BITS))

    def make_id(self, prefix: str, kind: Kind, index: int) -> str:
        """An Okta-looking id (`00u` + 17 characters) that encodes `index` recoverably."""
        if not 0 <= index <= MAX_INDEX:
            raise ValueError("index out of range")
        value = (self._tag(kind, index) << _INDEX_BITS) | index
        # Two digits at a time: 17 digits = one leading digit and eight pairs.
        pairs = []
        for _ in range(_ID_BODY_LENGTH // 2):
            value, pair = divmod(value, 3_844)
            pairs.append(_BASE62_PAIRS[pair])
        pairs.append(_BASE62[value])
        return prefix + "".join(reversed(pairs))

    def index_of(self, identifier: str, prefix: str, kind: Kind) -> int | None:
        """The index `make_id` encoded, or None if `identifier` is not one of ours."""
        if len(identifier) != len(prefix) + _ID_BODY_LENGTH or not identifier.startswith(prefix):
            return None
        value = 0
        for char in identifier[len(prefix) :]:
            digit = _BASE62_VALUE.get(char)
            if digit is None:
                return None
            value = value * 62 + digit
        index = value & MAX_INDEX
        if value >> _INDEX_BITS != self._tag(kind, index):
            return None
        return index

    # ---- time ------------------------------------------------------------------------------

    def instant(self, *parts: int, within_years: int = 4) -> int:
        """Epoch seconds within `within_years` after EPOCH."""
        return EPOCH + self.below(within_years * _YEAR, *parts)


@functools.lru_cache(maxsize=4096)
def _day(days_since_epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(days_since_epoch * 86_400))


def timestamp(epoch_seconds: int) -> str:
    """Okta's timestamp format: `2022-04-04T15:56:05.000Z`."""
    days, seconds = divmod(epoch_seconds, 86_400)
    hours, seconds = divmod(seconds, 3_600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.000Z"
