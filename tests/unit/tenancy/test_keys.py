"""Org ids, kinds and ids: nothing a caller passes can reach another kind, item or org."""

from __future__ import annotations

import re
from typing import Any

import pytest

from strongroom.settings import Settings
from strongroom.tenancy import (
    IndexKey,
    InvalidKey,
    InvalidOrgId,
    ItemNotFound,
    TenantTable,
    new_org_id,
    validate_org_id,
)
from tests.unit.tenancy.conftest import NOW, raw_items


def test_new_org_ids_are_org_and_26_base32_characters_and_unique() -> None:
    ids = {new_org_id() for _ in range(200)}
    assert len(ids) == 200
    for org_id in ids:
        assert re.fullmatch(r"org_[a-z2-7]{26}", org_id)
        assert validate_org_id(org_id) == org_id


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "org_",
        "org_" + "a" * 25,
        "org_" + "a" * 27,
        "ORG_" + "a" * 26,
        "org_" + "A" * 26,
        "org_" + "a" * 25 + "1",  # 1 is not base32
        "org-" + "a" * 26,
        "org_" + "a" * 26 + "#MEMBER",
        "org_" + "a" * 26 + "\n",
        " org_" + "a" * 26,
        None,
        42,
    ],
)
def test_malformed_org_ids_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidOrgId):
        validate_org_id(bad)


@pytest.mark.parametrize(
    ("kind", "item_id"),
    [
        ("MEMBER", "alice#ADMIN"),  # `#` would forge another sort key
        ("MEMBER", ""),
        ("MEMBER", "has space"),
        ("MEMBER", "tab\there"),
        ("MEMBER", "x" * 201),
        ("MEMBER", "caf\u00e9"),
        ("member", "alice"),  # kinds are upper case
        ("MEMBER#X", "alice"),
        ("", "alice"),
        ("KEYRING", None),  # strongroom.crypto's sort keys
        ("DEK", "000001"),
    ],
)
def test_key_injection_and_reserved_kinds_are_refused_before_any_call(
    offline_table: TenantTable, org_id: str, kind: str, item_id: str | None
) -> None:
    table = offline_table
    with pytest.raises(InvalidKey):
        table.create(org_id, kind, item_id, attributes={}, now=NOW)
    with pytest.raises(InvalidKey):
        table.get(org_id, kind, item_id, now=NOW)
    with pytest.raises(InvalidKey):
        table.update(org_id, kind, item_id, changes={"a": 1}, now=NOW)
    with pytest.raises(InvalidKey):
        table.delete(org_id, kind, item_id, now=NOW)
    with pytest.raises(InvalidKey):
        table.consume(org_id, kind, item_id, now=NOW)


@pytest.mark.parametrize("name", ["pk", "sk", "gsi1pk", "gsi1sk", "expires_at", "Role", "a-b"])
def test_reserved_or_malformed_attribute_names_are_refused_before_any_call(
    offline_table: TenantTable, org_id: str, name: str
) -> None:
    table = offline_table
    with pytest.raises(InvalidKey):
        table.create(org_id, "MEMBER", "alice", attributes={name: "x"}, now=NOW)
    with pytest.raises(InvalidKey):
        table.update(org_id, "MEMBER", "alice", changes={name: "x"}, now=NOW)
    with pytest.raises(InvalidKey):
        table.update(org_id, "MEMBER", "alice", remove=[name], now=NOW)
    with pytest.raises(InvalidKey):
        table.update(org_id, "MEMBER", "alice", changes={"a": 1}, expect={name: "x"}, now=NOW)


def test_an_org_id_that_carries_a_key_suffix_is_refused_everywhere(
    offline_table: TenantTable, org_id: str
) -> None:
    table = offline_table
    forged = org_id + "#MEMBER"
    with pytest.raises(InvalidOrgId):
        table.get(forged, "MEMBER", "alice", now=NOW)
    with pytest.raises(InvalidOrgId):
        table.query(forged, "MEMBER", now=NOW)
    with pytest.raises(InvalidOrgId):
        table.query_index(forged, "BACKUPS", now=NOW)


def test_index_values_must_be_visible_ascii(offline_table: TenantTable, org_id: str) -> None:
    table = offline_table
    for index in (IndexKey("", "2026"), IndexKey("CONN#c1", "two words"), IndexKey("x\u00e9", "1")):
        with pytest.raises(InvalidKey):
            table.create(org_id, "BACKUP", "b1", attributes={}, index=index, now=NOW)


def test_keys_are_laid_out_as_the_template_describes_and_scoped_by_org(
    table: TenantTable, dynamodb: Any, settings: Settings, org_id: str, other_org_id: str
) -> None:
    table.create(org_id, "ORG", attributes={"name": "Acme"}, now=NOW)
    table.create(
        org_id,
        "BACKUP",
        "bkp_1",
        attributes={"status": "done"},
        index=IndexKey("CONN#conn_1", "2026-01-02T03:04:05Z"),
        now=NOW,
    )
    stored = raw_items(dynamodb, settings, org_id)
    assert set(stored) == {"ORG", "BACKUP#bkp_1"}
    assert stored["BACKUP#bkp_1"]["gsi1pk"] == {"S": f"{org_id}#CONN#conn_1"}
    assert stored["BACKUP#bkp_1"]["gsi1sk"] == {"S": "2026-01-02T03:04:05Z"}
    assert stored["ORG"]["name"] == {"S": "Acme"}
    # Ids keep unusual but safe characters exactly (JWT subjects such as Auth0's).
    subject = "auth0|5f7c8ec7c33c6c004bbafe82@example.com"
    table.create(org_id, "MEMBER", subject, attributes={"role": "owner"}, now=NOW)
    assert table.get(org_id, "MEMBER", subject, now=NOW).item_id == subject
    # Another org's read of the same kind and id finds nothing.
    with pytest.raises(ItemNotFound):
        table.get(other_org_id, "BACKUP", "bkp_1", now=NOW)
