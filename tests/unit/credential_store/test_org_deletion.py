"""DELETE /orgs/{org_id}: owner with a fresh sign-in only; the key shredded; nothing of the org
left but its audit chain; a deletion stopped for time or by a fault goes on when asked again."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from credential_store import connections, org_deletion, orgs, revocations

from strongroom.api import Caller
from strongroom.audit import AuditLog, AuditUnavailable
from strongroom.crypto import KeyringUnavailable
from strongroom_local.provision import Stack
from tests.support.http import http_event
from tests.unit.credential_store.conftest import Call, Invoke, LambdaContext
from tests.unit.credential_store.connection_helpers import (
    canary,
    create,
    created,
    new_org,
    okta_body,
    rotate,
)

ORG_ROUTE = "/orgs/{org_id}"


def _fresh() -> dict[str, str]:
    return {"auth_time": str(int(time.time()) - 10)}


def _delete(call: Call, org: str, sub: str = "alice", **claims: str) -> tuple[int, Any]:
    return call(
        "DELETE",
        f"/orgs/{org}",
        sub=sub,
        route=ORG_ROUTE,
        path_parameters={"org_id": org},
        claims=claims or _fresh(),
    )


def _get_org(call: Call, org: str, sub: str) -> int:
    status, _ = call(
        "GET", f"/orgs/{org}", sub=sub, route=ORG_ROUTE, path_parameters={"org_id": org}
    )
    return status


def _partition(stack: Stack, org: str) -> set[str]:
    """Sort keys of every item in the org's partition, expired or not."""
    dynamodb = boto3.client("dynamodb")
    items = dynamodb.query(
        TableName=stack.ref("Table"),
        KeyConditionExpression="pk = :org",
        ExpressionAttributeValues={":org": {"S": org}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"] for item in items}


def _schedule_entries(stack: Stack, org: str) -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=stack.ref("Table"))["Items"]
    return [
        item["pk"]["S"]
        for item in items
        if item["pk"]["S"].startswith("BACKUP_SCHEDULE#") and org in item["pk"]["S"]
    ]


def _key_state(org: str) -> dict[str, Any]:
    kms = boto3.client("kms", region_name="us-east-1")
    return kms.describe_key(KeyId=f"alias/strongroom-dev/org/{org}")["KeyMetadata"]


def _actions(app_module: Any, org: str) -> list[tuple[str, str, str]]:
    services = app_module.services()
    now = datetime.now(UTC)
    services.audit.flush(org, now=now)
    page = services.audit.list_events(org, now=now, limit=100)
    assert not page.missing
    return [(e.action, e.target_id, e.outcome) for e in reversed(page.events)]


def test_an_owner_with_a_fresh_sign_in_deletes_the_org_and_shreds_its_key(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    first = created(call, org, okta_body())
    second = created(call, org, okta_body(name="Second"))
    assert len(_schedule_entries(stack, org)) == 2

    assert _delete(call, org) == (204, None)

    # Nobody can reach it: the same 404 as an org that never existed.
    for sub in ("alice", "bob", "carol", "mallory"):
        assert _get_org(call, org, sub) == 404
    # Only the audit chain's head is left of the partition; no schedule will run.
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    assert _schedule_entries(stack, org) == []
    # The key: disabled at once and scheduled for deletion after the longest window.
    key = _key_state(org)
    assert key["KeyState"] == "PendingDeletion"
    assert key["DeletionDate"].date() > datetime.now(UTC).date()
    actions = _actions(app_module, org)
    deletion = actions[[a for a, _, _ in actions].index("org.delete") :]
    assert deletion[0] == ("org.delete", org, "success")
    # Every membership and credential the deletion removed has its entry.
    assert sorted(deletion[1:]) == sorted(
        [
            *(("member.remove", user, "success") for user in ("alice", "bob", "carol")),
            *(
                (action, connection, "success")
                for connection in (first, second)
                for action in ("credential.delete", "connection.delete")
            ),
        ]
    )
    assert app_module.services().audit.verify_chain(org, now=datetime.now(UTC)).ok
    # A second DELETE finds nothing.
    assert _delete(call, org)[0] == 404


@pytest.mark.parametrize(
    "auth_time",
    [-301, 120, "not-a-time", None],  # seconds from now (when the test runs), or as given
    ids=["stale", "future", "malformed", "absent"],
)
def test_without_a_fresh_sign_in_the_answer_is_reauth_required_and_nothing_changes(
    invoke: Invoke, call: Call, stack: Stack, auth_time: int | str | None
) -> None:
    org = new_org(call)
    created(call, org, okta_body())
    before = _partition(stack, org)
    event = http_event("DELETE", f"/orgs/{org}", route=ORG_ROUTE, path_parameters={"org_id": org})
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    if auth_time is None:
        del claims["auth_time"]
    elif isinstance(auth_time, int):
        claims["auth_time"] = str(int(time.time()) + auth_time)
    else:
        claims["auth_time"] = auth_time
    status, body = invoke(event)
    assert status == 401
    assert body["error"]["code"] == "reauth_required"
    assert _partition(stack, org) == before
    assert _key_state(org)["KeyState"] == "Enabled"


def test_only_the_owner_may_delete_others_learn_nothing(call: Call, stack: Stack) -> None:
    org = new_org(call)
    before = _partition(stack, org)
    assert _delete(call, org, sub="bob")[0] == 403  # admin
    assert _delete(call, org, sub="carol")[0] == 403  # member
    outsider = _delete(call, org, sub="mallory")
    unknown = _delete(call, "org_" + "a" * 26, sub="mallory")
    assert outsider == unknown
    assert outsider[0] == 404
    assert _partition(stack, org) == before
    assert _key_state(org)["KeyState"] == "Enabled"


def test_a_deletion_stopped_for_time_has_shredded_the_key_and_goes_on_when_asked_again(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    connections = [created(call, org, okta_body(name=f"C{n}")) for n in range(3)]
    services = app_module.services()
    alice = Caller(sub="alice", auth_time=int(time.time()))
    ticks = iter(range(1000))

    def clock() -> float:
        return float(next(ticks))

    # Out of time from the start: no revocation is tried, the key is shredded all the same,
    # and no item is deleted.
    stopped = org_deletion.delete_org(
        services, alice, org, now=datetime.now(UTC), request_id="r1", deadline=0.0, clock=clock
    )
    assert stopped.done is False
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    # Only the deleting owner is still a member; the org and its connections are still there,
    # and the org says its deletion is under way.
    status, body = call("GET", f"/orgs/{org}", route=ORG_ROUTE, path_parameters={"org_id": org})
    assert status == 200
    assert body["deletion_started_at"] is not None
    assert _get_org(call, org, "bob") == 404
    left = _partition(stack, org)
    assert {f"CONN#{c}" for c in connections} <= left
    assert "MEMBER#alice" in left
    assert "MEMBER#bob" not in left

    done = org_deletion.delete_org(
        services, alice, org, now=datetime.now(UTC), request_id="r2", deadline=1e9, clock=clock
    )
    assert done.done is True
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    # One org.delete for the whole deletion, however many requests it took.
    assert [a for a, _, _ in _actions(app_module, org)].count("org.delete") == 1


def test_a_request_short_of_time_answers_deleting_and_the_next_one_finishes(
    app_module: Any, call: Call, stack: Stack
) -> None:
    org = new_org(call)
    created(call, org, okta_body())

    event = http_event("DELETE", f"/orgs/{org}", route=ORG_ROUTE, path_parameters={"org_id": org})
    event["requestContext"]["authorizer"]["jwt"]["claims"].update(_fresh())
    # Less time left than the margin the answer keeps for itself.
    response = app_module.lambda_handler(event, LambdaContext(seconds_left=1))
    assert response["statusCode"] == 202
    assert json.loads(response["body"]) == {"status": "deleting"}
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _get_org(call, org, "alice") == 200
    assert _get_org(call, org, "bob") == 404
    assert _delete(call, org) == (204, None)
    assert _partition(stack, org) == {"AUDIT#HEAD"}


def test_revocations_left_untried_for_time_are_audited_as_not_attempted(
    call: Call, app_module: Any
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    services = app_module.services()
    alice = Caller(sub="alice", auth_time=int(time.time()))
    # The deadline is already within the revocations' reserve: none is tried.
    org_deletion.delete_org(
        services,
        alice,
        org,
        now=datetime.now(UTC),
        request_id="r1",
        deadline=org_deletion.REVOCATION_RESERVE_SECONDS - 1,
        clock=lambda: 0.0,
    )
    services.audit.flush(org, now=datetime.now(UTC))
    events = services.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    revokes = [e for e in events if e.action == "credential.revoke"]
    assert [(e.target_id, e.outcome, e.details) for e in revokes] == [
        (connection, "failure", {"revocation": "not_attempted", "reason": "org_deleted"})
    ]


def test_a_store_fault_midway_leaves_a_deletion_the_owner_can_finish(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    created(call, org, okta_body(token=canary("tok")))
    hooks = app_module.services().table._store.client.meta.events
    failing = {"now": False}

    def fail(request: Any, **_: Any) -> AWSResponse | None:
        if not failing["now"]:
            return None
        return AWSResponse(request.url, 500, {}, _Body(b'{"__type":"InternalServerError"}'))

    hooks.register_first("before-send.dynamodb.TransactWriteItems", fail)
    original = org_deletion._delete_connection

    def failing_delete(*args: Any, **kwargs: Any) -> None:
        # The connection's delete, after the key is shredded, fails (every retry of it).
        failing["now"] = True
        try:
            original(*args, **kwargs)
        finally:
            failing["now"] = False

    monkeypatch.setattr(org_deletion, "_delete_connection", failing_delete)
    status, body = _delete(call, org)
    assert (status, body["error"]["code"]) == (500, "internal_error")
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _get_org(call, org, "alice") == 200
    assert _get_org(call, org, "bob") == 404

    monkeypatch.setattr(org_deletion, "_delete_connection", original)
    assert _delete(call, org) == (204, None)
    assert _partition(stack, org) == {"AUDIT#HEAD"}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def _kms_refuses_unusable_keys(client: Any) -> None:
    """Make `client` refuse Decrypt with a key that is not enabled, as KMS does (moto does not)."""
    probe = boto3.client("kms", region_name="us-east-1")

    def refuse(params: dict[str, Any], **_: Any) -> None:
        key = params.get("KeyId")
        if key and probe.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] != "Enabled":
            raise ClientError({"Error": {"Code": "DisabledException"}}, "Decrypt")

    client.meta.events.register("before-parameter-build.kms.Decrypt", refuse)


def test_a_shredding_cut_short_is_finished_by_the_next_delete_without_reopening_grants(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    created(call, org, okta_body())

    def revocation_opening_the_grant(services: Any, org_id: str, *_: Any, **__: Any) -> str:
        # As for a refresh token: its value is opened with the org's data key.
        services.keyrings.cache.forget(org_id)
        keyring = services.keyrings.for_org(org_id)
        keyring.seal_field("grant", kind="connection", item_id="c", field="refresh_token")
        return "revoked"

    monkeypatch.setattr(revocations, "revoke_at_provider", revocation_opening_the_grant)
    kms = app_module.services().keyrings._kms
    _kms_refuses_unusable_keys(kms)
    app_module.services().keyrings.cache.forget(org)
    throttled = {"left": 1}

    def throttle(**_: Any) -> None:
        if throttled["left"]:
            throttled["left"] -= 1
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "ScheduleKeyDeletion")

    # The key is disabled, then scheduling its deletion fails (botocore's retries spent).
    kms.meta.events.register("before-parameter-build.kms.ScheduleKeyDeletion", throttle)
    assert _delete(call, org)[0] == 500
    assert _key_state(org)["KeyState"] == "Disabled"
    # The next DELETE tries no revocation (nothing can be opened with a disabled key) and
    # finishes the shredding and the rest.
    assert _delete(call, org) == (204, None)
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _partition(stack, org) == {"AUDIT#HEAD"}


def test_a_hung_revocation_is_abandoned_at_the_deadline_and_the_key_is_shredded(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    released = threading.Event()

    def hung_provider(*_: Any, **__: Any) -> str:
        released.wait(30)
        return "revoked"

    monkeypatch.setattr(revocations, "revoke_at_provider", hung_provider)
    services = app_module.services()
    alice = Caller(sub="alice", auth_time=int(time.time()))
    # Time for the steps before the revocation even on a busy machine (with less, it is
    # not attempted at all), and far less than the provider's 30 s hang.
    window = 3.0
    started = time.monotonic()
    try:
        result = org_deletion.delete_org(
            services,
            alice,
            org,
            now=datetime.now(UTC),
            request_id="r1",
            deadline=started + org_deletion.REVOCATION_RESERVE_SECONDS + window,
        )
        waited = time.monotonic() - started
    finally:
        released.set()
    assert result.done is True
    assert waited < org_deletion.REVOCATION_RESERVE_SECONDS + window  # not the provider's 30 s
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    services.audit.flush(org, now=datetime.now(UTC))
    events = services.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    assert [
        (e.target_id, e.details["revocation"]) for e in events if e.action == "credential.revoke"
    ] == [(connection, "timed_out")]


def _overtaken(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Each call of org_deletion's `step` is made twice: a concurrent DELETE's first, then this
    request's own, on the item it listed."""
    original = getattr(org_deletion, step)

    def twice(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        original(*args, **kwargs)

    monkeypatch.setattr(org_deletion, step, twice)


def test_a_connection_deleted_by_a_concurrent_deletion_is_audited_once(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    _overtaken(monkeypatch, "_delete_connection")
    assert _delete(call, org) == (204, None)
    actions = _actions(app_module, org)
    assert actions.count(("connection.delete", connection, "success")) == 1
    assert actions.count(("credential.delete", connection, "success")) == 1


def test_a_transient_key_failure_during_revocation_stops_before_the_shredding(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    attempts: list[str] = []

    def throttled_once(*_: Any, deadline: float, **__: Any) -> str:
        # The provider's retries are bounded too: before the request's own deadline.
        assert time.time() < deadline < time.time() + 30
        attempts.append("tried")
        if len(attempts) == 1:
            raise KeyringUnavailable("KMS Decrypt failed (ThrottlingException)")
        return "revoked"

    monkeypatch.setattr(revocations, "revoke_at_provider", throttled_once)
    assert _delete(call, org)[0] == 500
    # The key is intact, so the next DELETE can still open and revoke the grant.
    assert _key_state(org)["KeyState"] == "Enabled"
    assert _delete(call, org) == (204, None)
    assert attempts == ["tried", "tried"]
    assert ("credential.revoke", connection, "success") in _actions(app_module, org)


def test_a_grant_that_cannot_be_revoked_is_audited_as_failed_and_the_deletion_finishes(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())

    def broken(*_: Any, **__: Any) -> str:
        raise ValueError("the stored private key no longer loads")

    monkeypatch.setattr(revocations, "revoke_at_provider", broken)
    assert _delete(call, org) == (204, None)
    assert ("credential.revoke", connection, "failure") in _actions(app_module, org)


def test_outcomes_that_cannot_be_audited_stop_the_deletion_before_the_shredding(
    call: Call, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    created(call, org, okta_body())
    monkeypatch.setattr(revocations, "revoke_at_provider", lambda *_, **__: "revoked")

    def audit_down(*_: Any, **__: Any) -> None:
        raise AuditUnavailable("recording audit entries failed")

    with monkeypatch.context() as patch:
        patch.setattr(AuditLog, "record", audit_down)
        assert _delete(call, org)[0] == 500
    assert _key_state(org)["KeyState"] == "Enabled"
    assert _delete(call, org) == (204, None)


def test_a_member_removed_by_a_concurrent_deletion_is_audited_once(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _overtaken(monkeypatch, "_remove_member")
    assert _delete(call, org) == (204, None)
    actions = _actions(app_module, org)
    assert actions.count(("member.remove", "bob", "success")) == 1
    assert actions.count(("member.remove", "carol", "success")) == 1


def _put_member(call: Call, org: str, user: str, role: str, sub: str = "alice") -> tuple[int, Any]:
    return call(
        "PUT",
        f"/orgs/{org}/members/{user}",
        sub=sub,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
        body={"role": role},
    )


@pytest.mark.parametrize("role", ["owner", "admin"])
@pytest.mark.parametrize("read_before_the_deletion", [False, True])
def test_no_member_is_added_while_the_org_is_deleted_so_none_outlives_it(
    *,
    call: Call,
    stack: Stack,
    app_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    role: str,
    read_before_the_deletion: bool,
) -> None:
    org = new_org(call)
    if read_before_the_deletion:
        # The request read the org before the deletion shredded its key: its write's condition
        # holds.
        monkeypatch.setattr(orgs, "_refuse_if_shredded", lambda *_, **__: None)
    keyrings = app_module.services().keyrings
    original = keyrings.discard_keyring
    added: list[tuple[int, Any]] = []

    def owner_adds_a_member_meanwhile(org_id: str) -> None:
        # Every item has been deleted but the org and the owner's membership: a member added
        # now would be passed over by the deletion and outlive the org.
        added.append(_put_member(call, org, "mallory", role))
        original(org_id)

    monkeypatch.setattr(keyrings, "discard_keyring", owner_adds_a_member_meanwhile)
    assert _delete(call, org) == (204, None)
    # The cause told as it is, whether the read or the write's own condition refused it.
    assert added == [(409, BEING_DELETED)]
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    status, _ = call(
        "GET",
        f"/orgs/{org}/members",
        sub="mallory",
        route="/orgs/{org_id}/members",
        path_parameters={"org_id": org},
    )
    assert status == 404


BEING_DELETED = {"error": {"code": "conflict", "message": "The org is being deleted."}}


@pytest.mark.parametrize("read_before_the_deletion", [False, True])
def test_no_connection_is_created_while_the_org_is_deleted_so_none_outlives_it(
    *,
    call: Call,
    stack: Stack,
    app_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    read_before_the_deletion: bool,
) -> None:
    org = new_org(call)
    if read_before_the_deletion:
        # The request read the org before the deletion shredded its key: its write's condition
        # holds.
        monkeypatch.setattr(connections, "refuse_if_shredded", lambda *_, **__: None)
    keyrings = app_module.services().keyrings
    original = keyrings.discard_keyring
    answers: list[tuple[int, Any]] = []

    def owner_creates_a_connection_meanwhile(org_id: str) -> None:
        # Every item has been deleted but the org and the owner's membership (a process that
        # still holds the org's DEK, as moto's disabled key still unwraps it, can seal): a
        # connection created now would be passed over by the deletion and outlive the org.
        answers.append(create(call, org, okta_body(token=canary("late")), sub="alice"))
        original(org_id)

    monkeypatch.setattr(keyrings, "discard_keyring", owner_creates_a_connection_meanwhile)
    assert _delete(call, org) == (204, None)
    assert answers == [(409, BEING_DELETED)]
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    assert _schedule_entries(stack, org) == []


def _stopped_after_the_shredding(app_module: Any, org: str) -> None:
    """The owner's DELETE, answered 202: the key shredded, only the owner left a member, the
    org's connections still there."""
    event = http_event("DELETE", f"/orgs/{org}", route=ORG_ROUTE, path_parameters={"org_id": org})
    event["requestContext"]["authorizer"]["jwt"]["claims"].update(_fresh())
    assert app_module.lambda_handler(event, LambdaContext(seconds_left=1))["statusCode"] == 202


def _raw_item(stack: Stack, org: str, sk: str) -> dict[str, Any]:
    return dict(
        boto3.client("dynamodb").get_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": org}, "sk": {"S": sk}},
            ConsistentRead=True,
        )["Item"]
    )


@pytest.mark.parametrize("read_before_the_shredding", [False, True])
def test_no_credentials_are_replaced_once_the_org_is_shredded(
    *,
    call: Call,
    stack: Stack,
    app_module: Any,
    monkeypatch: pytest.MonkeyPatch,
    read_before_the_shredding: bool,
) -> None:
    org = new_org(call)
    connection_id = created(
        call,
        org,
        okta_body(
            auth={"method": "client_credentials", "client_id": "c1", "client_secret": canary("old")}
        ),
    )
    _stopped_after_the_shredding(app_module, org)
    before = _partition(stack, org)
    stored = _raw_item(stack, org, f"CONN#{connection_id}")
    if read_before_the_shredding:
        monkeypatch.setattr(connections, "refuse_if_shredded", lambda *_, **__: None)

    auth = {"method": "client_credentials", "client_id": "c2", "client_secret": canary("new")}
    assert rotate(call, org, connection_id, auth, sub="alice") == (409, BEING_DELETED)

    # Nothing written: the connection as it was, and no revocation owed that would outlive it.
    assert _partition(stack, org) == before
    assert _raw_item(stack, org, f"CONN#{connection_id}") == stored
    assert _delete(call, org) == (204, None)
    assert _partition(stack, org) == {"AUDIT#HEAD"}
