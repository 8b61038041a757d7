"""Crypto test fixtures: clients, a fake clock, keyrings, and recorders of KMS/DynamoDB calls."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from strongroom.crypto import DekCache, Keyrings, OrgKeyring
from strongroom.settings import Settings
from strongroom_local.provision import Stack

NOW = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def new_org_id() -> str:
    """A fresh org id: org_ and 26 lowercase base32 characters (128 random bits)."""
    return "org_" + base64.b32encode(os.urandom(16)).decode().rstrip("=").lower()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class CallRecorder:
    """Every real API call a client makes (botocore `before-call`), with its parameters."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def params_of(self, operation: str) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == operation]

    def clear(self) -> None:
        self.calls.clear()


def record_calls(client: Any) -> CallRecorder:
    """Record `client`'s calls. Parameters come from `before-parameter-build` (the API-level
    arguments); the count from `before-call`, which fires once per request that is really made."""
    recorder = CallRecorder()
    service = client.meta.service_model.service_id.hyphenize()
    pending: list[dict[str, Any]] = []

    def on_params(params: dict[str, Any], **_: Any) -> None:
        pending.append(dict(params))

    def on_call(model: Any, **_: Any) -> None:
        recorder.calls.append((model.name, pending.pop() if pending else {}))

    client.meta.events.register(f"before-parameter-build.{service}.*", on_params)
    client.meta.events.register(f"before-call.{service}.*", on_call)
    return recorder


@pytest.fixture
def kms(stack: Stack) -> Any:
    return boto3.client("kms", region_name="us-east-1")


@pytest.fixture
def dynamodb(stack: Stack) -> Any:
    return boto3.client("dynamodb", region_name="us-east-1")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_keyrings(
    kms: Any, dynamodb: Any, settings: Settings, clock: FakeClock
) -> Callable[..., Keyrings]:
    """A new Keyrings, as in a new process: its own empty cache on the fake clock."""

    def make(*, kms_client: Any = None, settings_: Settings | None = None) -> Keyrings:
        used = settings_ or settings
        return Keyrings(
            kms=kms_client or kms,
            dynamodb=dynamodb,
            settings=used,
            cache=DekCache.from_settings(used, clock=clock),
        )

    return make


@pytest.fixture
def keyrings(make_keyrings: Callable[..., Keyrings]) -> Keyrings:
    return make_keyrings()


@pytest.fixture
def org_id() -> str:
    return new_org_id()


def create_org(keyrings: Keyrings, org_id: str) -> OrgKeyring:
    arn = keyrings.create_org_key(org_id)
    return keyrings.create_keyring(org_id, kms_key_arn=arn, now=NOW)


@pytest.fixture
def keyring(keyrings: Keyrings, org_id: str) -> OrgKeyring:
    """An org with its KMS key and first DEK, as org creation leaves it."""
    return create_org(keyrings, org_id)


@pytest.fixture
def kms_calls(kms: Any) -> CallRecorder:
    return record_calls(kms)


@pytest.fixture
def dynamodb_calls(dynamodb: Any) -> CallRecorder:
    return record_calls(dynamodb)
