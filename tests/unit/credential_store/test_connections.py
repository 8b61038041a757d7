"""Connections through the handler: validation per provider, sealed secrets, plans, roles, 404s."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from strongroom.audit.log import AuditLog
from strongroom.crypto import InvalidSealedValue
from strongroom_local.provision import Stack
from tests.support.http import http_event
from tests.support.keys import garbled_private_key_pem, pem_armour
from tests.unit.credential_store.conftest import Call, LambdaContext
from tests.unit.credential_store.connection_helpers import (
    DEV_HOST,
    canary,
    create,
    created,
    delete,
    ec_jwk,
    ec_pem,
    get,
    holds_a_revocable_grant,
    kms_throttled,
    listing,
    new_org,
    okta_body,
    public_only_jwk,
    revocations_recorded,
    rotate,
    rsa_jwk,
    rsa_pem,
    spki_fingerprint,
)

CC = {"method": "client_credentials", "client_id": "app", "client_secret": "s3cr3t-value"}
CODE = {"method": "authorization_code", "client_id": "app", "client_secret": "s3cr3t-value"}


@pytest.fixture(autouse=True)
def _dev_allow_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Autouse fixtures run first, so the services the handler builds see this setting.
    monkeypatch.setenv("STRONGROOM_DEV_ALLOW_HOSTS", f"{DEV_HOST},{DEV_HOST_V6}")


# An IPv6 loopback entry, written (as a URL's authority) in brackets.
DEV_HOST_V6 = "[::1]:8443"


def raw_item(stack: Stack, org: str, connection_id: str) -> dict[str, Any]:
    response = boto3.client("dynamodb").get_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection_id}"}},
        ConsistentRead=True,
    )
    return dict(response.get("Item", {}))


def org_item(stack: Stack, org: str) -> dict[str, Any]:
    response = boto3.client("dynamodb").get_item(
        TableName=stack.ref("Table"), Key={"pk": {"S": org}, "sk": {"S": "ORG"}}
    )
    return dict(response["Item"])


def set_plan(stack: Stack, org: str, plan: str) -> None:
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": "ORG"}},
        UpdateExpression="SET #p = :p",
        ExpressionAttributeNames={"#p": "plan"},
        ExpressionAttributeValues={":p": {"S": plan}},
    )


def audit_actions(app_module: Any, org: str) -> list[str]:
    log: AuditLog = app_module.services().audit
    from datetime import UTC, datetime

    page = log.list_events(org, now=datetime.now(UTC), limit=100)
    return [event.action for event in reversed(page.events)]


# ---- create, read, list ------------------------------------------------------------------------


def test_a_connection_reads_back_without_its_secret(call: Call, stack: Stack) -> None:
    org = new_org(call)
    token = canary("tok")
    connection_id = created(call, org, okta_body(token))
    assert connection_id.startswith("conn_")
    assert len(connection_id) == 31
    status, body = get(call, org, connection_id)
    assert status == 200
    assert body["domain"] == "acme.okta.com"
    assert body["scopes"] == ["okta.users.read", "okta.groups.read"]
    assert body["auth"]["method"] == "api_token"
    [credential] = body["credentials"]
    assert credential["field"] == "token"
    assert credential["value"] == "[REDACTED]"
    assert credential["fingerprint"] == "..." + token[-4:]
    assert credential["created_at"].endswith("Z")
    assert token not in json.dumps(body)
    status, page = listing(call, org)
    assert status == 200
    assert [c["connection_id"] for c in page["connections"]] == [connection_id]
    item = raw_item(stack, org, connection_id)
    assert set(item["sealed_token"]) == {"B"}
    assert token.encode() not in item["sealed_token"]["B"]


def test_each_secret_field_is_sealed_on_its_own_to_its_connection_and_field(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    secret = canary("cs")
    connection_id = created(
        call,
        org,
        okta_body(
            auth={"method": "client_credentials", "client_id": "0oa1", "client_secret": secret}
        ),
    )
    sealed = raw_item(stack, org, connection_id)["sealed_client_secret"]["B"]
    keyring = app_module.services().keyrings.for_org(org)
    opened = keyring.open_text_field(
        sealed, kind="connection", item_id=connection_id, field="client_secret"
    )
    assert opened == secret
    # Moved to another field or another connection, the value does not open.
    with pytest.raises(InvalidSealedValue):
        keyring.open_field(sealed, kind="connection", item_id=connection_id, field="token")
    with pytest.raises(InvalidSealedValue):
        keyring.open_field(
            sealed, kind="connection", item_id="conn_" + "a" * 26, field="client_secret"
        )


GOOD_KEYS = [
    (lambda: rsa_pem(2048), "RS256"),
    (lambda: rsa_jwk(4096), "RS256"),
    (lambda: rsa_jwk(2048), "RS256"),
    (lambda: ec_pem(ec.SECP384R1()), "ES384"),
    (lambda: ec_jwk(ec.SECP256R1()), "ES256"),
    (lambda: ec_pem(ec.SECP521R1()), "ES512"),
]


def test_private_keys_as_pem_or_jwk_are_stored_as_pkcs8_with_their_spki_fingerprint(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    set_plan(stack, org, "team")  # room for every key
    for make_key, algorithm in GOOD_KEYS:
        _check_good_key(call, stack, app_module, org, key_text=make_key(), algorithm=algorithm)


def _check_good_key(
    call: Call, stack: Stack, app_module: Any, org: str, *, key_text: str, algorithm: str
) -> None:
    auth = {
        "method": "private_key_jwt",
        "client_id": "0oa2",
        "private_key": key_text,
        "key_id": "k1",
    }
    connection_id = created(call, org, okta_body(auth=auth))
    sealed = raw_item(stack, org, connection_id)["sealed_private_key"]["B"]
    pem = (
        app_module.services()
        .keyrings.for_org(org)
        .open_text_field(sealed, kind="connection", item_id=connection_id, field="private_key")
    )
    assert pem.splitlines()[0] == pem_armour("pkcs8")[0]  # stored as PKCS#8 whatever the input
    _, body = get(call, org, connection_id)
    assert body["auth"] == {
        "method": "private_key_jwt",
        "client_id": "0oa2",
        "key_id": "k1",
        "key_algorithm": algorithm,
    }
    [credential] = body["credentials"]
    assert credential["fingerprint"] == spki_fingerprint(pem)
    assert credential["value"] == "[REDACTED]"


BAD_KEYS = [
    lambda: rsa_pem(1024),
    lambda: rsa_pem(4160),  # over 4096 bits: refused before its (costly) validation
    lambda: rsa_jwk(4160),
    lambda: ec_pem(ec.SECP256K1()),
    public_only_jwk,
    garbled_private_key_pem,
    lambda: '{"kty": "oct", "k": "c2VjcmV0", "d": "x"}',
    lambda: "{not json",
    # Nested past the JSON decoder's recursion bound (3.13's too): RecursionError, not a 500.
    lambda: '{"d": ' + "[" * 16000,
    lambda: (
        serialization.load_pem_private_key(rsa_pem().encode(), None)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
        .decode()
    ),
]


def test_a_weak_or_malformed_private_key_is_refused_without_being_echoed(
    call: Call, stack: Stack
) -> None:
    org = new_org(call)
    for make_key in BAD_KEYS:
        key_text = make_key()
        auth = {
            "method": "private_key_jwt",
            "client_id": "c",
            "private_key": key_text,
            "key_id": "k",
        }
        status, body = create(call, org, okta_body(auth=auth))
        assert status == 422
        assert body["error"]["code"] == "invalid_field"
        assert body["error"]["message"].startswith("auth.private_key:")
        for line in key_text.splitlines():
            if len(line) > 8:
                assert line not in json.dumps(body)
    assert "connection_count" not in org_item(stack, org)


# ---- validation ----------------------------------------------------------------------------------


PASSING = [
        {"provider": "okta", "domain": "acme.oktapreview.com"},
        {"provider": "okta", "domain": "ACME.okta-emea.com"},
        {"provider": "okta", "domain": DEV_HOST},
        {"provider": "okta", "domain": DEV_HOST_V6},
        {"provider": "auth0", "domain": "acme.eu.auth0.com"},
        {"provider": "entra", "domain": None, "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
         "auth": CC},
        {"provider": "entra", "domain": None, "tenant_id": "contoso.onmicrosoft.com",
         "auth": CODE},
        {"provider": "oauth2", "domain": None,
         "token_endpoint": f"http://{DEV_HOST}/token",
         "authorization_endpoint": f"http://{DEV_HOST}/authorize",
         "revocation_endpoint": f"http://{DEV_HOST}/revoke",
         "auth": CODE},
]  # fmt: skip


def test_provider_settings_that_pass(call: Call, stack: Stack) -> None:
    org = new_org(call)
    set_plan(stack, org, "team")
    for overrides in PASSING:
        body = {k: v for k, v in okta_body(**overrides).items() if v is not None}
        status, response = create(call, org, body)
        assert status == 201, (overrides, response)


REFUSED = [
        ({"domain": "acme.okta.com.evil.example"}, "domain"),
        ({"domain": "okta.com"}, "domain"),
        ({"domain": "acme.okta.com/path"}, "domain"),
        ({"domain": "127.0.0.1:9999"}, "domain"),
        ({"domain": None}, "domain"),
        ({"provider": "auth0", "domain": "acme.okta.com"}, "domain"),
        ({"provider": "entra", "domain": None, "tenant_id": "contoso", "auth": CC}, "tenant_id"),
        ({"provider": "entra", "domain": None, "tenant_id": "72f988bf-86f1-41af", "auth": CC},
         "tenant_id"),
        ({"provider": "entra", "domain": None, "tenant_id": "contoso.onmicrosoft.com"},
         "auth.method"),
        ({"provider": "entra", "tenant_id": "contoso.onmicrosoft.com", "auth": CC}, "domain"),
        ({"tenant_id": "contoso.onmicrosoft.com"}, "tenant_id"),
        ({"provider": "oauth2", "domain": None}, "token_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": "http://idp.example.com/t"},
         "token_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": "https://localhost/t"},
         "token_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": "https://10.0.0.1/t"},
         "token_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": f"http://{DEV_HOST}/t",
          "revocation_endpoint": "https://169.254.169.254/latest"}, "revocation_endpoint"),
        ({"provider": "oauth2", "domain": None,
          "token_endpoint": "https://idp.example.com/token?client_secret=sr-canary-url"},
         "token_endpoint"),
        ({"provider": "oauth2", "domain": None,
          "token_endpoint": "https://user:sr-canary-url@idp.example.com/token"}, "token_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": f"http://{DEV_HOST}/t",
          "authorization_endpoint": f"http://{DEV_HOST}/a?access_token=sr-canary-url"},
         "authorization_endpoint"),
        ({"provider": "oauth2", "domain": None, "token_endpoint": "https://idp.example.com/t#x"},
         "token_endpoint"),
        ({"schedule": "rate(1 hour)"}, "schedule"),
        ({"schedule": "cron(0 */6 * * ? *)"}, "schedule"),
        ({"schedule": "rate(1 days)"}, "schedule"),
        ({"schedule": "at(2030-01-01T00:00:00)"}, "schedule"),
        ({"schedule": "cron(0 3 * * * *)"}, "schedule"),
        # Never runs: its years are over, or no year has the date.
        ({"schedule": "cron(0 3 * * ? 2020)"}, "schedule"),
        ({"schedule": "cron(0 3 30 2 ? *)"}, "schedule"),
        # A digit int() refuses, and rates past any date: refused, not a 500.
        ({"schedule": "cron(0 \u00b2 * * ? *)"}, "schedule"),
        ({"schedule": "rate(999999999 days)"}, "schedule"),
        ({"schedule": "rate(99999999999999 days)"}, "schedule"),
]  # fmt: skip


def test_provider_settings_that_are_refused(call: Call, stack: Stack) -> None:
    org = new_org(call)
    for overrides, field in REFUSED:
        body = {k: v for k, v in okta_body(**overrides).items() if v is not None}
        status, response = create(call, org, body)
        assert status == 422, (overrides, response)
        assert response["error"]["message"].startswith(field + ":"), (overrides, response)
        assert "sr-canary-url" not in json.dumps(response)
    assert "connection_count" not in org_item(stack, org)
    assert listing(call, org)[1]["connections"] == []


def test_endpoint_names_resolving_to_internal_addresses_are_refused(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {"idp.example.com": ["93.184.216.34"], "rebind.example.com": ["169.254.169.254"]}
    built = dataclasses.replace(app_module.services(), resolver=lambda host, _port: answers[host])
    monkeypatch.setattr(app_module, "services", lambda: built)
    org = new_org(call)
    base = {k: v for k, v in okta_body(provider="oauth2", domain=None).items() if v is not None}
    ok = {**base, "token_endpoint": "https://idp.example.com/oauth/token"}
    assert create(call, org, ok)[0] == 201
    bad = {**base, "token_endpoint": "https://rebind.example.com/oauth/token"}
    status, response = create(call, org, bad)
    assert status == 422
    assert response["error"]["message"] == "token_endpoint: refused by the outbound guard"


def test_unknown_fields_and_methods_are_refused_and_never_echoed(call: Call) -> None:
    org = new_org(call)
    secret = canary("echo")
    attempts = [
        okta_body(secret, extra=secret),
        okta_body(auth={"method": "api_token", "token": "t" * 12, secret: "x"}),
        {**okta_body(), secret: "x"},
        okta_body(auth={"method": secret, "token": secret}),
        okta_body(auth={"method": "api_token", "token": secret + " with spaces"}),
        okta_body(auth={"method": "client_credentials", "client_secret": secret}),
    ]
    for body in attempts:
        status, response = create(call, org, body)
        assert status == 422, response
        assert secret not in json.dumps(response)
    assert listing(call, org)[1]["connections"] == []


def test_schedules_follow_the_org_plan(call: Call, stack: Stack) -> None:
    org = new_org(call)
    assert create(call, org, okta_body(schedule="cron(0 3 ? * MON *)"))[0] == 201
    assert create(call, org, okta_body(schedule="rate(30 minutes)"))[0] == 422
    set_plan(stack, org, "team")
    assert create(call, org, okta_body(schedule="rate(1 hour)"))[0] == 201
    assert create(call, org, okta_body(schedule="cron(0,30 * * * ? *)"))[0] == 422
    set_plan(stack, org, "enterprise")
    assert create(call, org, okta_body(schedule="cron(0/15 * * * ? *)"))[0] == 201
    assert create(call, org, okta_body(schedule="rate(10 minutes)"))[0] == 422
    # A plan name this code does not know is the free plan.
    set_plan(stack, org, "platinum")
    assert create(call, org, okta_body(schedule="rate(1 hour)"))[0] == 422


# ---- plan limit, rotation, deletion ------------------------------------------------------------


def test_the_plan_limits_connections_and_a_delete_frees_a_place(call: Call, stack: Stack) -> None:
    org = new_org(call)
    ids = [created(call, org, okta_body()) for _ in range(3)]
    status, body = create(call, org, okta_body())
    assert status == 429
    assert body["error"]["code"] == "rate_limited"
    assert org_item(stack, org)["connection_count"] == {"N": "3"}
    assert delete(call, org, ids[0])[0] == 204
    assert org_item(stack, org)["connection_count"] == {"N": "2"}
    created(call, org, okta_body())
    assert len(listing(call, org)[1]["connections"]) == 3


def test_rotation_replaces_the_secret_write_only_and_is_audited(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    old, new = canary("old"), canary("new")
    auth = {"method": "client_credentials", "client_id": "0oa1", "client_secret": old}
    connection_id = created(call, org, okta_body(auth=auth))
    before = raw_item(stack, org, connection_id)
    status, body = rotate(
        call, org, connection_id, {**auth, "client_secret": new, "client_id": "0oa9"}
    )
    assert status == 200
    assert new not in json.dumps(body)
    assert body["auth"]["client_id"] == "0oa9"
    assert body["credentials"][0]["fingerprint"] == "..." + new[-4:]
    after = raw_item(stack, org, connection_id)
    assert after["sealed_client_secret"] != before["sealed_client_secret"]
    opened = (
        app_module.services()
        .keyrings.for_org(org)
        .open_text_field(
            after["sealed_client_secret"]["B"],
            kind="connection",
            item_id=connection_id,
            field="client_secret",
        )
    )
    assert opened == new
    assert after["version"] == {"N": "2"}
    assert audit_actions(app_module, org)[-1] == "credential.rotate"
    # The method stays the connection's.
    status, body = rotate(call, org, connection_id, {"method": "api_token", "token": new})
    assert status == 422


def test_delete_removes_the_secrets_and_the_connection_and_is_audited(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body())
    assert delete(call, org, connection_id) == (204, None)
    assert raw_item(stack, org, connection_id) == {}
    assert get(call, org, connection_id)[0] == 404
    assert delete(call, org, connection_id)[0] == 404
    assert org_item(stack, org)["connection_count"] == {"N": "0"}
    actions = audit_actions(app_module, org)
    assert actions[-4:] == [
        "connection.create",
        "credential.write",
        "credential.delete",
        "connection.delete",
    ]


# ---- roles and other orgs ------------------------------------------------------------------------


def test_members_read_metadata_and_only_admins_change_connections(call: Call) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body(), sub="alice")
    for sub in ("alice", "bob", "carol"):
        assert get(call, org, connection_id, sub=sub)[0] == 200
        assert listing(call, org, sub=sub)[0] == 200
    auth = {"method": "api_token", "token": canary()}
    assert create(call, org, okta_body(), sub="carol")[0] == 403
    assert rotate(call, org, connection_id, auth, sub="carol")[0] == 403
    assert delete(call, org, connection_id, sub="carol")[0] == 403
    assert rotate(call, org, connection_id, auth, sub="bob")[0] == 200
    assert delete(call, org, connection_id, sub="bob")[0] == 204


def test_another_orgs_connection_answers_exactly_like_a_missing_one(call: Call) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body())
    other = new_org(call, owner="mallory")
    missing = "conn_" + "a" * 26
    auth = {"method": "api_token", "token": canary()}
    answers = []
    for target in (connection_id, missing):
        answers += [
            get(call, other, target, sub="mallory"),
            rotate(call, other, target, auth, sub="mallory"),
            delete(call, other, target, sub="mallory"),
        ]
    # Outsiders of the owning org: 404 on every route too.
    answers += [
        get(call, org, connection_id, sub="mallory"),
        listing(call, org, sub="mallory"),
        rotate(call, org, connection_id, auth, sub="mallory"),
        delete(call, org, connection_id, sub="mallory"),
        create(call, org, okta_body(), sub="mallory"),
    ]
    assert {status for status, _ in answers} == {404}
    assert len({json.dumps(body) for _, body in answers}) == 1
    assert get(call, org, connection_id)[0] == 200


def test_an_rsa_key_over_4096_bits_is_never_validated(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Validating an RSA key costs about the cube of its size: one a user may send (16384 bits
    fit the field) would hold the function for tens of seconds. Only the unvalidated parse
    that reads its size may run."""
    from cryptography.hazmat.primitives import serialization as real

    org = new_org(call)
    loads: list[bool] = []
    original = real.load_pem_private_key

    def spy(data: bytes, password: Any, **kwargs: Any) -> Any:
        loads.append(bool(kwargs.get("unsafe_skip_rsa_key_validation")))
        return original(data, password, **kwargs)

    monkeypatch.setattr(real, "load_pem_private_key", spy)
    auth = {
        "method": "private_key_jwt",
        "client_id": "c",
        "private_key": rsa_pem(4160),
        "key_id": "k",
    }
    status, _ = create(call, org, okta_body(auth=auth))
    assert status == 422
    assert loads == [True]


def test_a_provider_that_hangs_on_revocation_cannot_hold_the_delete_past_its_deadline(
    app_module: Any, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    from credential_store import revocations

    org = new_org(call)
    connection = created(call, org, okta_body())
    released = threading.Event()
    asked: list[float] = []

    def hung_provider(*_: Any, deadline: float, **__: Any) -> str:
        asked.append(deadline)
        released.wait(30)  # the provider answers only when the test lets it
        return "revoked"

    holds_a_revocable_grant(monkeypatch)
    monkeypatch.setattr(revocations, "revoke_at_provider", hung_provider)
    try:
        # It answers while the provider still hangs (the provider is released only after):
        # 1.5 s for the revocation, the rest for recording its outcome.
        status = _delete_with(app_module, org, connection, seconds_left=5.5)
    finally:
        released.set()
    assert status == 204
    # The provider's own retries were told to stop in time too.
    assert len(asked) == 1
    assert asked[0] < time.time() + 1
    assert revocations_recorded(app_module, org) == [
        ("failure", {"revocation": "timed_out", "retry_scheduled": True})
    ]


def test_a_connection_with_nothing_to_revoke_deleted_late_records_no_revocation(
    app_module: Any, call: Call
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())  # an API token: nothing to revoke

    # Already past the revocation's own deadline.
    assert _delete_with(app_module, org, connection, seconds_left=1) == 204
    services = app_module.services()
    services.audit.flush(org, now=datetime.now(UTC))
    events = services.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    assert "connection.delete" in {e.action for e in events if e.target_id == connection}
    assert revocations_recorded(app_module, org) == []


def test_a_timeout_raised_by_the_revocation_itself_is_not_taken_for_the_wait_running_out() -> None:
    from credential_store.revocations import revoke_in_time

    def socket_timed_out(_deadline: float) -> str:
        raise TimeoutError("the provider's socket timed out")

    with pytest.raises(TimeoutError, match="socket"):
        revoke_in_time(5.0, socket_timed_out)
    assert revoke_in_time(5.0, lambda _deadline: "revoked") == "revoked"
    assert revoke_in_time(0.0, lambda _deadline: "revoked") == "not_attempted"


def _delete_with(app_module: Any, org: str, connection: str, seconds_left: float) -> int:
    event = http_event(
        "DELETE",
        f"/orgs/{org}/connections/{connection}",
        sub="bob",
        route="/orgs/{org_id}/connections/{connection_id}",
        path_parameters={"org_id": org, "connection_id": connection},
    )
    return int(app_module.lambda_handler(event, LambdaContext(seconds_left))["statusCode"])


def test_a_delete_with_no_time_left_for_the_revocation_does_not_wait_for_it(
    app_module: Any, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    from credential_store import revocations

    org = new_org(call)
    connection = created(call, org, okta_body())
    tried: list[float] = []
    holds_a_revocable_grant(monkeypatch)
    monkeypatch.setattr(
        revocations, "revoke_at_provider", lambda *_, deadline, **__: tried.append(deadline) or ""
    )
    # Less time left than the answer keeps for itself: the provider is not even asked.
    assert _delete_with(app_module, org, connection, seconds_left=0.3) == 204
    assert tried == []
    assert revocations_recorded(app_module, org) == [
        ("failure", {"revocation": "not_attempted", "retry_scheduled": True})
    ]


def test_a_grant_that_cannot_be_opened_at_deletion_is_audited_as_failed_not_a_500(
    app_module: Any, call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    from credential_store import revocations

    org = new_org(call)
    connection = created(call, org, okta_body())
    holds_a_revocable_grant(monkeypatch)
    monkeypatch.setattr(revocations, "revoke_at_provider", kms_throttled)
    assert _delete_with(app_module, org, connection, seconds_left=30) == 204
    assert revocations_recorded(app_module, org) == [
        ("failure", {"revocation": "failed", "retry_scheduled": True})
    ]


def test_a_revocation_finishing_as_the_wait_runs_out_gives_its_own_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import Future

    from credential_store import revocations

    real_result = Future.result

    def ran_out_just_as_it_finished(self: Future[str], timeout: float | None = None) -> str:
        if timeout is not None:
            real_result(self)  # it finishes...
            raise TimeoutError  # ...as the wait gives up
        return str(real_result(self))

    monkeypatch.setattr(Future, "result", ran_out_just_as_it_finished)
    assert revocations.revoke_in_time(5.0, lambda _deadline: "revoked") == "revoked"


def test_a_damaged_grant_at_deletion_is_audited_as_failed_not_a_500(
    app_module: Any, call: Call, stack: Stack
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    # The item's sealed refresh token is damaged (not Binary), as a bad write could leave it.
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection}"}},
        UpdateExpression="SET sealed_refresh_token = :damaged",
        ExpressionAttributeValues={":damaged": {"S": "not-a-sealed-value"}},
    )
    assert _delete_with(app_module, org, connection, seconds_left=30) == 204
    assert revocations_recorded(app_module, org) == [
        ("failure", {"revocation": "failed", "retry_scheduled": True})
    ]
    assert get(call, org, connection)[0] == 404


def _with_grant(stack: Stack, org: str, connection: str) -> None:
    """As the OAuth callback leaves a connection: a sealed grant, its record, a token stored."""
    record = {"M": {"fingerprint": {"S": "sha256:0123456789abcdef"}, "created_at": {"S": "x"}}}
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection}"}},
        UpdateExpression=(
            "SET sealed_refresh_token = :grant, credentials.refresh_token = :record,"
            " token_generation = :one"
        ),
        ExpressionAttributeValues={
            ":grant": {"B": b"sealed"},
            ":record": record,
            ":one": {"N": "1"},
        },
    )


def _revoked_with(monkeypatch: pytest.MonkeyPatch, outcome: Any = "revoked") -> list[Any]:
    """The connections (as the revocation reads them) whose grant is revoked."""
    from credential_store import revocations

    seen: list[Any] = []
    holds_a_revocable_grant(monkeypatch)

    def revoke(_services: Any, _org: str, connection: Any, **kwargs: Any) -> str:
        seen.append(connection)
        return outcome if isinstance(outcome, str) else str(outcome(**kwargs))

    monkeypatch.setattr(revocations, "revoke_at_provider", revoke)
    return seen


def test_a_rotation_revokes_what_it_drops_as_the_client_it_was_issued_to(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body(auth=CODE))
    _with_grant(stack, org, connection)
    revoked = _revoked_with(monkeypatch)

    # The same client with a new secret: the grant stays, and its access token is left to
    # expire (a provider may revoke the whole grant with it, RFC 7009 2.1).
    assert rotate(call, org, connection, {**CODE, "client_secret": canary("new")})[0] == 200
    assert revoked == []
    stored = raw_item(stack, org, connection)
    assert "sealed_refresh_token" in stored

    # A new client: the grant goes, revoked as the old client it was issued to.
    assert rotate(call, org, connection, {**CODE, "client_id": "other-app"})[0] == 200
    [other] = revoked
    assert other.attributes["client_id"] == "app"
    assert other.attributes["sealed_client_secret"] == stored["sealed_client_secret"]["B"]
    assert other.attributes["sealed_refresh_token"] == stored["sealed_refresh_token"]["B"]
    assert "sealed_refresh_token" not in raw_item(stack, org, connection)

    # Client credentials, the same client: its token is revoked with the new secret (the old
    # one may already be disabled at the provider).
    static = created(call, org, okta_body(auth=CC))
    old_secret = raw_item(stack, org, static)["sealed_client_secret"]
    assert rotate(call, org, static, {**CC, "client_secret": canary("new")})[0] == 200
    [_, same] = revoked
    stored = raw_item(stack, org, static)
    assert same.attributes["sealed_client_secret"] == stored["sealed_client_secret"]["B"]
    assert stored["sealed_client_secret"] != old_secret
    reason = {"revocation": "revoked", "reason": "credentials_replaced"}
    assert revocations_recorded(app_module, org) == [("success", reason), ("success", reason)]


def test_a_rotation_whose_revocation_fails_still_stands_and_audits_the_failure(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body(auth=CODE))
    _with_grant(stack, org, connection)
    _revoked_with(monkeypatch, kms_throttled)
    status, body = rotate(call, org, connection, {**CODE, "client_id": "other-app"})
    assert status == 200
    assert body["status"] == "pending_authorization"
    assert "sealed_refresh_token" not in raw_item(stack, org, connection)
    assert revocations_recorded(app_module, org) == [
        (
            "failure",
            {"revocation": "failed", "reason": "credentials_replaced", "retry_scheduled": True},
        )
    ]


@pytest.mark.parametrize("meanwhile", ["refresh", "reseal"])
@pytest.mark.parametrize("change", ["rotate", "delete"])
def test_a_token_stored_while_a_rotation_or_deletion_is_made_answers_409_and_changes_nothing(
    app_module: Any,
    call: Call,
    stack: Stack,
    monkeypatch: pytest.MonkeyPatch,
    *,
    change: str,
    meanwhile: str,
) -> None:
    from credential_store import connections

    org = new_org(call)
    connection = created(call, org, okta_body(auth=CODE))
    _with_grant(stack, org, connection)
    revoked = _revoked_with(monkeypatch)
    real_find = connections._find

    def refreshed_meanwhile(*args: Any, **kwargs: Any) -> Any:
        read = real_find(*args, **kwargs)
        # A refresh stores a new grant after the read: revoking the one read would leave it
        # live. A reseal rewrites it under a newer DEK: the debt would keep the older seal.
        generation = "token_generation = :two" if meanwhile == "refresh" else "version = version"
        boto3.client("dynamodb").update_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection}"}},
            UpdateExpression=f"SET sealed_refresh_token = :newer, {generation}",
            ExpressionAttributeValues={
                ":newer": {"B": b"newer"},
                **({":two": {"N": "2"}} if meanwhile == "refresh" else {}),
            },
        )
        return read

    monkeypatch.setattr(connections, "_find", refreshed_meanwhile)
    if change == "rotate":
        status, _ = rotate(call, org, connection, {**CODE, "client_id": "other-app"})
    else:
        status, _ = delete(call, org, connection)
    assert status == 409
    stored = raw_item(stack, org, connection)
    assert stored["sealed_refresh_token"]["B"] == b"newer"
    assert stored["auth_method"]["S"] == "authorization_code"
    assert stored["client_id"]["S"] == "app"
    assert revoked == []
    assert audit_actions(app_module, org)[-1] == "credential.write"  # the creation's


def test_rotating_an_authorized_connections_secret_keeps_its_grant_and_the_grants_record(
    call: Call, stack: Stack
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body(auth=CODE))
    # As the OAuth callback leaves it: a sealed grant and its record (no secret in it).
    record = {"M": {"fingerprint": {"S": "sha256:0123456789abcdef"}, "created_at": {"S": "x"}}}
    boto3.client("dynamodb").update_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": f"CONN#{connection}"}},
        UpdateExpression="SET sealed_refresh_token = :grant, credentials.refresh_token = :record",
        ExpressionAttributeValues={":grant": {"B": b"sealed"}, ":record": record},
    )
    status, body = rotate(call, org, connection, {**CODE, "client_secret": canary("new")})
    assert status == 200
    fields = {c["field"]: c for c in body["credentials"]}
    assert fields["refresh_token"]["fingerprint"] == "sha256:0123456789abcdef"
    assert "sealed_refresh_token" in raw_item(stack, org, connection)
    # A new client, though, needs a new grant: both go.
    status, body = rotate(call, org, connection, {**CODE, "client_id": "other-app"})
    assert status == 200
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}
    assert "sealed_refresh_token" not in raw_item(stack, org, connection)
