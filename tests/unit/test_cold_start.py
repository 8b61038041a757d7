"""What a cold start pays for: importing a function loads none of the libraries that only some
requests need, and a first request makes only the AWS clients it calls.

The costs themselves are measured in benchmarks/bench_cold_start.py; these tests keep the
deferrals from being undone unnoticed.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from strongroom.lazy import lazy_client, on_first_use
from strongroom.settings import Settings
from strongroom_local.provision import Stack
from strongroom_local.template import load_template, resources_of_type
from tests.support.functions import FUNCTIONS, load_app, run_in_lambda_process
from tests.support.http import http_event

# Loaded when a request first needs them, never by an import of a function.
DEFERRED_MODULES = (
    "requests",  # the outbound client's HTTP stack: token and provider requests only
    "jwt",  # private_key_jwt credentials only
    "strongroom.outbound.client",
    "cryptography.hazmat.primitives.serialization",  # private key parsing only
    "cryptography.hazmat.primitives.ciphers.aead",  # the first DEK only
    "strongroom.audit.verify",  # no function verifies audit chains
)
# signed_url_issuer reads backup records only: the schedule index is not its concern.
NOT_FOR_SIGNED_URLS = ("strongroom.backups.schedule", "strongroom.schedules")
PROBE = """
import json, sys
import app
print(json.dumps(sorted(sys.modules)))
"""
UNKNOWN_CONNECTION = "conn_" + "a" * 26
UNKNOWN_BACKUP = "bkp_" + "a" * 26


@pytest.mark.parametrize("function", FUNCTIONS)
def test_importing_a_function_loads_nothing_only_some_requests_need(function: str) -> None:
    loaded = set(run_in_lambda_process(function, PROBE))
    assert "app" in loaded
    assert loaded.isdisjoint(DEFERRED_MODULES)
    if function == "signed_url_issuer":
        assert loaded.isdisjoint(NOT_FOR_SIGNED_URLS)


# ---- clients made on first use ------------------------------------------------------------


class RecordingSession(boto3.Session):
    """A session that lists the clients it makes, in order."""

    def __init__(self) -> None:
        super().__init__(region_name="us-east-1")
        self.made: list[str] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.made.append(service_name)
        return super().client(service_name, *args, **kwargs)


class LambdaContext:
    function_name = "cold-start-test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:cold-start-test"
    aws_request_id = "c01d57a2-req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


@dataclass(frozen=True)
class FirstRequest:
    function: str
    logical_id: str
    package: str
    handler: str
    event: Callable[[str], dict[str, Any]]  # org id -> event
    answer: Any  # the response's statusCode, or the whole response where it has none
    clients: list[str]


def _sqs_job(org_id: str) -> dict[str, Any]:
    body = {"org_id": org_id, "connection_id": UNKNOWN_CONNECTION, "backup_id": UNKNOWN_BACKUP}
    return {"Records": [{"messageId": "m-1", "body": json.dumps(body)}]}


def _callback(org_id: str) -> dict[str, Any]:
    event = http_event("GET", "/oauth/callback", sub=None)
    state = f"{org_id}.{'A' * 43}"  # well formed, but no flow was started with it
    event["queryStringParameters"] = {"code": "c0de", "state": state}
    event["rawQueryString"] = f"code=c0de&state={state}"
    event["cookies"] = [f"__Host-strongroom_oauth_binding={'B' * 43}"]
    return event


def _forged_github_delivery(org_id: str) -> dict[str, Any]:
    event = http_event(
        "POST",
        "/webhooks/github",
        route="/webhooks/{source}",
        path_parameters={"source": "github"},
        body={"zen": "Keep it logically awesome."},
        sub=None,
    )
    event["headers"].update(
        {"x-hub-signature-256": "sha256=" + "0" * 64, "x-github-delivery": "d-1"}
    )
    return event


FIRST_REQUESTS = [
    FirstRequest(
        "credential_store",
        "CredentialStoreFunction",
        "credential_store",
        "lambda_handler",
        lambda org: http_event(
            "GET", f"/orgs/{org}", route="/orgs/{org_id}", path_parameters={"org_id": org}
        ),
        200,
        ["dynamodb"],
    ),
    FirstRequest(
        "oauth_callback",
        "OAuthCallbackFunction",
        "oauth_flow",
        "lambda_handler",
        _callback,
        302,
        ["dynamodb"],
    ),
    FirstRequest(
        "webhook_verifier",
        "WebhookVerifierFunction",
        "webhook_verifier",
        "lambda_handler",
        _forged_github_delivery,
        401,
        ["secretsmanager"],
    ),
    FirstRequest(
        "scheduled_backup",
        "BackupDispatcherFunction",
        "backup_jobs",
        "lambda_handler",
        lambda org: http_event(
            "POST",
            f"/orgs/{org}/connections/{UNKNOWN_CONNECTION}/backups",
            route="/orgs/{org_id}/connections/{connection_id}/backups",
            path_parameters={"org_id": org, "connection_id": UNKNOWN_CONNECTION},
        ),
        404,
        ["dynamodb"],
    ),
    FirstRequest(
        "scheduled_backup",
        "BackupWorkerFunction",
        "backup_jobs",
        "worker_handler",
        _sqs_job,
        {"batchItemFailures": []},
        ["dynamodb"],
    ),
    FirstRequest(
        "scheduled_backup",
        "BackupDeadLetterFunction",
        "backup_jobs",
        "dead_letter_handler",
        _sqs_job,
        {"batchItemFailures": []},
        ["dynamodb"],
    ),
    FirstRequest(
        "signed_url_issuer",
        "SignedUrlIssuerFunction",
        "backup_downloads",
        "lambda_handler",
        lambda org: http_event(
            "GET",
            f"/orgs/{org}/connections/{UNKNOWN_CONNECTION}/backups",
            route="/orgs/{org_id}/connections/{connection_id}/backups",
            path_parameters={"org_id": org, "connection_id": UNKNOWN_CONNECTION},
        ),
        200,
        ["dynamodb"],
    ),
]


def test_every_function_of_the_template_has_a_first_request_here_and_in_the_benchmark() -> None:
    functions = set(resources_of_type(load_template(), "AWS::Serverless::Function"))
    benchmark = importlib.import_module("benchmarks.bench_cold_start")
    assert {first.logical_id for first in FIRST_REQUESTS} == functions
    assert set(benchmark.FIRST_REQUESTS) == functions


def _create_org(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """An org owned by alice, made through credential_store's handler."""
    for name, value in stack.function_environment("CredentialStoreFunction").items():
        monkeypatch.setenv(name, value)
    app = load_app("credential_store", "cold_start_org_maker")
    from credential_store import services as services_module

    built = services_module.build_services(Settings.from_environ(os.environ), RecordingSession())
    monkeypatch.setattr(app, "services", lambda: built)
    response = app.lambda_handler(
        http_event("POST", "/orgs", body={"name": "Acme"}), LambdaContext()
    )
    assert response["statusCode"] == 201
    org_id: str = json.loads(response["body"])["org_id"]
    return org_id


@pytest.mark.parametrize("first", FIRST_REQUESTS, ids=lambda first: first.logical_id)
def test_a_first_request_makes_only_the_clients_it_calls(
    first: FirstRequest, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org_id = _create_org(stack, monkeypatch)
    for name, value in stack.function_environment(first.logical_id).items():
        monkeypatch.setenv(name, value)
    app = load_app(first.function, f"cold_start_{first.logical_id}")
    services_module = importlib.import_module(f"{first.package}.services")
    session = RecordingSession()
    built = services_module.build_services(Settings.from_environ(os.environ), session)
    monkeypatch.setattr(app, "services", lambda: built)

    response = getattr(app, first.handler)(first.event(org_id), LambdaContext())

    assert response.get("statusCode", response) == first.answer
    assert session.made == first.clients


# ---- the stand-in itself ------------------------------------------------------------------


class Thing:
    def __init__(self) -> None:
        self.value = 7

    def double(self) -> int:
        return self.value * 2


def test_on_first_use_makes_the_object_at_the_first_attribute_access_and_only_then() -> None:
    made: list[Thing] = []

    def make() -> Thing:
        made.append(Thing())
        return made[-1]

    thing = on_first_use(make)
    assert made == []
    assert "not made yet" in repr(thing)
    assert thing.double() == 14
    assert thing.value == 7
    assert len(made) == 1
    made[0].value = 8  # the stand-in forwards to the one object it made
    assert thing.double() == 16
    assert len(made) == 1


def test_a_factory_that_fails_is_tried_again_at_the_next_use() -> None:
    attempts: list[int] = []

    def make() -> Thing:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("no endpoint yet")
        return Thing()

    thing = on_first_use(make)
    with pytest.raises(ConnectionError):
        _ = thing.value
    assert thing.value == 7
    assert len(attempts) == 2


def test_lazy_client_asks_the_session_when_first_used(stack: Stack) -> None:
    session = RecordingSession()
    s3 = lazy_client(session, "s3", region_name="us-east-1")
    assert session.made == []
    assert s3.meta.service_model.service_name == "s3"
    s3.list_buckets()
    assert session.made == ["s3"]
