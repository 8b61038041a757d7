"""DEK rotation and re-encryption (the operator commands): every connection secret moves to the
current DEK with the same plaintext, each rewrite and the rotation are audited with them, a value
changed meanwhile is never overwritten, and a run too soon after the rotation says so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import boto3
import pytest

from strongroom.audit import AuditLog
from strongroom.crypto import Keyrings, KeyringUnavailable, OrgKeyring
from strongroom.crypto.sealed import header
from strongroom.operator_commands import reseal, rotate_dek
from strongroom.settings import Settings
from strongroom.tenancy import TenantTable
from tests.unit.crypto.conftest import NOW, create_org, new_org_id

FIELDS = ("client_secret", "refresh_token")
# Past the warm caches' max age and the longest request since the rotation at NOW.
SETTLED = NOW + timedelta(minutes=30)


@pytest.fixture
def table(stack: Any, settings: Settings) -> TenantTable:
    return TenantTable(dynamodb=boto3.client("dynamodb"), table_name=settings.table_name)


@pytest.fixture
def audit(stack: Any, settings: Settings) -> AuditLog:
    return AuditLog(s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"), settings=settings)


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


def _run(
    table: TenantTable, keyrings: Keyrings, audit: AuditLog, org_id: str, now: Any = SETTLED
) -> Any:
    return reseal(table, keyrings, audit, org_id, actor="operator:test", now=now, request_id="r")


def _events(audit: AuditLog, org_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    page = audit.list_events(org_id, now=SETTLED, limit=100)
    return [(e.action, e.target_id, dict(e.details)) for e in reversed(page.events)]


def test_after_rotation_every_secret_moves_to_the_new_dek_audited_connection_by_connection(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable, audit: AuditLog
) -> None:
    org_id = keyring.org_id
    ids = [f"conn_{n}" for n in range(3)]
    for connection_id in ids:
        _connection(table, keyring, connection_id)
    other = create_org(keyrings, new_org_id())
    _connection(table, other, "conn_x")
    version = rotate_dek(
        table, keyrings, audit, org_id, actor="operator:test", now=NOW, request_id="r"
    )
    assert version == 2

    report = _run(table, keyrings, audit, org_id)

    assert (report.dek_version, report.connections, report.resealed, report.already_current) == (
        2,
        3,
        6,
        0,
    )
    assert (report.settled, report.run_again_after) == (True, None)
    for connection_id in ids:
        assert _opened(table, keyring, connection_id) == {
            field: (header(2), f"{field}-of-{connection_id}") for field in FIELDS
        }
        item = table.get(org_id, "CONN", connection_id, now=NOW)
        assert (item.attributes["name"], item.attributes["version"]) == (connection_id, 1)
    assert _events(audit, org_id) == [
        ("dek.rotate", org_id, {"dek_version": 2}),
        *(("credential.reseal", c, {"fields": list(FIELDS), "dek_version": 2}) for c in ids),
    ]
    # Another org is not touched; a second run has nothing left to do, and audits nothing.
    assert _opened(table, other, "conn_x")["client_secret"][0] == header(1)
    again = _run(table, keyrings, audit, org_id)
    assert (again.resealed, again.already_current) == (0, 6)
    assert len(_events(audit, org_id)) == 4


def test_a_revocation_still_owed_moves_to_the_new_dek_and_still_opens_as_its_connection(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable, audit: AuditLog
) -> None:
    org_id = keyring.org_id
    _connection(table, keyring, "conn_gone")
    # As a deletion leaves it: the connection's values, copied to the revocation it owes.
    dropped = table.get(org_id, "CONN", "conn_gone", now=NOW)
    table.delete(org_id, "CONN", "conn_gone", now=NOW)
    table.create(
        org_id,
        "REVOCATION",
        "rev_1",
        attributes={**dropped.attributes, "connection_id": "conn_gone", "attempts": 1},
        now=NOW,
    )
    rotate_dek(table, keyrings, audit, org_id, actor="operator:test", now=NOW, request_id="r")

    report = _run(table, keyrings, audit, org_id)

    assert (report.connections, report.resealed, report.already_current) == (0, 2, 0)
    owed = table.get(org_id, "REVOCATION", "rev_1", now=NOW).attributes
    for field in FIELDS:
        value = owed[f"sealed_{field}"]
        assert value[:5] == header(2)
        assert keyring.open_text_field(
            value, kind="connection", item_id="conn_gone", field=field
        ) == (f"{field}-of-conn_gone")
    assert owed["attempts"] == 1
    assert _events(audit, org_id)[-1] == (
        "credential.reseal",
        "conn_gone",
        {"fields": list(FIELDS), "dek_version": 2},
    )


def test_a_value_that_does_not_open_is_left_audited_and_the_run_goes_on(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable, audit: AuditLog
) -> None:
    org_id = keyring.org_id
    ids = ["conn_a", "conn_b", "conn_c"]
    for connection_id in ids:
        _connection(table, keyring, connection_id)
    # conn_b's refresh token is damaged (or was sealed for another item): it cannot move.
    damaged = table.get(org_id, "CONN", "conn_a", now=NOW).attributes["sealed_refresh_token"]
    table.update(org_id, "CONN", "conn_b", changes={"sealed_refresh_token": damaged}, now=NOW)
    rotate_dek(table, keyrings, audit, org_id, actor="operator:test", now=NOW, request_id="r")

    report = _run(table, keyrings, audit, org_id)

    assert report.unopenable == ("conn_b",)
    assert (report.connections, report.resealed, report.already_current) == (3, 5, 0)
    for connection_id in ("conn_a", "conn_c"):
        assert _opened(table, keyring, connection_id) == {
            field: (header(2), f"{field}-of-{connection_id}") for field in FIELDS
        }
    stored = table.get(org_id, "CONN", "conn_b", now=NOW).attributes
    assert stored["sealed_refresh_token"] == damaged  # left as it was
    assert stored["sealed_client_secret"][:5] == header(2)  # its other value moved
    events = _events(audit, org_id)
    assert (
        "credential.reseal",
        "conn_b",
        {"fields": ["refresh_token"], "reason": "unopenable"},
    ) in events
    failures = [
        e
        for e in audit.list_events(org_id, now=SETTLED, limit=100).events
        if e.outcome == "failure"
    ]
    assert [(e.action, e.target_id) for e in failures] == [("credential.reseal", "conn_b")]


def test_a_run_soon_after_the_rotation_says_when_warm_caches_are_done_with_the_old_dek(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable, audit: AuditLog, settings: Settings
) -> None:
    _connection(table, keyring, "conn_a")
    keyrings.rotate_dek(keyring.org_id, now=NOW)
    soon = _run(table, keyrings, audit, keyring.org_id, now=NOW + timedelta(seconds=5))
    assert soon.resealed == 2
    settles = NOW + timedelta(seconds=settings.dek_cache_max_age_seconds, minutes=15)
    assert (soon.settled, soon.run_again_after) == (
        False,
        settles.isoformat().replace("+00:00", "Z"),
    )
    assert _run(table, keyrings, audit, keyring.org_id, now=settles).settled is True


def test_a_value_under_a_newer_dek_than_the_run_knows_is_never_moved_back(
    make_keyrings: Any, keyring: OrgKeyring, table: TenantTable, audit: AuditLog
) -> None:
    org_id = keyring.org_id
    _connection(table, keyring, "conn_a")
    stale = make_keyrings()  # another process
    stale.rotate_dek(org_id, now=NOW)  # v2, and it caches v2 as current
    fresh = make_keyrings()
    fresh.rotate_dek(org_id, now=NOW)  # v3
    newer = fresh.for_org(org_id).seal_field(
        "rotated-meanwhile", kind="connection", item_id="conn_a", field="client_secret"
    )
    table.update(org_id, "CONN", "conn_a", changes={"sealed_client_secret": newer}, now=NOW)
    moved = stale.for_org(org_id).reseal_field(
        newer, kind="connection", item_id="conn_a", field="client_secret"
    )
    assert moved == newer  # not resealed down to the v2 this process still has as current


def test_a_secret_replaced_during_the_run_is_kept_not_overwritten(
    keyrings: Keyrings,
    keyring: OrgKeyring,
    table: TenantTable,
    audit: AuditLog,
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
                keyring.org_id,
                "CONN",
                "conn_a",
                changes={"sealed_client_secret": fresh},
                now=NOW,
            )
        return moved

    monkeypatch.setattr(OrgKeyring, "reseal_field", replaced_meanwhile)
    report = _run(table, keyrings, audit, keyring.org_id)

    opened = _opened(table, keyring, "conn_a")
    assert opened["client_secret"] == (header(2), "replaced")
    assert opened["refresh_token"] == (header(2), "refresh_token-of-conn_a")
    assert report.connections == 1


def test_a_rotation_whose_audit_entry_cannot_be_written_does_not_happen(
    keyrings: Keyrings, keyring: OrgKeyring, table: TenantTable, audit: AuditLog
) -> None:
    org_id = keyring.org_id

    def refused(version: int) -> list[Any]:
        # A write that fails its condition, as an audit entry's would if it could not be made.
        return [
            {
                "ConditionCheck": {
                    "TableName": table._store.table,
                    "Key": {"pk": {"S": org_id}, "sk": {"S": "NOT_THERE"}},
                    "ConditionExpression": "attribute_exists(pk)",
                }
            }
        ]

    calls: list[int] = []

    def counted(version: int) -> list[Any]:
        calls.append(version)
        return refused(version)

    # Not taken for a lost race and retried: the rotation fails at once, and nothing changed.
    with pytest.raises(KeyringUnavailable):
        keyrings.rotate_dek(org_id, now=NOW, also=counted)
    assert calls == [2]
    assert keyrings.dek_in_use(org_id).version == 1
