"""Drive the credential_store handler with events, on moto resources built from the template."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from strongroom.settings import Settings
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck


class LambdaContext:
    function_name = "CredentialStoreFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:credential-store"
    aws_request_id = "0b6d3c5e-req"

    def __init__(self, seconds_left: float = 30.0) -> None:
        # The template's timeout by default; less for a request that runs short of time.
        self._millis = int(seconds_left * 1000)

    def get_remaining_time_in_millis(self) -> int:
        return self._millis


Call = Callable[..., tuple[int, Any]]
Invoke = Callable[[dict[str, Any]], tuple[int, Any]]


@pytest.fixture
def session(iam_check: IamCheck) -> boto3.Session:
    """The session every client of the function is made from: a test puts faults on its events."""
    return iam_check.session()


@pytest.fixture
def app_module(
    stack: Stack, iam_check: IamCheck, session: boto3.Session, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The handler module, with the template's environment and services on moto."""
    for name, value in stack.function_environment("CredentialStoreFunction").items():
        monkeypatch.setenv(name, value)
    app = iam_check.guard(load_app("credential_store"), "credential_store")
    from credential_store import services as services_module

    settings = Settings.from_environ(os.environ)
    built = services_module.build_services(settings, session)
    monkeypatch.setattr(services_module, "services", lambda: built)
    monkeypatch.setattr(app, "services", lambda: built)
    return app


@pytest.fixture
def invoke(app_module: Any) -> Invoke:
    """invoke(event) -> (status, parsed body) through lambda_handler."""

    def invoke(event: dict[str, Any]) -> tuple[int, Any]:
        response = app_module.lambda_handler(event, LambdaContext())
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    return invoke


@pytest.fixture
def call(invoke: Invoke) -> Call:
    """call(method, path, sub=..., body=...) -> (status, parsed body) through lambda_handler."""

    def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        route = kwargs.pop("route", None)
        return invoke(http_event(method, path, route=route, **kwargs))

    return call
