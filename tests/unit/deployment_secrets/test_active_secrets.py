"""Deployment secrets: the active list read through Powertools, cached, and checked."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from strongroom.deployment_secrets import (
    ActiveSecrets,
    DeploymentSecretInvalid,
    DeploymentSecretUnavailable,
)
from strongroom_local.provision import Stack


class CallCounter:
    def __init__(self, client: Any) -> None:
        self.calls = 0
        client.meta.events.register("before-call.secrets-manager.GetSecretValue", self._count)

    def _count(self, **_: Any) -> None:
        self.calls += 1


@pytest.fixture
def client(stack: Stack) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1")


def test_the_template_secrets_hold_one_generated_active_value_locally(
    stack: Stack, client: Any
) -> None:
    secrets = ActiveSecrets(secretsmanager=client, max_age_seconds=0)
    seen = set()
    for logical_id in (
        "StripeWebhookSecret",
        "StandardWebhookSecret",
        "GithubWebhookSecret",
        "LemonSqueezyWebhookSecret",
    ):
        (value,) = secrets.values(stack.ref(logical_id))
        assert value.startswith("whsec_")
        assert len(value) == 38  # Lemon Squeezy accepts 6 to 40 characters
        seen.add(value)
    assert len(seen) == 4  # generated one by one


def test_values_are_cached_for_max_age_then_read_again(stack: Stack, client: Any) -> None:
    secret_id = stack.ref("GithubWebhookSecret")
    counter = CallCounter(client)
    cached = ActiveSecrets(secretsmanager=client, max_age_seconds=300)
    first = cached.values(secret_id)
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"active": ["new"]}))
    assert cached.values(secret_id) == first  # still cached: no second call
    assert counter.calls == 1
    uncached = ActiveSecrets(secretsmanager=client, max_age_seconds=0)
    assert uncached.values(secret_id) == ("new",)
    assert counter.calls == 2


@pytest.mark.parametrize(
    "document",
    [
        "not json at all: s3cr3t-value",
        json.dumps(["s3cr3t-value"]),
        json.dumps({"active": "s3cr3t-value"}),
        json.dumps({"active": ["s3cr3t-value", ""]}),
        json.dumps({"active": ["s3cr3t-value", 7]}),
        json.dumps({"active": ["s3cr3t-value"] * 6}),
    ],
)
def test_a_malformed_secret_is_refused_without_quoting_it(
    stack: Stack, client: Any, document: str
) -> None:
    secret_id = stack.ref("StripeWebhookSecret")
    client.put_secret_value(SecretId=secret_id, SecretString=document)
    with pytest.raises(DeploymentSecretInvalid) as refused:
        ActiveSecrets(secretsmanager=client, max_age_seconds=0).values(secret_id)
    assert "s3cr3t" not in str(refused.value)
    assert refused.value.__cause__ is None


def test_an_empty_list_means_nothing_is_active(stack: Stack, client: Any) -> None:
    secret_id = stack.ref("StripeWebhookSecret")
    client.put_secret_value(SecretId=secret_id, SecretString=json.dumps({"active": []}))
    assert ActiveSecrets(secretsmanager=client, max_age_seconds=0).values(secret_id) == ()


def test_a_missing_secret_is_unavailable(stack: Stack, client: Any) -> None:
    with pytest.raises(DeploymentSecretUnavailable):
        ActiveSecrets(secretsmanager=client).values("strongroom-dev/webhooks/nothing")
