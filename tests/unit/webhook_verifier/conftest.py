"""Drive the webhook_verifier handler with HTTP API events, on moto resources from the template.

`deliver(source, body, headers)` posts a delivery as API Gateway would hand it over; the
function reads its secrets from the stack's Secrets Manager (no cache, so a test's rotation
shows at once) and `now` is the fixed `NOW` unless a test moves the clock.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from strongroom.audit import AuditEvent, AuditLog
from strongroom.settings import Settings
from strongroom.tenancy import Create, TenantTable, new_org_id
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
SECRET_IDS = {
    "stripe": "StripeWebhookSecret",
    "standard": "StandardWebhookSecret",
    "github": "GithubWebhookSecret",
    "lemonsqueezy": "LemonSqueezyWebhookSecret",
}


class LambdaContext:
    function_name = "WebhookVerifierFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:webhook-verifier"
    aws_request_id = "7f1c2d3e-req"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Response:
    status: int
    body: Any


@dataclass
class WebhookStack:
    """The handler on the emulated stack, and what tests need around it."""

    app: Any
    stack: Stack
    clock: Clock
    settings: Settings
    # Every AWS client of the function is made from it (when first used).
    aws: boto3.Session | None = None

    def invoke(self, event: dict[str, Any]) -> Response:
        result = self.app.lambda_handler(event, LambdaContext())
        body = result.get("body")
        return Response(result["statusCode"], json.loads(body) if body else None)

    def deliver(
        self,
        source: str,
        body: bytes,
        headers: dict[str, str],
        *,
        base64_body: bool = False,
        lower_case: bool = True,
    ) -> Response:
        """POST /webhooks/{source} as API Gateway delivers it (names lower-cased by default)."""
        event = http_event(
            "POST",
            f"/webhooks/{source}",
            route="/webhooks/{source}",
            path_parameters={"source": source},
            sub=None,
        )
        event["headers"] = {
            "content-type": "application/json",
            **{(k.lower() if lower_case else k): v for k, v in headers.items()},
        }
        if base64_body:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
        else:
            event["body"] = body.decode("utf-8")
        return self.invoke(event)

    def checkout(self, org_id: str, sub: str = "alice") -> Response:
        path = f"/orgs/{org_id}/billing/checkout"
        event = http_event(
            "POST",
            path,
            route="/orgs/{org_id}/billing/checkout",
            path_parameters={"org_id": org_id},
            sub=sub,
        )
        return self.invoke(event)

    # ---- secrets ----------------------------------------------------------------------------

    def secret_id(self, source: str) -> str:
        return self.stack.ref(SECRET_IDS[source])

    def secret(self, source: str) -> str:
        """The newest active signing secret of `source`."""
        value = boto3.client("secretsmanager").get_secret_value(SecretId=self.secret_id(source))
        return str(json.loads(value["SecretString"])["active"][0])

    def put_secrets(self, source: str, *values: str) -> None:
        boto3.client("secretsmanager").put_secret_value(
            SecretId=self.secret_id(source), SecretString=json.dumps({"active": list(values)})
        )

    # ---- orgs -------------------------------------------------------------------------------

    @property
    def table(self) -> TenantTable:
        return TenantTable(dynamodb=boto3.client("dynamodb"), table_name=self.settings.table_name)

    def new_org(self, owner: str = "alice", plan: str = "free", org_id: str | None = None) -> str:
        """An org with `owner`, written as credential_store writes one."""
        org_id = org_id or new_org_id()
        stamp = NOW.isoformat()
        self.table.transact(
            org_id,
            [
                Create(
                    "ORG",
                    attributes={
                        "name": "Acme",
                        "plan": plan,
                        "created_at": stamp,
                        "created_by": owner,
                        "owner_count": 1,
                    },
                ),
                Create("MEMBER", owner, attributes={"role": "owner", "added_at": stamp}),
            ],
            now=NOW,
        )
        return org_id

    def add_member(self, org_id: str, user: str, role: str) -> None:
        self.table.create(org_id, "MEMBER", user, attributes={"role": role}, now=NOW)

    def plan(self, org_id: str) -> str:
        return str(self.table.get(org_id, "ORG", now=self.clock.now).attributes["plan"])

    def audit_events(self, org_id: str) -> list[AuditEvent]:
        log = AuditLog(
            s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"), settings=self.settings
        )
        return list(log.list_events(org_id, now=self.clock.now, limit=100).events)

    def webhook_effects(self, org_id: str) -> list[dict[str, Any]]:
        return [
            event.details for event in self.audit_events(org_id) if event.action == "webhook.effect"
        ]


@pytest.fixture
def webhooks(stack: Stack, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch) -> WebhookStack:
    for name, value in stack.function_environment("WebhookVerifierFunction").items():
        monkeypatch.setenv(name, value)
    # Read secrets on every delivery: a rotation in a test shows at once.
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    app = iam_check.guard(load_app("webhook_verifier"), "webhook_verifier")
    from webhook_verifier import services as services_module

    settings = Settings.from_environ(os.environ)
    session = iam_check.session()
    built = services_module.build_services(settings, session)
    monkeypatch.setattr(app, "services", lambda: built)
    clock = Clock()
    monkeypatch.setattr(app, "_now", clock)
    return WebhookStack(app=app, stack=stack, clock=clock, settings=settings, aws=session)


Deliver = Callable[..., Response]
