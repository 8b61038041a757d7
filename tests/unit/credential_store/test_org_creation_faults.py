"""POST /orgs when DynamoDB fails under it: the org's key is shredded only when the org is known
not to exist, never when the transaction committed and only its answer was lost."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError

from strongroom.settings import Settings
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import LambdaContext

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
    table = boto3.client("dynamodb", region_name="us-east-1")
    (alias,) = _org_keys()
    org_id = alias.rsplit("/", 1)[-1]
    key = {":pk": {"S": org_id}}
    left = table.query(
        TableName=stack.ref("Table"),
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues=key,
    )["Items"]
    assert left == []
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
