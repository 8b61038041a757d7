"""Re-encryption after a DEK rotation: every connection secret moves to the current DEK, opens to
the same plaintext, nothing else changes, and a value changed meanwhile is never overwritten."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from strongroom.crypto import Keyrings, OrgKeyring
from strongroom.crypto.sealed import header
from strongroom.oauth.resealing import ResealReport, reseal_connections
from strongroom.settings import Settings
from strongroom.tenancy import TenantTable
from tests.unit.crypto.conftest import NOW, create_org, new_org_id

FIELDS = ("client_secret", "refresh_token")


@pytest.fixture
def table(stack: Any, settings: Settings) -> TenantTable:
    return TenantTable(dynamodb=boto3.client("dynamodb"), table_name=settings.table_name)


def _connection(table: TenantTable, keyring: OrgKeyring, connection_id: str) -> None:
    sealed = {
        f"sealed_{field}": keyring.seal_field(
            f"{field}-of-{connection_id}", kind="connection", item_id=connection_id, field=field
        )
        for field in FIELDS
    }
    table.create(
        keyring.org_id,
        "CONN",
        connection_id,
        attributes={"name": connection_id, "version": 1, **sealed},
        now=NOW,
    )


def _opened(table: TenantTable, keyring: OrgKeyring, connection_id: str) -> dict[str, Any]:
    item = table.get(keyring.org_id, "CONN", connection_id, now=NOW)
    return {
        field: (
            item.attributes[f"sealed_{field}"][:5],
            keyring.open_text_field(
                item.attributes[f"sealed_{field}"],
                kind="connection",
                item_id=connection_id,
                field=field,
            ),
        )
        for field in FIELDS
    }


def test_after_rotation_every_secret_moves_to_the_new_dek_with_the_same_plaintext(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable
) -> None:
    ids = [f"conn_{n}" for n in range(3)]
    for connection_id in ids:
        _connection(table, keyring, connection_id)
    other = create_org(keyrings, new_org_id())
    _connection(table, other, "conn_x")
    assert keyrings.rotate_dek(keyring.org_id, now=NOW) == 2

    report = reseal_connections(table, keyrings, keyring.org_id, now=NOW)

    assert report == ResealReport(dek_version=2, connections=3, resealed=6, already_current=0)
    for connection_id in ids:
        assert _opened(table, keyring, connection_id) == {
            field: (header(2), f"{field}-of-{connection_id}") for field in FIELDS
        }
        item = table.get(keyring.org_id, "CONN", connection_id, now=NOW)
        assert (item.attributes["name"], item.attributes["version"]) == (connection_id, 1)
    # Another org is not touched; a second run has nothing left to do.
    assert _opened(table, other, "conn_x")["client_secret"][0] == header(1)
    again = reseal_connections(table, keyrings, keyring.org_id, now=NOW)
    assert (again.resealed, again.already_current) == (0, 6)


def test_a_secret_replaced_during_the_run_is_kept_not_overwritten(
    keyrings: Keyrings,
    keyring: OrgKeyring,
    table: TenantTable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _connection(table, keyring, "conn_a")
    keyrings.rotate_dek(keyring.org_id, now=NOW)
    original = OrgKeyring.reseal_field
    replaced = {"done": False}

    def replaced_meanwhile(self: OrgKeyring, value: bytes, **where: Any) -> bytes:
        moved = original(self, value, **where)
        if not replaced["done"]:
            # An admin replaces the credential between our read and our write.
            replaced["done"] = True
            fresh = keyring.seal_field(
                "replaced", kind="connection", item_id="conn_a", field="client_secret"
            )
            table.update(
                keyring.org_id, "CONN", "conn_a", changes={"sealed_client_secret": fresh}, now=NOW
            )
        return moved

    monkeypatch.setattr(OrgKeyring, "reseal_field", replaced_meanwhile)
    report = reseal_connections(table, keyrings, keyring.org_id, now=NOW)

    opened = _opened(table, keyring, "conn_a")
    assert opened["client_secret"] == (header(2), "replaced")
    assert opened["refresh_token"] == (header(2), "refresh_token-of-conn_a")
    assert report.connections == 1
