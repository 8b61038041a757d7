"""Org keys and DEKs: KMS key creation and shredding, the table layout, rotation, errors."""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom import tenancy
from strongroom.crypto import (
    InvalidOrgId,
    InvalidSealedValue,
    KeyringConflict,
    KeyringNotFound,
    Keyrings,
    KeyringUnavailable,
    OrgKeyring,
)
from strongroom.settings import Settings
from tests.unit.crypto.conftest import NOW, CallRecorder, create_org, new_org_id

WHERE = {"kind": "connection", "item_id": "conn_01", "field": "client_secret"}
HEADER_V1 = b"\x01\x00\x00\x00\x01"  # format 1, DEK version 1
HEADER_V2 = b"\x01\x00\x00\x00\x02"  # format 1, DEK version 2
HEADER_V3 = b"\x01\x00\x00\x00\x03"  # format 1, DEK version 3


def items_of(dynamodb: Any, settings: Settings, org_id: str) -> dict[str, dict[str, Any]]:
    response = dynamodb.query(
        TableName=settings.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": org_id}},
        ConsistentRead=True,
    )
    return {item["sk"]["S"]: item for item in response["Items"]}


def test_org_key_is_customer_managed_rotating_aliased_and_tagged(
    keyrings: Keyrings, kms: Any, settings: Settings, org_id: str
) -> None:
    arn = keyrings.create_org_key(org_id)
    metadata = kms.describe_key(KeyId=arn)["KeyMetadata"]
    assert metadata["KeyManager"] == "CUSTOMER"
    assert metadata["KeySpec"] == "SYMMETRIC_DEFAULT"
    assert metadata["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert metadata["KeyState"] == "Enabled"
    assert kms.get_key_rotation_status(KeyId=arn)["KeyRotationEnabled"] is True
    aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=metadata["KeyId"])["Aliases"]]
    assert aliases == [f"alias/strongroom-{settings.stage}/org/{org_id}"]
    assert aliases == [settings.org_key_alias_prefix + org_id]
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=arn)["Tags"]}
    assert tags == {"strongroom:org_id": org_id, "strongroom:stage": settings.stage}


def test_a_second_org_key_conflicts_and_its_stray_key_is_scheduled_away(
    keyrings: Keyrings, kms: Any, org_id: str
) -> None:
    first = keyrings.create_org_key(org_id)
    before = {k["KeyId"] for k in kms.list_keys()["Keys"]}
    with pytest.raises(KeyringConflict):
        keyrings.create_org_key(org_id)
    (stray,) = {k["KeyId"] for k in kms.list_keys()["Keys"]} - before
    assert kms.describe_key(KeyId=stray)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert kms.describe_key(KeyId=first)["KeyMetadata"]["KeyState"] == "Enabled"


def test_keyring_items_have_the_documented_layout(
    keyrings: Keyrings, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    arn = keyrings.create_org_key(org_id)
    keyrings.create_keyring(org_id, kms_key_arn=arn, now=NOW)
    keyrings.rotate_dek(org_id, now=NOW + timedelta(days=1))
    items = items_of(dynamodb, settings, org_id)
    assert set(items) == {"KEYRING", "DEK#000001", "DEK#000002"}
    assert items["KEYRING"] == {
        "pk": {"S": org_id},
        "sk": {"S": "KEYRING"},
        "kms_key_arn": {"S": arn},
        "current_version": {"N": "2"},
    }
    for version, created_at in ((1, "2025-03-04T05:06:07Z"), (2, "2025-03-05T05:06:07Z")):
        item = items[f"DEK#{version:06d}"]
        assert set(item) == {"pk", "sk", "wrapped", "version", "created_at"}
        assert item["version"] == {"N": str(version)}
        assert item["created_at"] == {"S": created_at}
        assert isinstance(item["wrapped"]["B"], bytes)


def test_no_plaintext_dek_is_stored_in_the_table(
    keyrings: Keyrings, kms: Any, dynamodb: Any, settings: Settings
) -> None:
    plaintext_deks: list[bytes] = []

    def keep_plaintext(parsed: dict[str, Any], **_: Any) -> None:
        plaintext_deks.append(parsed["Plaintext"])

    kms.meta.events.register("after-call.kms.GenerateDataKey", keep_plaintext)
    org_ids = [new_org_id(), new_org_id()]
    for org_id in org_ids:
        keyring = create_org(keyrings, org_id)
        keyring.seal_field("secret", **WHERE)
        keyrings.rotate_dek(org_id, now=NOW)
    assert len(plaintext_deks) == 4
    assert all(len(dek) == 32 for dek in plaintext_deks)

    stored = repr(dynamodb.scan(TableName=settings.table_name, ConsistentRead=True)["Items"])
    stored_bytes: list[bytes] = []
    for item in dynamodb.scan(TableName=settings.table_name)["Items"]:
        stored_bytes.extend(v["B"] for v in item.values() if "B" in v)
    assert len(stored_bytes) == 4
    for dek in plaintext_deks:
        for spelling in (dek.hex(), base64.b64encode(dek).decode(), repr(dek)[2:-1]):
            assert spelling not in stored
        assert all(dek not in blob for blob in stored_bytes)


def test_data_keys_are_made_and_unwrapped_under_the_org_context(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    kms: Any,
    kms_calls: CallRecorder,
    org_id: str,
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    fresh = make_keyrings()  # a cold process: must unwrap the stored DEK
    assert fresh.for_org(org_id).open_field(sealed, **WHERE) == b"secret"
    fresh.rotate_dek(org_id, now=NOW)
    assert kms_calls.names() == ["Decrypt", "GenerateDataKey"]
    arn = kms.describe_key(KeyId=f"alias/strongroom-dev/org/{org_id}")["KeyMetadata"]["Arn"]
    (decrypt,) = kms_calls.params_of("Decrypt")
    assert decrypt["EncryptionContext"] == {"org_id": org_id}
    assert decrypt["KeyId"] == arn
    (generate,) = kms_calls.params_of("GenerateDataKey")
    assert generate["EncryptionContext"] == {"org_id": org_id}
    assert generate["KeyId"] == arn
    assert generate["KeySpec"] == "AES_256"


def test_first_keyring_generates_under_the_org_context(
    keyrings: Keyrings, kms_calls: CallRecorder, org_id: str
) -> None:
    arn = keyrings.create_org_key(org_id)
    kms_calls.clear()
    keyrings.create_keyring(org_id, kms_key_arn=arn, now=NOW)
    assert kms_calls.names() == ["GenerateDataKey"]
    (generate,) = kms_calls.params_of("GenerateDataKey")
    assert generate == {"KeyId": arn, "KeySpec": "AES_256", "EncryptionContext": {"org_id": org_id}}


def test_a_second_keyring_conflicts_and_changes_nothing(
    keyrings: Keyrings, keyring: OrgKeyring, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    before = items_of(dynamodb, settings, org_id)
    arn = before["KEYRING"]["kms_key_arn"]["S"]
    with pytest.raises(KeyringConflict):
        keyrings.create_keyring(org_id, kms_key_arn=arn, now=NOW)
    assert items_of(dynamodb, settings, org_id) == before
    assert keyring.open_field(sealed, **WHERE) == b"secret"


def test_after_rotation_old_values_open_and_new_seals_use_the_new_version(
    make_keyrings: Callable[..., Keyrings], keyrings: Keyrings, keyring: OrgKeyring, org_id: str
) -> None:
    old = keyring.seal_field("old secret", **WHERE)
    assert keyrings.rotate_dek(org_id, now=NOW) == 2
    new = keyring.seal_field("new secret", **WHERE)
    assert old[:5] == HEADER_V1
    assert new[:5] == HEADER_V2
    for reader in (keyring, make_keyrings().for_org(org_id)):
        assert reader.open_text_field(old, **WHERE) == "old secret"
        assert reader.open_text_field(new, **WHERE) == "new secret"
    assert keyrings.rotate_dek(org_id, now=NOW) == 3
    assert make_keyrings().for_org(org_id).seal_field("x", **WHERE)[:5] == HEADER_V3


def test_reseal_moves_a_value_to_the_newest_version_with_the_same_content(
    keyrings: Keyrings, keyring: OrgKeyring, org_id: str
) -> None:
    old = keyring.seal_field("secret", **WHERE)
    assert keyring.reseal_field(old, **WHERE) == old  # already current: unchanged
    keyrings.rotate_dek(org_id, now=NOW)
    resealed = keyring.reseal_field(old, **WHERE)
    assert resealed[:5] == HEADER_V2
    assert keyring.open_text_field(resealed, **WHERE) == "secret"
    assert keyring.reseal_field(resealed, **WHERE) == resealed
    with pytest.raises(InvalidSealedValue):
        keyring.reseal_field(old, **{**WHERE, "field": "token"})


@pytest.mark.usefixtures("keyring")
def test_a_rotation_that_loses_a_race_retries_on_top_of_the_winner(
    make_keyrings: Callable[..., Keyrings],
    keyrings: Keyrings,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    # Another process, with its own clients, rotates between our read and our write.
    rival = Keyrings(
        kms=boto3.client("kms", region_name="us-east-1"),
        dynamodb=boto3.client("dynamodb", region_name="us-east-1"),
        settings=settings,
    )
    rival_values: list[bytes] = []

    def rival_rotates_first(model: Any, **_: Any) -> None:
        if model.name == "TransactWriteItems" and not rival_values:
            rival.rotate_dek(org_id, now=NOW)
            rival_values.append(rival.for_org(org_id).seal_field("rival", **WHERE))

    dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", rival_rotates_first)
    assert keyrings.rotate_dek(org_id, now=NOW) == 3
    items = items_of(dynamodb, settings, org_id)
    assert set(items) == {"KEYRING", "DEK#000001", "DEK#000002", "DEK#000003"}
    assert items["KEYRING"]["current_version"] == {"N": "3"}
    # The winner's DEK 2 was not overwritten: what it sealed still opens.
    (rival_value,) = rival_values
    assert rival_value[:5] == HEADER_V2
    assert make_keyrings().for_org(org_id).open_text_field(rival_value, **WHERE) == "rival"


@pytest.mark.usefixtures("keyring")
def test_a_rotation_that_keeps_losing_reports_a_conflict(
    keyrings: Keyrings, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    rival = Keyrings(
        kms=boto3.client("kms", region_name="us-east-1"),
        dynamodb=boto3.client("dynamodb", region_name="us-east-1"),
        settings=settings,
    )

    def rival_always_first(**_: Any) -> None:
        rival.rotate_dek(org_id, now=NOW)

    dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", rival_always_first)
    with pytest.raises(KeyringConflict):
        keyrings.rotate_dek(org_id, now=NOW)
    versions = sorted(int(sk[4:]) for sk in items_of(dynamodb, settings, org_id) if sk != "KEYRING")
    assert versions == list(range(1, versions[-1] + 1))


@pytest.mark.usefixtures("atomic_aws")
def test_concurrent_rotations_give_consecutive_versions_without_forking(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    threads_count = 6
    start = threading.Barrier(threads_count)

    def rotate_and_seal(index: int) -> tuple[int, bytes]:
        session = boto3.session.Session(region_name="us-east-1")
        mine = Keyrings(
            kms=session.client("kms"), dynamodb=session.client("dynamodb"), settings=settings
        )
        start.wait()
        version = mine.rotate_dek(org_id, now=NOW)
        return version, mine.for_org(org_id).seal_field(f"secret {index}", **WHERE)

    with ThreadPoolExecutor(max_workers=threads_count) as pool:
        futures = [pool.submit(rotate_and_seal, index) for index in range(threads_count)]
        results = {index: future.result(timeout=60) for index, future in enumerate(futures)}
    assert sorted(version for version, _ in results.values()) == list(range(2, 2 + threads_count))
    items = items_of(dynamodb, settings, org_id)
    assert items["KEYRING"]["current_version"] == {"N": str(1 + threads_count)}
    assert sorted(sk for sk in items if sk != "KEYRING") == [
        f"DEK#{v:06d}" for v in range(1, 2 + threads_count)
    ]
    # Each thread's DEK is the one stored under its version: every value opens in a new process.
    reader = make_keyrings().for_org(org_id)
    for index, (version, sealed) in results.items():
        assert int.from_bytes(sealed[1:5], "big") >= version
        assert reader.open_text_field(sealed, **WHERE) == f"secret {index}"


def test_shredding_disables_the_key_and_schedules_its_deletion(
    keyrings: Keyrings, keyring: OrgKeyring, kms: Any, kms_calls: CallRecorder, org_id: str
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    assert keyrings.org_key_enabled(org_id) is True
    kms_calls.clear()
    keyrings.shred_org_key(org_id, pending_window_days=7)
    assert kms_calls.names() == ["DescribeKey", "DisableKey", "ScheduleKeyDeletion"]
    assert keyrings.org_key_enabled(org_id) is False
    assert keyrings.org_key_enabled(new_org_id()) is False  # no key at all
    assert kms_calls.params_of("ScheduleKeyDeletion")[0]["PendingWindowInDays"] == 7
    metadata = kms.describe_key(KeyId=f"alias/strongroom-dev/org/{org_id}")["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"
    assert metadata["Enabled"] is False
    # Idempotent: a retried org deletion does not fail.
    kms_calls.clear()
    keyrings.shred_org_key(org_id, pending_window_days=7)
    assert kms_calls.names() == ["DescribeKey"]
    # This process dropped the org's cached DEKs: the next open has to go to KMS. (Real KMS
    # refuses a disabled key; moto does not, so that refusal is not asserted here.)
    kms_calls.clear()
    with contextlib.suppress(KeyringUnavailable):
        keyring.open_field(sealed, **WHERE)
    assert "Decrypt" in kms_calls.names()


def test_discarding_a_keyring_deletes_every_dek_and_then_the_keyring(
    keyrings: Keyrings, keyring: OrgKeyring, stack: Any, org_id: str
) -> None:
    keyrings.rotate_dek(org_id, now=NOW)
    table = boto3.client("dynamodb", region_name="us-east-1")

    def sort_keys() -> list[str]:
        items = table.query(
            TableName=stack.ref("Table"),
            KeyConditionExpression="pk = :org",
            ExpressionAttributeValues={":org": {"S": org_id}},
        )["Items"]
        return sorted(item["sk"]["S"] for item in items)

    assert sort_keys() == ["DEK#000001", "DEK#000002", "KEYRING"]
    keyrings.discard_keyring(org_id)
    assert sort_keys() == []
    keyrings.discard_keyring(org_id)  # idempotent: a retried deletion does not fail


def test_shredding_checks_its_window_and_the_org(keyrings: Keyrings, keyring: OrgKeyring) -> None:
    for days in (6, 31):
        with pytest.raises(ValueError, match="7 to 30"):
            keyrings.shred_org_key(keyring.org_id, pending_window_days=days)
    with pytest.raises(KeyringNotFound):
        keyrings.shred_org_key(new_org_id(), pending_window_days=30)


def test_sealing_or_rotating_for_an_org_without_keyring_is_not_found(keyrings: Keyrings) -> None:
    org_id = new_org_id()
    with pytest.raises(KeyringNotFound):
        keyrings.for_org(org_id).seal_field("secret", **WHERE)
    with pytest.raises(KeyringNotFound):
        keyrings.rotate_dek(org_id, now=NOW)


def _kms_fails_with(code: str) -> Callable[..., Any]:
    def respond(**_: Any) -> tuple[Any, dict[str, Any]]:
        http = type("Response", (), {"status_code": 500, "headers": {}})()
        return http, {"Error": {"Code": code, "Message": "unavailable"}, "ResponseMetadata": {}}

    return respond


def test_kms_and_table_failures_are_unavailable_not_invalid(
    make_keyrings: Callable[..., Keyrings], keyring: OrgKeyring, org_id: str
) -> None:
    sealed = keyring.seal_field("secret", **WHERE)
    outages: list[tuple[str, str, Any]] = [
        ("kms", "Decrypt", _kms_fails_with("KMSInternalException")),
        ("kms", "Decrypt", _kms_fails_with("DisabledException")),
        ("dynamodb", "TransactGetItems", _kms_fails_with("InternalServerError")),
    ]
    for service, operation, respond in outages:
        cold = make_keyrings()
        client = cold._kms if service == "kms" else cold._dynamodb
        client.meta.events.register(f"before-call.{service}.{operation}", respond)
        try:
            with pytest.raises(KeyringUnavailable) as caught:
                cold.for_org(org_id).open_field(sealed, **WHERE)
        finally:
            client.meta.events.unregister(f"before-call.{service}.{operation}", respond)
        assert not isinstance(caught.value, InvalidSealedValue)

    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com")

    cold = make_keyrings()
    cold._kms.meta.events.register("before-call.kms.GenerateDataKey", unreachable)
    try:
        with pytest.raises(KeyringUnavailable, match="EndpointConnectionError"):
            cold.rotate_dek(org_id, now=NOW)
    finally:
        cold._kms.meta.events.unregister("before-call.kms.GenerateDataKey", unreachable)
    cold._dynamodb.meta.events.register(
        "before-call.dynamodb.GetItem", _kms_fails_with("ProvisionedThroughputExceededException")
    )
    with pytest.raises(KeyringUnavailable):
        cold.for_org(org_id).seal_field("secret", **WHERE)


def test_a_damaged_keyring_is_unavailable_not_invalid(
    make_keyrings: Callable[..., Keyrings],
    keyring: OrgKeyring,
    dynamodb: Any,
    settings: Settings,
) -> None:
    org_id = keyring.org_id
    sealed = keyring.seal_field("secret", **WHERE)
    dek_key = {"pk": {"S": org_id}, "sk": {"S": "DEK#000001"}}
    dek_item = dynamodb.get_item(TableName=settings.table_name, Key=dek_key)["Item"]
    dynamodb.delete_item(TableName=settings.table_name, Key=dek_key)
    # The keyring names version 1, which is gone: sealing cannot go on.
    with pytest.raises(KeyringUnavailable):
        make_keyrings().for_org(org_id).seal_field("secret", **WHERE)
    # A value naming a version the org does not have is just not ours.
    with pytest.raises(InvalidSealedValue):
        make_keyrings().for_org(org_id).open_field(sealed, **WHERE)
    dynamodb.put_item(TableName=settings.table_name, Item={**dek_item, "wrapped": {"B": b"x"}})
    with pytest.raises(KeyringUnavailable, match="InvalidCiphertextException"):
        make_keyrings().for_org(org_id).open_field(sealed, **WHERE)
    dynamodb.update_item(
        TableName=settings.table_name,
        Key={"pk": {"S": org_id}, "sk": {"S": "KEYRING"}},
        UpdateExpression="SET current_version = :bad",
        ExpressionAttributeValues={":bad": {"S": "one"}},
    )
    with pytest.raises(KeyringUnavailable, match="malformed"):
        make_keyrings().for_org(org_id).seal_field("secret", **WHERE)


MALFORMED_ORG_IDS: list[Any] = [
    "",
    "org_",
    "org_" + "a" * 25,
    "org_" + "a" * 27,
    "org_" + "A" * 26,
    "ORG_" + "a" * 26,
    "org_" + "a" * 25 + "1",
    "org_" + "a" * 25 + "8",
    "org_" + "a" * 26 + "\n",
    "org_" + "a" * 25 + "/",
    "org-" + "a" * 26,
    None,
    12345,
]


def test_malformed_org_ids_are_refused_before_any_call(
    keyrings: Keyrings, kms_calls: CallRecorder, dynamodb_calls: CallRecorder
) -> None:
    arn = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    entry_points: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (keyrings.for_org, {}),
        (keyrings.create_org_key, {}),
        (keyrings.create_keyring, {"kms_key_arn": arn, "now": NOW}),
        (keyrings.rotate_dek, {"now": NOW}),
        (keyrings.shred_org_key, {"pending_window_days": 7}),
    ]
    for bad in MALFORMED_ORG_IDS:
        for entry_point, kwargs in entry_points:
            with pytest.raises(InvalidOrgId) as caught:
                entry_point(bad, **kwargs)
            assert str(caught.value) == "org id is malformed"
            # One org-id rule: tenancy's. Callers may catch either concern's error.
            assert isinstance(caught.value, tenancy.InvalidOrgId)
        with pytest.raises(tenancy.InvalidOrgId):
            tenancy.validate_org_id(bad)
    assert kms_calls.calls == []
    assert dynamodb_calls.calls == []
    assert keyrings.for_org(new_org_id()).org_id.startswith("org_")


def test_times_must_be_timezone_aware(keyrings: Keyrings, keyring: OrgKeyring) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        keyrings.rotate_dek(keyring.org_id, now=NOW.replace(tzinfo=None))
