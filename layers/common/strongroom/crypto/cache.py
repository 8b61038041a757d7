"""The in-memory cache of plaintext DEKs: per org and version, bounded by age and by uses.

A warm function opens and seals without calling KMS or the table. The bounds limit how long a
plaintext DEK lives in a process and how much one KMS Decrypt may cover; crypto-shredding an
org cannot reach other processes, so `max_age_seconds` is also how long they may keep using it.

Reads take no lock: dict lookups and `next()` on an `itertools.count` are atomic under the GIL
(Lambda's CPython), and the read path runs on every open. Writes and evictions take the lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.settings import Settings

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CachedDek:
    """One version of an org's DEK, ready to seal and open."""

    version: int
    header: bytes
    aead: AESGCM
    aad_prefix: bytes


@dataclass(frozen=True, slots=True)
class CurrentDek:
    """Which DEK version new seals of an org use, and the org's KMS key."""

    version: int
    kms_key_arn: str


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
        self.deks: dict[int, _Entry[CachedDek]] = {}
        self.current: _Entry[CurrentDek] | None = None


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
        self._clock = clock
        self._orgs: dict[str, _OrgEntries] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> DekCache:
        return cls(
            max_age_seconds=settings.dek_cache_max_age_seconds,
            max_uses=settings.dek_cache_max_uses,
            clock=clock,
        )

    def take_dek(self, org_id: str, version: int) -> CachedDek | None:
        """The cached DEK, counting one use; None if absent, expired or used up."""
        org = self._orgs.get(org_id)
        if org is None:
            return None
        entry = org.deks.get(version)
        if entry is None:
            return None
        # _spent, inlined: this runs on every open.
        if self._clock() >= entry.expires_at or next(entry.uses) >= self._max_uses:
            with self._lock:
                if org.deks.get(version) is entry:
                    del org.deks[version]
            return None
        return entry.value

    def take_current(self, org_id: str) -> CurrentDek | None:
        """The cached current version, counting one use; None if absent, expired or used up."""
        org = self._orgs.get(org_id)
        entry = None if org is None else org.current
        if org is None or entry is None:
            return None
        if self._spent(entry):
            with self._lock:
                if org.current is entry:
                    org.current = None
            return None
        return entry.value

    def put_dek(self, org_id: str, dek: CachedDek) -> None:
        entry = _Entry(dek, self._clock() + self._max_age)
        with self._lock:
            self._entries_of(org_id).deks[dek.version] = entry

    def put_current(self, org_id: str, current: CurrentDek) -> None:
        entry = _Entry(current, self._clock() + self._max_age)
        with self._lock:
            self._entries_of(org_id).current = entry

    def forget(self, org_id: str) -> None:
        """Drop everything cached for the org (it is being shredded)."""
        with self._lock:
            self._orgs.pop(org_id, None)

    def _spent(self, entry: _Entry[_T]) -> bool:
        return self._clock() >= entry.expires_at or next(entry.uses) >= self._max_uses

    def _entries_of(self, org_id: str) -> _OrgEntries:
        # Caller holds the lock. The oldest org goes first: its entries are the nearest to expiry.
        org = self._orgs.get(org_id)
        if org is None:
            while len(self._orgs) >= self._max_orgs:
                del self._orgs[next(iter(self._orgs))]
            org = self._orgs[org_id] = _OrgEntries()
        return org
