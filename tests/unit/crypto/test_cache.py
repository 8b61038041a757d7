"""The DEK cache: a warm process makes no KMS call, and the bounds on age and uses hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strongroom.crypto import DekCache, Keyrings, KeyringUnavailable, OrgKeyring, sealed
from strongroom.crypto.cache import CurrentDek
from strongroom.settings import Settings
from tests.unit.crypto.conftest import NOW, CallRecorder, FakeClock, new_org_id, record_calls

WHERE = {"kind": "connection", "item_id": "conn_01", "field": "client_secret"}
HEADER_V1 = b"\x01\x00\x00\x00\x01"  # format 1, DEK version 1
HEADER_V2 = b"\x01\x00\x00\x00\x02"  # format 1, DEK version 2


def test_warm_opens_and_seals_make_no_kms_or_table_call(
    keyring: OrgKeyring, kms_calls: CallRecorder, dynamodb_calls: CallRecorder
) -> None:
    sealed = [keyring.seal_field(f"secret {i}", **WHERE) for i in range(100)]
    for i, value in enumerate(sealed):
        assert keyring.open_text_field(value, **WHERE) == f"secret {i}"
    assert kms_calls.calls == []
    assert dynamodb_calls.calls == []


def test_a_cold_open_unwraps_once_then_opens_warm(
    make_keyrings: Callable[..., Keyrings], keyring: OrgKeyring, kms: Any, org_id: str
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    cold = make_keyrings()
    calls = record_calls(kms)
    reader = cold.for_org(org_id)
    for _ in range(50):
        assert reader.open_field(sealed, **WHERE) == b"secret"
    assert calls.names() == ["Decrypt"]


def test_after_the_max_age_an_open_unwraps_again(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    kms: Any,
    clock: FakeClock,
    settings: Settings,
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    reader = make_keyrings().for_org(keyring.org_id)
    calls = record_calls(kms)
    reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt"]
    clock.advance(settings.dek_cache_max_age_seconds - 0.5)
    reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt"]
    clock.advance(0.5)
    reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt", "Decrypt"]
    reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt", "Decrypt"]


def test_after_the_max_uses_an_open_unwraps_again(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    kms: Any,
    settings: Settings,
    org_id: str,
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    few_uses = settings.model_copy(update={"dek_cache_max_uses": 5})
    reader = make_keyrings(settings_=few_uses).for_org(org_id)
    calls = record_calls(kms)
    for _ in range(5):  # the unwrapping open and four more
        reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt"]
    for _ in range(5):
        reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt", "Decrypt"]
    reader.open_field(sealed, **WHERE)
    assert calls.names() == ["Decrypt", "Decrypt", "Decrypt"]


def test_the_current_version_is_cached_under_the_same_bound(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    clock: FakeClock,
    settings: Settings,
    org_id: str,
) -> None:
    assert keyring.seal_field("a", **WHERE)[:5] == HEADER_V1
    make_keyrings().rotate_dek(org_id, now=NOW)  # another process rotates
    # This warm process keeps sealing with version 1 (still valid) until its entry expires.
    assert keyring.seal_field("b", **WHERE)[:5] == HEADER_V1
    clock.advance(settings.dek_cache_max_age_seconds)
    assert keyring.seal_field("c", **WHERE)[:5] == HEADER_V2


def test_cache_bounds_age_uses_and_orgs() -> None:
    clock = FakeClock()
    cache = DekCache(max_age_seconds=10, max_uses=3, max_orgs=2, clock=clock)
    first, second, third = new_org_id(), new_org_id(), new_org_id()
    key = AESGCM.generate_key(256)
    v1, v2 = sealed.header(1), sealed.header(2)
    dek = cache.put_dek(first, 1, key)  # counts as the loader's use
    assert dek.header == v1
    assert cache.deks_of(first) == {v1: dek}
    assert cache.take_dek(first, v1) is dek
    assert cache.take_dek(first, v1) is dek
    assert cache.take_dek(first, v1) is None
    assert cache.deks_of(first) == {}  # a used-up DEK is dropped
    assert cache.take_dek(first, v2) is None
    dek = cache.put_dek(first, 1, key)
    clock.advance(9.99)
    assert cache.take_dek(first, v1) is dek
    clock.advance(0.01)
    assert cache.take_dek(first, v1) is None
    cache.put_current(first, CurrentDek(1, "arn:k"))
    clock.advance(9.99)
    assert cache.take_current(first) == CurrentDek(1, "arn:k")
    clock.advance(0.01)
    assert cache.take_current(first) is None
    # At most max_orgs orgs: the oldest goes first, and its live mapping is emptied.
    cache.put_dek(first, 1, key)
    held = cache.deks_of(first)
    cache.put_dek(second, 1, key)
    cache.put_dek(third, 1, key)
    assert held == {}
    assert cache.take_dek(first, v1) is None
    assert cache.take_dek(second, v1) is not None
    held = cache.deks_of(third)
    assert cache.take_dek(third, v1) is not None
    cache.forget(third)
    assert held == {}
    assert cache.take_dek(third, v1) is None
    with pytest.raises(ValueError, match="positive"):
        DekCache(max_age_seconds=0, max_uses=1)
    with pytest.raises(ValueError, match="positive"):
        DekCache(max_age_seconds=1, max_uses=0)


def test_a_shut_out_org_is_never_cached_again() -> None:
    # An unwrap already under way in another thread when the org's key was shredded (an
    # abandoned revocation during an org's deletion) must not bring its DEK back.
    cache = DekCache(max_age_seconds=10, max_uses=3)
    org, other = new_org_id(), new_org_id()
    key = AESGCM.generate_key(256)
    cache.put_dek(org, 1, key)
    cache.shut_out(org)
    assert cache.deks_of(org) == {}
    late = cache.put_dek(org, 1, key)
    assert late.header == sealed.header(1)  # still usable once, by its caller
    cache.put_current(org, CurrentDek(1, "arn:k"))
    assert cache.take_dek(org, sealed.header(1)) is None
    assert cache.take_current(org) is None
    cache.put_dek(other, 1, key)
    assert cache.take_dek(other, sealed.header(1)) is not None


def test_a_held_keyring_stops_using_a_forgotten_or_evicted_orgs_deks(
    kms: Any, dynamodb: Any, settings: Settings, clock: FakeClock
) -> None:
    cache = DekCache(max_age_seconds=60, max_uses=1000, max_orgs=1, clock=clock)
    keyrings = Keyrings(kms=kms, dynamodb=dynamodb, settings=settings, cache=cache)
    org_id = new_org_id()
    arn = keyrings.create_org_key(org_id)
    keyring = keyrings.create_keyring(org_id, kms_key_arn=arn, now=NOW)
    sealed_value = keyring.seal_field("secret", **WHERE)
    calls = record_calls(kms)
    assert keyring.open_field(sealed_value, **WHERE) == b"secret"
    assert calls.names() == []
    cache.forget(org_id)
    assert keyring.open_field(sealed_value, **WHERE) == b"secret"
    assert calls.names() == ["Decrypt"]
    # Another org pushes this one out of the one-org cache: the held keyring unwraps again,
    # then keeps its fresh DEK.
    other = new_org_id()
    keyrings.create_keyring(other, kms_key_arn=keyrings.create_org_key(other), now=NOW)
    calls.clear()
    for _ in range(3):
        assert keyring.open_field(sealed_value, **WHERE) == b"secret"
    assert calls.names() == ["Decrypt"]


def test_every_dek_the_cache_lets_go_of_is_retired_for_whoever_holds_it() -> None:
    clock = FakeClock()
    cache = DekCache(max_age_seconds=10, max_uses=2, max_orgs=1, clock=clock)
    org, other = new_org_id(), new_org_id()
    key = AESGCM.generate_key(256)
    nonce, aad = b"\x00" * 12, b"aad"
    ciphertext = AESGCM(key).encrypt(nonce, b"secret", aad)

    used_up = cache.put_dek(org, 1, key)
    assert cache.take_dek(org, HEADER_V1) is used_up
    assert cache.take_dek(org, HEADER_V1) is None
    expired = cache.put_dek(org, 1, key)
    clock.advance(10)
    assert cache.take_dek(org, HEADER_V1) is None
    replaced = cache.put_dek(org, 1, key)
    current = cache.put_dek(org, 1, key)
    for dek in (used_up, expired, replaced):
        assert not dek.take(clock())
    assert current.take(clock())

    # Evicted (the cache is full): unusable from now on, but an open already past the checks
    # still finishes with the key it holds.
    cache.put_dek(other, 1, key)
    assert not current.take(clock())
    assert current.aead.decrypt(nonce, ciphertext, aad) == b"secret"

    # Forgotten (the org is being shredded): the key goes at once.
    shredded = cache.take_dek(other, HEADER_V1)
    assert shredded is not None
    cache.forget(other)
    assert not shredded.take(clock())
    with pytest.raises(InvalidTag):
        shredded.aead.decrypt(nonce, ciphertext, aad)
    with pytest.raises(KeyringUnavailable):
        shredded.aead.encrypt(nonce, b"secret", aad)


def test_keyrings_of_one_org_count_their_opens_on_the_same_dek(
    make_keyrings: Callable[..., Keyrings], keyring: OrgKeyring, kms: Any, settings: Settings
) -> None:
    sealed_value = keyring.seal_field("secret", **WHERE)
    few_uses = settings.model_copy(update={"dek_cache_max_uses": 4})
    keyrings = make_keyrings(settings_=few_uses)
    first, second = keyrings.for_org(keyring.org_id), keyrings.for_org(keyring.org_id)
    calls = record_calls(kms)
    for _ in range(4):  # two keyrings, each holding the DEK of its last open
        assert first.open_field(sealed_value, **WHERE) == b"secret"
        assert second.open_field(sealed_value, **WHERE) == b"secret"
    assert calls.names() == ["Decrypt", "Decrypt"]


def test_opens_alternating_between_dek_versions_count_each_on_its_own_dek(
    make_keyrings: Callable[..., Keyrings], keyring: OrgKeyring, kms: Any, settings: Settings
) -> None:
    old = keyring.seal_field("old", **WHERE)
    make_keyrings().rotate_dek(keyring.org_id, now=NOW)
    new = make_keyrings().for_org(keyring.org_id).seal_field("new", **WHERE)
    assert (old[:5], new[:5]) == (HEADER_V1, HEADER_V2)
    few_uses = settings.model_copy(update={"dek_cache_max_uses": 3})
    reader = make_keyrings(settings_=few_uses).for_org(keyring.org_id)
    calls = record_calls(kms)
    for _ in range(3):
        assert reader.open_field(old, **WHERE) == b"old"
        assert reader.open_field(new, **WHERE) == b"new"
    assert calls.names() == ["Decrypt", "Decrypt"]
    assert reader.open_field(old, **WHERE) == b"old"
    assert calls.names() == ["Decrypt", "Decrypt", "Decrypt"]
