"""POST /orgs when DynamoDB fails under it: the org's key is shredded only once the org can no
longer come to be, never when the transaction committed (or will) and only its answer was lost."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from strongroom.settings import Settings
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import Call, LambdaContext

TRANSACTION = "before-send.dynamodb.TransactWriteItems"


class _RawBody:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Any:
        yield self._data


def _server_error(request: Any) -> AWSResponse:
    return AWSResponse(request.url, 500, {}, _RawBody(b'{"__type": "InternalServerError"}'))


class Faults:
    """Handlers on the session every client of the function is made from."""

    def __init__(self, session: boto3.Session) -> None:
        self.session = session

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.session.events.register(event, handler)


@pytest.fixture
def faults_and_post(
    stack: Stack, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch
) -> tuple[Faults, Callable[[], tuple[int, Any]]]:
    for name, value in stack.function_environment("CredentialStoreFunction").items():
        monkeypatch.setenv(name, value)
    app = load_app("credential_store", "credential_store_faults")
    iam_check.guard(app, "credential_store")
    from credential_store import services as services_module

    session = iam_check.session()
    built = services_module.build_services(Settings.from_environ(os.environ), session)
    monkeypatch.setattr(app, "services", lambda: built)

    def post() -> tuple[int, Any]:
        event = http_event("POST", "/orgs", body={"name": "Acme"})
        response = app.lambda_handler(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"])

    return Faults(session), post


def _org_keys() -> dict[str, str]:
    """Each org key's alias -> its state."""
    kms = boto3.client("kms", region_name="us-east-1")
    return {
        alias["AliasName"]: kms.describe_key(KeyId=alias["TargetKeyId"])["KeyMetadata"]["KeyState"]
        for alias in kms.list_aliases()["Aliases"]
        if "/org/" in alias["AliasName"]
    }


def _org_item(stack: Stack, org_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        boto3.client("dynamodb", region_name="us-east-1")
        .get_item(TableName=stack.ref("Table"), Key={"pk": {"S": org_id}, "sk": {"S": "ORG"}})
        .get("Item")
    )
    return item


def _partition(stack: Stack, org_id: str) -> list[str]:
    """The sort keys of the org's items, as stored (expired or not)."""
    items = (
        boto3.client("dynamodb", region_name="us-east-1")
        .query(
            TableName=stack.ref("Table"),
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": org_id}},
        )
        .get("Items", [])
    )
    return [item["sk"]["S"] for item in items]


def _allowance_used(stack: Stack) -> int:
    """How many orgs alice (the events' caller) has used of her allowance."""
    item = (
        boto3.client("dynamodb", region_name="us-east-1")
        .get_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": "ORGS_CREATED#alice"}, "sk": {"S": "ORGS_CREATED"}},
        )
        .get("Item")
    )
    return int(item["count"]["N"]) if item else 0


def test_a_committed_transaction_whose_answer_is_lost_keeps_the_org_and_its_key(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post
    answers = []

    def lose_the_first_answer(request: Any, **_: Any) -> AWSResponse | None:
        # Every before-send handler runs: moto has committed when this answers 500. botocore
        # retries; moto ignores the request token, so the retry fails its conditions.
        if b'"ORG"' not in request.body:
            return None  # the keyring's own transaction
        answers.append(request)
        return _server_error(request) if len(answers) == 1 else None

    faults.on(TRANSACTION, lose_the_first_answer)
    status, body = post()
    assert status == 201, body
    assert len(answers) == 2  # the first attempt, and botocore's retry
    org_id = body["org_id"]
    assert _org_item(stack, org_id) is not None
    assert _org_keys() == {f"alias/strongroom-dev/org/{org_id}": "Enabled"}
    assert _allowance_used(stack) == 1


def test_a_transaction_that_never_ran_shreds_the_key(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post

    def refuse_the_org(params: Any, **_: Any) -> None:
        if b'"ORG"' in params["body"]:  # the keyring and first DEK are written, the org not
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    faults.on("before-call.dynamodb.TransactWriteItems", refuse_the_org)
    status, body = post()
    assert status >= 500
    assert "org_id" not in json.dumps(body)
    assert list(_org_keys().values()) == ["PendingDeletion"]
    # Nothing is left of the org: no keyring or DEK item pointing at the shredded key.
    (alias,) = _org_keys()
    org_id = alias.rsplit("/", 1)[-1]
    assert _partition(stack, org_id) == ["ORG"]  # its tombstone, and nothing else
    assert "abandoned_at" in (_org_item(stack, org_id) or {})
    assert _allowance_used(stack) == 0  # given back: the org never came to be


def test_when_the_table_cannot_say_the_key_is_kept(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post
    transactions = []

    def commit_then_go_dark(request: Any, **_: Any) -> AWSResponse | None:
        transactions.append(request)
        return _server_error(request)  # every attempt committed or not: its answer is lost

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    faults.on(TRANSACTION, commit_then_go_dark)
    faults.on("before-call.dynamodb.PutItem", refuse)  # the tombstone that would settle it
    faults.on("before-call.dynamodb.GetItem", refuse)
    status, _ = post()
    assert status >= 500
    assert transactions  # the transaction was attempted
    assert list(_org_keys().values()) == ["Enabled"]  # the org may exist: its key must not go
    assert _allowance_used(stack) == 1  # and its allowance stays used


def test_a_key_that_cannot_be_shredded_keeps_its_allowance_used(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post

    def refuse_the_org(params: Any, **_: Any) -> None:
        if b'"ORG"' in params["body"]:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com")

    faults.on("before-call.dynamodb.TransactWriteItems", refuse_the_org)
    faults.on("before-call.kms.DisableKey", refuse)
    status, _ = post()
    assert status >= 500
    assert list(_org_keys().values()) == ["Enabled"]
    # A user's count of orgs never falls below the keys made for them.
    assert _allowance_used(stack) == 1


def test_a_key_that_cannot_be_made_gives_its_allowance_back(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://kms.us-east-1.amazonaws.com")

    faults.on("before-call.kms.CreateKey", refuse)
    status, body = post()
    assert status >= 500
    assert "org_id" not in json.dumps(body)
    assert _org_keys() == {}
    assert _allowance_used(stack) == 0


def test_an_allowance_that_cannot_be_read_makes_nothing(
    faults_and_post: tuple[Faults, Callable[[], tuple[int, Any]]], stack: Stack
) -> None:
    faults, post = faults_and_post
    creates = []

    def refuse(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    faults.on("before-call.dynamodb.UpdateItem", refuse)
    faults.on("before-call.kms.CreateKey", lambda **_: creates.append(1))
    status, body = post()
    assert status == 500
    assert body["error"]["code"] == "internal_error"
    assert creates == []
    assert _org_keys() == {}
    assert _allowance_used(stack) == 0


class _InFlight:
    """The org's transaction sent, then the client's read timeout (each of botocore's attempts):
    DynamoDB still applies it, at once or when `land` is called. Moto would apply it at once, so
    it is held back and sent from here."""

    def __init__(self, *, land_at_once: bool = False) -> None:
        self.land_at_once = land_at_once
        self.items: list[Any] = []
        self.landed: str | None = None

    def time_out(self, params: Any, **_: Any) -> None:
        items = json.loads(params["body"])["TransactItems"]
        if b'"ORG"' not in params["body"] or self.items not in ([], items):
            return  # the keyring's own transaction, or a later one
        self.items = items
        if self.land_at_once:
            self.land()
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    def land(self, **_: Any) -> None:
        if self.landed is not None or not self.items:
            return
        try:
            boto3.client("dynamodb", region_name="us-east-1").transact_write_items(
                TransactItems=self.items
            )
        except ClientError as exc:
            self.landed = str(exc.response["Error"]["Code"])
        else:
            self.landed = "committed"

    @property
    def org_id(self) -> str:
        return str(self.items[0]["Put"]["Item"]["pk"]["S"])


def _org_reads(call: Call, org_id: str) -> list[int]:
    """What alice, who asked for the org, gets for it and for its members."""
    params = {"org_id": org_id}
    org = call("GET", f"/orgs/{org_id}", route="/orgs/{org_id}", path_parameters=params)
    route = "/orgs/{org_id}/members"
    members = call("GET", f"/orgs/{org_id}/members", route=route, path_parameters=params)
    return [org[0], members[0]]


def test_a_transaction_landing_after_the_org_was_given_up_cannot_make_it(
    call: Call, session: boto3.Session, stack: Stack
) -> None:
    """The org's transaction times out at the client but is still under way at DynamoDB, and
    lands only once the function has given the org up (here: as the key is shredded). It must
    not make an org whose key is shredded and whose allowance was given back."""
    in_flight = _InFlight()
    session.events.register("before-call.dynamodb.TransactWriteItems", in_flight.time_out)
    session.events.register("before-call.kms.DisableKey", in_flight.land)
    status, body = call("POST", "/orgs", body={"name": "Acme"})
    assert status == 500, body
    org_id = in_flight.org_id
    assert _org_reads(call, org_id) == [404, 404]
    assert in_flight.landed == "TransactionCanceledException"  # the tombstone holds its place
    assert _partition(stack, org_id) == ["ORG"]
    assert "abandoned_at" in (_org_item(stack, org_id) or {})
    assert _org_keys() == {f"alias/strongroom-dev/org/{org_id}": "PendingDeletion"}
    assert _allowance_used(stack) == 0


def test_a_transaction_landing_before_the_org_is_given_up_makes_it(
    call: Call, session: boto3.Session, stack: Stack
) -> None:
    """The same timeout, but the transaction lands before the tombstone: the org is made,
    and answered as made (201), with its key, owner and audit entry."""
    in_flight = _InFlight(land_at_once=True)
    session.events.register("before-call.dynamodb.TransactWriteItems", in_flight.time_out)
    status, body = call("POST", "/orgs", body={"name": "Acme"})
    assert status == 201, body
    assert in_flight.landed == "committed"
    org_id = body["org_id"]
    assert org_id == in_flight.org_id
    assert _org_reads(call, org_id) == [200, 200]
    assert _org_keys() == {f"alias/strongroom-dev/org/{org_id}": "Enabled"}
    assert _allowance_used(stack) == 1
    route = "/orgs/{org_id}/audit"
    status, audit = call(
        "GET", f"/orgs/{org_id}/audit", route=route, path_parameters={"org_id": org_id}
    )
    assert status == 200, audit
    assert [(e["action"], e["target_id"]) for e in audit["events"]] == [("org.create", org_id)]
    # It works: a member can be added (the owner count is on the org item).
    status, _ = call(
        "PUT",
        f"/orgs/{org_id}/members/bob",
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org_id, "user_id": "bob"},
        body={"role": "owner"},
    )
    assert status == 200


def test_when_the_tombstone_cannot_be_written_the_key_is_kept(
    call: Call, session: boto3.Session, stack: Stack
) -> None:
    """DynamoDB down after the org's transaction failed: the org may yet land, so its key and
    allowance stay."""
    failed: list[bool] = []

    def refuse_the_org(params: Any, **_: Any) -> None:
        if b'"ORG"' in params["body"]:
            failed.append(True)
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    def refuse_after_it(**_: Any) -> None:
        if failed:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    session.events.register("before-call.dynamodb.TransactWriteItems", refuse_the_org)
    session.events.register("before-call.dynamodb.PutItem", refuse_after_it)
    status, _ = call("POST", "/orgs", body={"name": "Acme"})
    assert status == 500
    assert list(_org_keys().values()) == ["Enabled"]
    assert _allowance_used(stack) == 1
