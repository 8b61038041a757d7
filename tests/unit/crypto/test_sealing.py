"""Sealing and opening fields: round trips, and one opaque error for every value that fails."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom.crypto import InvalidSealedValue, Keyrings, OrgKeyring
from strongroom.crypto import sealed as sealed_format
from strongroom.crypto.cache import MAX_FIELD_PREFIXES, MAX_ITEM_AADS, CachedDek
from tests.unit.crypto.conftest import create_org, new_org_id

WHERE = {"kind": "connection", "item_id": "conn_01", "field": "client_secret"}


def opaque_error(keyring: OrgKeyring, sealed: Any, **where: Any) -> InvalidSealedValue:
    """The error opening `sealed` raises; fails the test if it opens."""
    with pytest.raises(InvalidSealedValue) as caught:
        keyring.open_field(sealed, **(where or WHERE))
    return caught.value


def test_round_trip_of_text_and_bytes(keyring: OrgKeyring) -> None:
    for text in ("s3cr3t-value", "pässwörd 🔑", ""):
        sealed = keyring.seal_field(text, **WHERE)
        assert keyring.open_text_field(sealed, **WHERE) == text
        assert keyring.open_field(sealed, **WHERE) == text.encode("utf-8")
    for data in (bytes(range(256)), b"\xff\xfe not utf-8", b""):
        sealed = keyring.seal_field(data, **WHERE)
        assert keyring.open_field(sealed, **WHERE) == data


def test_sealed_value_is_bytes_recording_format_and_dek_version(keyring: OrgKeyring) -> None:
    secret = "a-secret-that-must-not-show"
    sealed = keyring.seal_field(secret, **WHERE)
    assert type(sealed) is bytes
    assert sealed[0] == 1
    assert int.from_bytes(sealed[1:5], "big") == 1
    assert len(sealed) == 5 + 12 + len(secret) + 16
    assert secret.encode() not in sealed
    # A fresh nonce each time: the same secret never seals to the same value.
    assert keyring.seal_field(secret, **WHERE) != sealed


def test_the_aad_is_the_documented_one(keyrings: Keyrings, keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    # The raw primitive with the cached DEK and the format's reference AAD opens the value.
    aead = keyrings.cache.deks_of(keyring.org_id)[sealed[:5]].aead
    expected = (
        b"\x01\x00\x00\x00\x01"
        + keyring.org_id.encode()
        + b"\x00connection\x00client_secret\x00conn_01"
    )
    assert sealed_format.aad(1, keyring.org_id, **WHERE) == expected
    assert aead.decrypt(sealed[5:17], sealed[17:], expected) == b"secret"


def test_every_bit_flip_fails_opaquely(keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("twenty-byte-secret!!", **WHERE)
    messages = set()
    for index in range(len(sealed)):
        for bit in range(8):
            flipped = bytearray(sealed)
            flipped[index] ^= 1 << bit
            messages.add(str(opaque_error(keyring, bytes(flipped))))
    assert len(messages) == 1
    assert keyring.open_text_field(sealed, **WHERE) == "twenty-byte-secret!!"


def test_only_bytes_open_other_spellings_of_the_same_bytes_fail_opaquely(
    keyring: OrgKeyring,
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)

    class BytesSubclass(bytes):
        pass

    errors = [
        opaque_error(keyring, other)
        for other in (
            sealed.decode("latin-1"),
            sealed.hex(),
            bytearray(sealed),
            memoryview(sealed),
            BytesSubclass(sealed),
        )
    ]
    assert {(type(e), str(e)) for e in errors} == {(InvalidSealedValue, str(errors[0]))}
    assert keyring.open_field(sealed, **WHERE) == b"secret"


def test_every_truncation_fails_opaquely_once_the_keyring_holds_the_dek(
    keyring: OrgKeyring,
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    assert keyring.open_field(sealed, **WHERE) == b"secret"  # the keyring now holds its DEK
    errors = [opaque_error(keyring, sealed[:length]) for length in range(len(sealed))]
    assert {(type(e), str(e)) for e in errors} == {(InvalidSealedValue, str(errors[0]))}
    assert keyring.open_field(sealed, **WHERE) == b"secret"


def test_value_moved_to_another_item_kind_id_or_field_fails(keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    for moved in (
        {"kind": "webhook"},
        {"kind": "Connection"},
        {"item_id": "conn_02"},
        {"field": "private_key"},
        {"kind": "conn_01", "item_id": "connection"},
    ):
        opaque_error(keyring, sealed, **{**WHERE, **moved})
    assert keyring.open_field(sealed, **WHERE) == b"secret"


def test_value_moved_to_another_org_fails(keyrings: Keyrings, keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    other = create_org(keyrings, new_org_id())
    # Same DEK version number (1), other org's DEK and AAD.
    opaque_error(other, sealed)
    # An org with no keyring at all.
    opaque_error(keyrings.for_org(new_org_id()), sealed)


def test_context_parts_cannot_run_into_each_other(keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("secret", kind="ab", item_id="c", field="d")
    assert keyring.open_field(sealed, kind="ab", item_id="c", field="d") == b"secret"
    opaque_error(keyring, sealed, kind="a", item_id="bc", field="d")
    sealed = keyring.seal_field("secret", kind="k", item_id="ab", field="c")
    opaque_error(keyring, sealed, kind="k", item_id="a", field="bc")
    # Parts holding the separator (which seal_field refuses) cannot shift the others.
    for where in (
        {"kind": "k\x00ab", "item_id": "c", "field": ""},
        {"kind": "k", "item_id": "ab\x00c", "field": ""},
        {"kind": "", "item_id": "k\x00ab", "field": "c"},
        {"kind": "k\x00ab\x00c", "item_id": "", "field": ""},
    ):
        opaque_error(keyring, sealed, **where)
    with pytest.raises(ValueError, match="printable ASCII"):
        keyring.seal_field("secret", kind="k", item_id="a\x00b", field="c")


def _header(version: int, fmt: int = 1) -> bytes:
    return bytes((fmt,)) + version.to_bytes(4, "big")


def test_malformed_values_fail_with_the_same_error_and_message(keyring: OrgKeyring) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    body = sealed[5:]
    bad: list[Any] = [
        b"",
        b"\x00",
        sealed[:-1],
        sealed[:5],
        sealed[:17],
        sealed[: 5 + 12 + 16 - 1],
        sealed + b"\x00",
        b" " + sealed,
        sealed[:-1] + b"\n",
        b"not a sealed value",
        b"\x01" * 40,
        b"\xff" * 40,
        _header(1, fmt=2) + body,
        _header(1, fmt=0) + body,
        _header(2) + body,
        _header(0) + body,
        _header(1_000_000) + body,
        _header(2**32 - 1) + body,
        None,
        12345,
        "",
        ["not", "a", "value"],
    ]
    errors = [opaque_error(keyring, value) for value in bad]
    assert {str(e) for e in errors} == {str(errors[0])}
    assert {type(e) for e in errors} == {InvalidSealedValue}
    assert all(e.__cause__ is None and e.__suppress_context__ for e in errors if e.__context__)
    # The value itself was fine all along.
    assert keyring.open_field(sealed, **WHERE) == b"secret"


def test_open_with_a_context_that_can_never_have_been_sealed_fails_opaquely(
    keyrings: Keyrings, keyring: OrgKeyring
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    for where in (
        {**WHERE, "kind": None},
        {**WHERE, "item_id": 1},
        {**WHERE, "field": b"client_secret"},
        {**WHERE, "field": "x" * 128},
        {**WHERE, "kind": "cönnection"},
        {**WHERE, "kind": ""},
        {**WHERE, "kind": ["connection"]},
        {**WHERE, "item_id": "cönn_01"},
        {**WHERE, "item_id": "conn_\udc80"},
        {**WHERE, "item_id": b"conn_01"},
        {**WHERE, "item_id": "conn\n01"},
        {**WHERE, "item_id": "x" * 128},
    ):
        opaque_error(keyring, sealed, **where)
    # Refused parts are never cached, neither as AAD prefixes nor as whole AADs.
    assert set(dek_of(keyrings, keyring).field_prefixes) == {"connection"}
    assert dek_of(keyrings, keyring).item_aads == {}


def test_seal_refuses_what_it_cannot_bind(keyring: OrgKeyring) -> None:
    with pytest.raises(TypeError):
        keyring.seal_field(12345, **WHERE)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        keyring.seal_field("secret", **{**WHERE, "item_id": 7})  # type: ignore[arg-type]
    for part in ("", "x" * 128, "naïve", "line\nbreak"):
        with pytest.raises(ValueError, match="printable ASCII"):
            keyring.seal_field("secret", **{**WHERE, "field": part})
    longest = "x" * 127
    sealed = keyring.seal_field("secret", kind=longest, item_id=longest, field=longest)
    assert keyring.open_field(sealed, kind=longest, item_id=longest, field=longest) == b"secret"


def test_text_open_of_a_non_utf8_value_fails_without_carrying_the_plaintext(
    keyring: OrgKeyring,
) -> None:
    sealed = keyring.seal_field(b"\xff\xfe binary secret", **WHERE)
    with pytest.raises(InvalidSealedValue) as caught:
        keyring.open_text_field(sealed, **WHERE)
    assert caught.value.__context__ is None
    assert caught.value.__cause__ is None
    assert "secret" not in str(caught.value)


def test_one_hundred_thousand_seals_use_one_hundred_thousand_nonces(
    keyring: OrgKeyring,
) -> None:
    seal = keyring.seal_field
    nonces = {seal(b"x", **WHERE)[5:17] for _ in range(100_000)}
    assert len(nonces) == 100_000


def dek_of(keyrings: Keyrings, keyring: OrgKeyring) -> CachedDek:
    return keyrings.cache.deks_of(keyring.org_id)[b"\x01\x00\x00\x00\x01"]


def test_cached_aad_prefixes_are_bounded_and_still_bind_every_part(
    keyrings: Keyrings, keyring: OrgKeyring
) -> None:
    kinds = [f"kind{i}" for i in range(MAX_FIELD_PREFIXES + 10)]
    sealed = {kind: keyring.seal_field(kind, kind=kind, item_id="i", field="f") for kind in kinds}
    for index in reversed(range(len(kinds))):
        kind, other_kind = kinds[index], kinds[index - 1]
        assert keyring.open_field(sealed[kind], kind=kind, item_id="i", field="f") == kind.encode()
        opaque_error(keyring, sealed[kind], kind=kind, item_id="i", field="g")
        opaque_error(keyring, sealed[kind], kind=other_kind, item_id="i", field="f")
    prefixes = dek_of(keyrings, keyring).field_prefixes
    assert 0 < sum(len(of_kind) for of_kind in prefixes.values()) <= MAX_FIELD_PREFIXES


def test_cached_item_aads_are_bounded_exact_and_still_bind_the_item(
    keyrings: Keyrings, keyring: OrgKeyring
) -> None:
    items = [f"conn_{i:04d}" for i in range(MAX_ITEM_AADS + 10)]
    sealed = {
        item: keyring.seal_field(item, kind="connection", item_id=item, field="token")
        for item in items
    }
    for _ in range(2):  # the second pass opens from the cache, or past its bound
        for index, item in enumerate(items):
            where = {"kind": "connection", "field": "token"}
            assert keyring.open_field(sealed[item], item_id=item, **where) == item.encode()
            opaque_error(keyring, sealed[item], item_id=items[index - 1], **where)
    cached = dek_of(keyrings, keyring).item_aads["connection"]["token"]
    assert len(cached) == MAX_ITEM_AADS
    for item, aad in cached.items():
        assert aad == sealed_format.aad(
            1, keyring.org_id, kind="connection", item_id=item, field="token"
        )
