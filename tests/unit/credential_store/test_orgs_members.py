"""Orgs and members through the handler: roles from the table, the last owner, 404 for others."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from strongroom.api import Caller
from strongroom_local.provision import Stack
from tests.unit.credential_store.conftest import Call, Invoke


def _create(call: Call, sub: str = "alice", name: str = "Acme") -> str:
    status, body = call("POST", "/orgs", sub=sub, body={"name": name})
    assert status == 201, body
    return str(body["org_id"])


def _put(call: Call, org: str, user: str, role: str, sub: str = "alice") -> tuple[int, object]:
    return call(
        "PUT",
        f"/orgs/{org}/members/{user}",
        sub=sub,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
        body={"role": role},
    )


def _get(call: Call, path: str, sub: str, route: str, **params: str) -> tuple[int, object]:
    return call("GET", path, sub=sub, route=route, path_parameters=params)


def test_create_org_makes_its_key_keyring_and_owner(call: Call, stack: Stack) -> None:
    org = _create(call)
    status, body = _get(call, f"/orgs/{org}", "alice", "/orgs/{org_id}", org_id=org)
    assert status == 200
    assert body["name"] == "Acme"
    assert body["your_role"] == "owner"
    assert body["deletion_started_at"] is None
    kms = boto3.client("kms")
    aliases = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
    assert f"alias/strongroom-dev/org/{org}" in aliases
    keyring = boto3.client("dynamodb").get_item(
        TableName=stack.ref("Table"), Key={"pk": {"S": org}, "sk": {"S": "KEYRING"}}
    )
    assert keyring["Item"]["current_version"] == {"N": "1"}


def _delete(call: Call, org: str, user: str, sub: str = "alice") -> tuple[int, Any]:
    return call(
        "DELETE",
        f"/orgs/{org}/members/{user}",
        sub=sub,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
    )


def test_roles_gate_every_route(call: Call) -> None:
    """DESIGN's table: any member reads the org and its members; only owners manage members."""
    org = _create(call)
    assert _put(call, org, "bob", "admin")[0] == 200
    assert _put(call, org, "carol", "member")[0] == 200
    assert _put(call, org, "erin", "member")[0] == 200
    members_route = "/orgs/{org_id}/members"
    for sub, role in (("alice", "owner"), ("bob", "admin"), ("carol", "member")):
        status, body = _get(call, f"/orgs/{org}", sub, "/orgs/{org_id}", org_id=org)
        assert (status, body["your_role"]) == (200, role)
        status, body = _get(call, f"/orgs/{org}/members", sub, members_route, org_id=org)
        assert status == 200
        assert {m["user_id"] for m in body["members"]} == {"alice", "bob", "carol", "erin"}
    for sub in ("bob", "carol"):
        for status, body in (
            _put(call, org, "dave", "member", sub=sub),  # add
            _put(call, org, "erin", "admin", sub=sub),  # change a role
            _put(call, org, sub, "owner", sub=sub),  # raise one's own
            _delete(call, org, "erin", sub=sub),  # remove another
        ):
            assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body = _get(call, f"/orgs/{org}/members", "alice", members_route, org_id=org)
    assert {m["user_id"]: m["role"] for m in body["members"]} == {
        "alice": "owner",
        "bob": "admin",
        "carol": "member",
        "erin": "member",
    }
    # The owner does all of it.
    assert _put(call, org, "erin", "admin")[0] == 200
    assert _delete(call, org, "erin")[0] == 204


def test_other_orgs_look_exactly_like_missing_ones(call: Call) -> None:
    org = _create(call)
    missing = "org_" + "a" * 26
    responses = [
        _get(call, f"/orgs/{org}", "mallory", "/orgs/{org_id}", org_id=org),
        _get(call, f"/orgs/{missing}", "mallory", "/orgs/{org_id}", org_id=missing),
        _get(call, f"/orgs/{missing}", "alice", "/orgs/{org_id}", org_id=missing),
        _put(call, org, "mallory", "owner", sub="mallory"),
    ]
    assert {status for status, _ in responses} == {404}
    assert len({str(body) for _, body in responses}) == 1


def test_last_owner_cannot_be_demoted_or_removed(call: Call) -> None:
    org = _create(call)
    status, body = _put(call, org, "alice", "admin")
    assert status == 409
    status, body = call(
        "DELETE",
        f"/orgs/{org}/members/alice",
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": "alice"},
    )
    assert status == 409
    assert body["error"]["code"] == "conflict"
    # With a second owner, the first may step down.
    assert _put(call, org, "bob", "owner")[0] == 200
    assert _put(call, org, "alice", "member")[0] == 200
    status, _ = _put(call, org, "bob", "member", sub="bob")
    assert status == 409


def test_remove_member(call: Call) -> None:
    org = _create(call)
    assert _put(call, org, "bob", "member")[0] == 200
    route = "/orgs/{org_id}/members/{user_id}"
    params = {"org_id": org, "user_id": "bob"}
    status, _ = call("DELETE", f"/orgs/{org}/members/bob", route=route, path_parameters=params)
    assert status == 204
    status, _ = call("DELETE", f"/orgs/{org}/members/bob", route=route, path_parameters=params)
    assert status == 404
    status, _ = _get(call, f"/orgs/{org}", "bob", "/orgs/{org_id}", org_id=org)
    assert status == 404


@pytest.mark.parametrize("user", ["system:org_deletion", "SYSTEM:x", "operator:local"])
def test_no_member_can_be_added_as_one_of_the_audit_logs_own_actors(
    call: Call, stack: Stack, user: str
) -> None:
    org = _create(call)
    status, body = _put(call, org, user, "admin")
    assert (status, body["error"]["code"]) == (422, "invalid_field")  # type: ignore[index]
    members = boto3.client("dynamodb").query(
        TableName=stack.ref("Table"),
        KeyConditionExpression="pk = :org AND begins_with(sk, :member)",
        ExpressionAttributeValues={":org": {"S": org}, ":member": {"S": "MEMBER#"}},
    )["Items"]
    assert [m["sk"]["S"] for m in members] == ["MEMBER#alice"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ('{"name": "x", "owner": "mallory"}', 422),
        ('{"name": ""}', 422),
        ('{"name": "a\\u0000b"}', 422),  # a control character
        ('{"name": "\\u202eevil"}', 422),  # a bidirectional override: displays as "live"
        # Names nobody can see: zero-width space, BOM, word joiner, soft hyphen, Hangul filler,
        # Braille blank, a lone combining mark; and a line separator inside a name.
        ('{"name": "\\u200b"}', 422),
        ('{"name": "\\ufeff"}', 422),
        ('{"name": "\\u2060\\u00ad"}', 422),
        ('{"name": "\\u3164"}', 422),
        ('{"name": "\\u2800"}', 422),
        ('{"name": "\\u0301"}', 422),
        ('{"name": "a\\u2028b"}', 422),
        # Code points no Unicode version assigns: noncharacters, planes 4 to 13.
        ('{"name": "\\ufdd0"}', 422),
        ('{"name": "\\uffff\\ufffe"}', 422),
        ('{"name": "\\ud83f\\udffe"}', 422),  # U+1FFFE
        ('{"name": "\\udb3f\\udffd"}', 422),  # U+DFFFD
        ('{"name": ' + "1" * 5000 + "}", 400),  # longer than Python's integer limit
        ("{}", 422),
        ("{not json", 400),
        ('{"name": "' + "x" * (256 * 1024) + '"}', 413),
    ],
)
def test_bad_bodies_change_nothing(call: Call, stack: Stack, raw: str, status: int) -> None:
    kms, dynamodb = boto3.client("kms"), boto3.client("dynamodb")

    def state() -> tuple[Any, ...]:
        items = dynamodb.scan(TableName=stack.ref("Table"), ConsistentRead=True)["Items"]
        return (
            sorted(json.dumps(item, sort_keys=True) for item in items),  # orgs, allowance
            sorted(key["KeyId"] for key in kms.list_keys()["Keys"]),
            sorted(alias["AliasName"] for alias in kms.list_aliases()["Aliases"]),
        )

    before = state()
    got, body = call("POST", "/orgs", raw_body=raw)
    assert got == status
    assert "error" in body
    assert state() == before


@pytest.mark.parametrize(
    "name",
    [
        "Acme \u00e9t\u00e9",  # accented letters
        "e\u0301",  # a letter and its combining accent
        "Team \U0001f469\u200d\U0001f4bb",  # an emoji sequence with its zero-width joiner
        "\u6771\u4eac",
        "\u0627\u0644\u0639\u0631\u0628\u064a\u0629",  # right-to-left script, no override
        "\U0001fa77",  # an emoji newer than Python 3.11's Unicode 14 (unassigned there)
    ],
)
def test_names_people_can_read_are_accepted(call: Call, name: str) -> None:
    status, body = call("POST", "/orgs", body={"name": name})
    assert status == 201
    org = body["org_id"]
    assert _get(call, f"/orgs/{org}", "alice", "/orgs/{org_id}", org_id=org)[1]["name"] == name


def test_identity_never_comes_from_the_body_or_headers(invoke: Invoke, call: Call) -> None:
    from tests.support.http import http_event

    # No verified claims: a user id in a header, the body or the query string is not one.
    event = http_event("POST", "/orgs", sub=None, body={"name": "x"})
    event["headers"].update({"x-user-id": "alice", "x-amzn-oidc-identity": "alice"})
    event["queryStringParameters"] = {"sub": "alice"}
    status, body = invoke(event)
    assert (status, body["error"]["code"]) == (401, "unauthenticated")
    # With claims, the claims alone decide: bob naming alice in a header reads as bob.
    org = _create(call)
    event = http_event("GET", f"/orgs/{org}", sub="bob", route="/orgs/{org_id}")
    event["pathParameters"] = {"org_id": org}
    event["headers"].update({"x-user-id": "alice"})
    status, body = invoke(event)
    assert (status, body["error"]["code"]) == (404, "not_found")


@pytest.mark.parametrize("route", ["/orgs/{org_id}/members", "/orgs/{org_id}/connections"])
@pytest.mark.parametrize("cursor", ["eyJ4IjoxfQ", "not-a-cursor", "A" * 300])
def test_a_forged_cursor_is_422_not_a_server_error(
    call: Call, invoke: Invoke, route: str, cursor: str
) -> None:
    from tests.support.http import http_event

    org = _create(call)
    event = http_event(
        "GET", route.format(org_id=org), sub="alice", route=route, path_parameters={"org_id": org}
    )
    event["queryStringParameters"] = {"cursor": cursor}
    status, body = invoke(event)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_an_owner_removed_while_their_request_runs_changes_nothing(
    call: Call, app_module: Any, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """bob passes the role check; alice removes him before his write lands: the write fails
    (409), whatever it was, instead of acting with a role he no longer has."""
    from credential_store import orgs

    org = _create(call)
    assert _put(call, org, "bob", "owner")[0] == 200
    assert _put(call, org, "carol", "member")[0] == 200
    real_require_role = orgs.require_role

    def and_then_alice_removes_bob(services: Any, caller: Any, *args: Any, **kwargs: Any) -> Any:
        role = real_require_role(services, caller, *args, **kwargs)
        if caller.sub == "bob":
            orgs.remove_member(
                services, Caller(sub="alice"), org, "bob", now=kwargs["now"], request_id="r"
            )
        return role

    monkeypatch.setattr(orgs, "require_role", and_then_alice_removes_bob)
    params = {"org_id": org, "user_id": "carol"}
    if method == "PUT":
        status, _ = _put(call, org, "carol", "owner", sub="bob")
    else:
        route = "/orgs/{org_id}/members/{user_id}"
        status, _ = call(
            "DELETE", f"/orgs/{org}/members/carol", sub="bob", route=route, path_parameters=params
        )
    assert status == 409
    monkeypatch.setattr(orgs, "require_role", real_require_role)
    route = "/orgs/{org_id}/members"
    status, body = _get(call, f"/orgs/{org}/members", "alice", route, org_id=org)
    assert status == 200
    assert {m["user_id"]: m["role"] for m in body["members"]} == {
        "alice": "owner",
        "carol": "member",
    }


def _cancelled_for_a_conflict(params: Any, **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
    """DynamoDB's answer to a transaction that met another under way on its second item (the
    org item, in a change of an owner's role): cancelled. Answered before the call, so that
    nothing is written."""
    count = len(json.loads(params["body"])["TransactItems"])
    reasons = [{"Code": "None"}] * count
    reasons[1] = {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"}
    error = {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"}
    parsed = {"Error": error, "CancellationReasons": reasons, "ResponseMetadata": {}}
    return AWSResponse(params["url"], 400, {}, None), parsed


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_two_owners_changing_each_other_at_once_get_409_and_change_nothing(
    call: Call, session: boto3.Session, method: str
) -> None:
    """alice and bob, both owners, demote (or remove) each other at the same moment: DynamoDB
    cancels one transaction for the other (TransactionConflict, not a failed condition). Run
    again and cancelled every time (the conflict lasts), the loser is told the membership
    changed meanwhile (409), as when its condition fails."""
    armed = False
    cancelled = []

    def alice_is_changing_too(params: Any, **_: Any) -> tuple[AWSResponse, Any] | None:
        if not armed:
            return None
        cancelled.append(params)
        return _cancelled_for_a_conflict(params)

    # Before the first request: a client takes the session's handlers when it is made.
    session.events.register("before-call.dynamodb.TransactWriteItems", alice_is_changing_too)
    org = _create(call)
    assert _put(call, org, "bob", "owner")[0] == 200
    armed = True
    if method == "PUT":
        status, body = _put(call, org, "alice", "member", sub="bob")
    else:
        route = "/orgs/{org_id}/members/{user_id}"
        params = {"org_id": org, "user_id": "alice"}
        status, body = call(
            "DELETE", f"/orgs/{org}/members/alice", sub="bob", route=route, path_parameters=params
        )
    armed = False
    assert status == 409, body
    assert body["error"]["code"] == "conflict"
    assert len(cancelled) == 3  # the store's three runs
    status, body = _get(call, f"/orgs/{org}/members", "alice", "/orgs/{org_id}/members", org_id=org)
    assert status == 200, body
    assert {m["user_id"]: m["role"] for m in body["members"]} == {"alice": "owner", "bob": "owner"}
    # The owner count is still two: either may step down, and then the other is the last.
    assert _put(call, org, "bob", "member", sub="alice")[0] == 200
    assert _put(call, org, "alice", "member")[0] == 409
