"""The in-memory cache of plaintext DEKs: per org and version, bounded by age and by uses.

A warm function opens and seals without calling KMS or the table. The bounds limit how long a
plaintext DEK lives in a process and how much one KMS Decrypt may cover; crypto-shredding an
org cannot reach other processes, so `max_age_seconds` is also how long they may keep using it.

Reads take no lock: dict lookups and `next()` on an `itertools.count` are atomic under the GIL
(Lambda's CPython), and the read path runs on every open. Writes and evictions take the lock,
but for the whole AADs opens keep (CachedDek.item_aad: single atomic stores under a countdown).
A keyring holds on to the last DEK it opened with and counts its uses there, on the same
counter; so every DEK the cache lets go of (expired, used up, replaced, evicted or forgotten)
is retired: used up and expired for every holder, and keyless once its org is forgotten.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from cryptography.exceptions import InvalidTag

from strongroom.crypto import sealed
from strongroom.crypto.exceptions import KeyringUnavailable
from strongroom.settings import Settings

_T = TypeVar("_T")


# How many (kind, field) AAD prefixes one DEK keeps: a deployment seals a handful of fields.
MAX_FIELD_PREFIXES = 64
# How many whole AADs (one per kind, field and item, about 150 bytes each with their entry) one
# DEK keeps for opens: a warm function opens the same few items again and again. Past the
# bound, an open builds its AAD as a miss does, without keeping it.
MAX_ITEM_AADS = 1024


class Aead(Protocol):
    """What a cached DEK seals and opens with: AESGCM, or nothing once its org is forgotten."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


class _RetiredAead:
    """Stands in for the AESGCM of a shredded org's retired DEK, so the key goes with it:
    nothing opens (the InvalidTag of every failed open) and nothing is sealed."""

    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        raise KeyringUnavailable("the DEK was retired while sealing")

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes:
        raise InvalidTag


_RETIRED_AEAD = _RetiredAead()


class CachedDek:
    """One version of an org's DEK, ready to seal and open, as the cache holds it: usable
    until `expires_at` (by the cache's clock) and while `next(uses_left)` is above zero, and
    never again once `retire`d.

    `field_prefixes[kind][field]` is the encoded AAD up to the item id (at most about
    MAX_FIELD_PREFIXES of them, each checked as seal_field checks its parts), so a seal
    encodes only the item id; `item_aads[kind][field][item_id]` is an open's whole AAD (at most
    MAX_ITEM_AADS, each part checked likewise), so a repeated open builds nothing. Both go with
    the DEK when its bounds are reached.
    """

    __slots__ = (
        "_item_aads_left",
        "_lock",
        "_prefix_count",
        "aad_prefix",
        "aead",
        "expires_at",
        "field_prefixes",
        "header",
        "item_aads",
        "uses_left",
        "version",
    )

    def __init__(
        self, org_id: str, version: int, aead: Aead, *, expires_at: float, max_uses: int
    ) -> None:
        self.version = version
        self.header = sealed.header(version)
        self.aead = aead
        self.aad_prefix = sealed.aad_prefix(self.header, org_id)
        # kind -> field -> prefix: two lookups of str keys cost less than hashing a tuple.
        self.field_prefixes: dict[str, dict[str, bytes]] = {}
        self._prefix_count = 0
        # kind -> field -> item id -> AAD, for the same reason.
        self.item_aads: dict[str, dict[str, dict[str, bytes]]] = {}
        self._item_aads_left = itertools.count(MAX_ITEM_AADS, -1)
        self._lock = threading.Lock()
        self.expires_at = expires_at
        # Counts down, so a take is one next() and one compare. Whoever puts a DEK has just
        # loaded it to use it once: that use counts.
        self.uses_left = itertools.count(max_uses - 1, -1)

    def take(self, now: float) -> bool:
        """Count one use; False if the DEK is expired, used up or retired."""
        return next(self.uses_left) > 0 and now < self.expires_at

    def retire(self, *, drop_key: bool = False) -> None:
        """Make the DEK unusable for good, wherever it is held: used up and expired, so every
        later open or seal takes it from the cache again, which no longer has it. An open
        already past those checks still finishes, unless `drop_key` (the org is being
        shredded): then the key goes at once and such an open fails like any other."""
        self.uses_left = itertools.count(0, -1)
        self.expires_at = -math.inf
        if drop_key:
            self.aead = _RETIRED_AEAD

    def field_prefix(self, kind: str, field: str) -> bytes:
        """The AAD up to the item id (sealed.field_aad_prefix), kept in `field_prefixes`;
        TypeError or ValueError for parts seal_field refuses, which are never kept."""
        prefix = sealed.field_aad_prefix(self.aad_prefix, kind, field)
        with self._lock:
            prefixes = self.field_prefixes
            if self._prefix_count >= MAX_FIELD_PREFIXES:
                # Drop the oldest kind's prefixes: a reader missing one just builds it again.
                self._prefix_count -= len(prefixes.pop(next(iter(prefixes))))
            of_kind = prefixes.setdefault(kind, {})
            if field not in of_kind:
                self._prefix_count += 1
            of_kind[field] = prefix
        return prefix

    def item_aad(self, kind: str, field: str, item_id: str) -> bytes:
        """The whole AAD of an item's field (sealed.aad's spelling), kept in `item_aads` until
        MAX_ITEM_AADS have been; TypeError or ValueError for parts seal_field refuses, which
        are never kept."""
        try:
            prefix = self.field_prefixes[kind][field]
        except (KeyError, TypeError):
            prefix = self.field_prefix(kind, field)
        aad = prefix + sealed.check_part("item_id", item_id).encode("ascii")
        # No lock: the bound is a countdown taken with one atomic next() (as uses_left), and
        # each store is one atomic dict write of a value its key alone determines, so a race
        # can only spend the bound twice on one item.
        if next(self._item_aads_left) > 0:
            aads = self.item_aads
            of_kind = aads.get(kind) or aads.setdefault(kind, {})
            of_field = of_kind.get(field) or of_kind.setdefault(field, {})
            of_field[item_id] = aad
        return aad


def _no_dek() -> CachedDek:
    dek = CachedDek("", 1, _RETIRED_AEAD, expires_at=-math.inf, max_uses=0)
    dek.header = b""
    return dek


# What a keyring holds before its first open: its header matches no sealed value's, and it is
# used up, expired and keyless besides.
NO_DEK = _no_dek()


@dataclass(frozen=True, slots=True)
class CurrentDek:
    """Which DEK version new seals of an org use, and the org's KMS key."""

    version: int
    kms_key_arn: str
    # Derived from version, once: the cache key of the DEK every seal takes.
    header: bytes = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", sealed.header(self.version))


class _Entry(Generic[_T]):
    __slots__ = ("expires_at", "uses", "value")

    def __init__(self, value: _T, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at
        # Whoever puts an entry has just loaded it to use it once: that use counts.
        self.uses = itertools.count(1)


class _OrgEntries:
    __slots__ = ("current", "deks")

    def __init__(self) -> None:
        self.deks: dict[bytes, CachedDek] = {}
        self.current: _Entry[CurrentDek] | None = None

    def drop(self, *, drop_keys: bool) -> None:
        """Empty the org's live DEK mapping in place and retire every DEK in it."""
        deks = list(self.deks.values())
        self.deks.clear()
        self.current = None
        for dek in deks:
            dek.retire(drop_key=drop_keys)


_NO_DEKS: Mapping[bytes, CachedDek] = MappingProxyType({})


_MAX_SHUT_OUT = 10_000


class DekCache:
    """Plaintext DEKs and current versions of at most `max_orgs` orgs, each entry usable for
    `max_uses` takes within `max_age_seconds` of being put (by `clock`, in seconds)."""

    def __init__(
        self,
        *,
        max_age_seconds: float,
        max_uses: int,
        max_orgs: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_age_seconds <= 0 or max_uses < 1 or max_orgs < 1:
            raise ValueError("cache bounds must be positive")
        self._max_age = max_age_seconds
        self._max_uses = max_uses
        self._max_orgs = max_orgs
        self.clock = clock
        self._orgs: dict[str, _OrgEntries] = {}
        # Orgs whose key is shredded: none of their DEKs is cached again (an unwrap already under
        # way in another thread when the key was shredded must not bring one back).
        self._shut_out: dict[str, None] = {}
        self._lock = threading.Lock()

    @property
    def max_age_seconds(self) -> float:
        """How long an entry is used after it is put (so how long a process may keep sealing
        under a DEK that has since stopped being current)."""
        return self._max_age

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> DekCache:
        return cls(
            max_age_seconds=settings.dek_cache_max_age_seconds,
            max_uses=settings.dek_cache_max_uses,
            clock=clock,
        )

    def deks_of(self, org_id: str) -> Mapping[bytes, CachedDek]:
        """The org's cached DEKs by header, as a live mapping: emptied when the org is
        forgotten or evicted (ask again after a miss). Take a DEK before using it."""
        org = self._orgs.get(org_id)
        return _NO_DEKS if org is None else org.deks

    def take_dek(self, org_id: str, header: bytes) -> CachedDek | None:
        """The cached DEK of this header, counting one use; None if absent, expired or used
        up (and then it is dropped)."""
        org = self._orgs.get(org_id)
        dek = None if org is None else org.deks.get(header)
        if org is None or dek is None:
            return None
        if not dek.take(self.clock()):
            with self._lock:
                if org.deks.get(header) is dek:
                    del org.deks[header]
            dek.retire()
            return None
        return dek

    def take_current(self, org_id: str) -> CurrentDek | None:
        """The cached current version, counting one use; None if absent, expired or used up."""
        org = self._orgs.get(org_id)
        entry = None if org is None else org.current
        if org is None or entry is None:
            return None
        if self.clock() >= entry.expires_at or next(entry.uses) >= self._max_uses:
            with self._lock:
                if org.current is entry:
                    org.current = None
            return None
        return entry.value

    def put_dek(self, org_id: str, version: int, key: bytes) -> CachedDek:
        """Cache the plaintext `key` of the org's DEK `version`; the cached DEK, whose first
        use (the caller's) is already counted."""
        # Imported at the first DEK, not at import: a cold start whose requests seal and open
        # nothing does not load the cipher.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

        dek = CachedDek(
            org_id,
            version,
            AESGCM(key),
            expires_at=self.clock() + self._max_age,
            max_uses=self._max_uses,
        )
        with self._lock:
            if org_id in self._shut_out:
                return dek  # used by its caller once, never kept
            deks = self._entries_of(org_id).deks
            replaced = deks.get(dek.header)
            deks[dek.header] = dek
        if replaced is not None:
            replaced.retire()  # the bounds are the new entry's alone
        return dek

    def put_current(self, org_id: str, current: CurrentDek) -> None:
        entry = _Entry(current, self.clock() + self._max_age)
        with self._lock:
            if org_id not in self._shut_out:
                self._entries_of(org_id).current = entry

    def forget(self, org_id: str) -> None:
        """Drop and retire everything cached for the org (to read it afresh)."""
        with self._lock:
            org = self._orgs.pop(org_id, None)
            if org is not None:
                org.drop(drop_keys=True)

    def shut_out(self, org_id: str) -> None:
        """`forget` the org, and cache nothing of it again in this process (its key is being
        shredded). At most `_MAX_SHUT_OUT` orgs are remembered, the oldest forgotten first: by
        then their keys are long disabled, so nothing of theirs can be unwrapped anyway."""
        with self._lock:
            self._shut_out[org_id] = None
            while len(self._shut_out) > _MAX_SHUT_OUT:
                del self._shut_out[next(iter(self._shut_out))]
        self.forget(org_id)

    def _entries_of(self, org_id: str) -> _OrgEntries:
        # Caller holds the lock. The oldest org goes first: its entries are the nearest to expiry.
        org = self._orgs.get(org_id)
        if org is None:
            while len(self._orgs) >= self._max_orgs:
                self._orgs.pop(next(iter(self._orgs))).drop(drop_keys=False)
            org = self._orgs[org_id] = _OrgEntries()
        return org
