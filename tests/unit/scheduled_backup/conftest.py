"""Backups on moto against an in-process sandbox Okta, through the functions' handlers.

`world` creates orgs and connections through credential_store's handler, starts backups through
scheduled_backup's HTTP handler and dispatcher, and drains the backup queue through its worker
handler as Lambda's SQS poller does (failed records back to the queue at once). Stored files
are read back from moto's S3 and compared with what the sandbox serves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from strongroom.audit.pending import SWEEP_GRACE
from strongroom.lazy import made
from strongroom.outbound import RetryPolicy
from strongroom.settings import Settings
from strongroom_local.provision import Stack
from strongroom_local.sandbox_okta import (
    SECRET_FIELDS,
    OrgSpec,
    SandboxOkta,
    resource_listings,
    without_secret_fields,
)
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck

BACKUPS_ROUTE = "/orgs/{org_id}/connections/{connection_id}/backups"
# Every parent comes from its own listing; these are the resources of one listing.
TOP_LEVEL = frozenset(
    {
        "users",
        "groups",
        "group_rules",
        "apps",
        "authorization_servers",
        "network_zones",
        "trusted_origins",
        "identity_providers",
        "authenticators",
        "behaviors",
        "user_schema",
        "custom_roles",
        "role_assignees",
    }
)


class Context:
    """A Lambda context whose remaining time a test controls."""

    function_name = "BackupWorkerFunction"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:backup-worker"
    aws_request_id = "req-backup-1"

    def __init__(self, remaining_ms: Callable[[], int] = lambda: 900_000) -> None:
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining()


class Metrics:
    """Counts what the worker emits (Powertools Metrics in Lambda)."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, float]] = []

    def add_metric(self, *, name: str, unit: str, value: float) -> None:
        self.emitted.append((name, value))

    def flush_metrics(self) -> None:
        return None


@dataclass
class BackupWorld:
    credential_store: Any
    backups: Any
    services: Any
    okta: SandboxOkta
    settings: Settings
    metrics: Metrics
    invocations: list[dict[str, Any]] = field(default_factory=list)

    # ---- orgs and connections ---------------------------------------------------------------

    def _call(self, app: Any, event: dict[str, Any]) -> tuple[int, Any]:
        response = app.lambda_handler(event, Context())
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    def new_org(self, owner: str = "alice") -> str:
        status, body = self._call(
            self.credential_store, http_event("POST", "/orgs", sub=owner, body={"name": "Acme"})
        )
        assert status == 201, body
        org = str(body["org_id"])
        for user, role in (("bob", "admin"), ("carol", "member")):
            status, body = self._call(
                self.credential_store,
                http_event(
                    "PUT",
                    f"/orgs/{org}/members/{user}",
                    route="/orgs/{org_id}/members/{user_id}",
                    path_parameters={"org_id": org, "user_id": user},
                    sub=owner,
                    body={"role": role},
                ),
            )
            assert status == 200, body
        return org

    def connect(self, org: str, *, schedule: str = "rate(1 day)", token: str | None = None) -> str:
        body = {
            "name": "Sandbox Okta",
            "provider": "okta",
            "domain": self.okta.host_port,
            "auth": {"method": "api_token", "token": token or self.okta.api_token},
            "schedule": schedule,
        }
        status, reply = self._call(
            self.credential_store,
            http_event(
                "POST",
                f"/orgs/{org}/connections",
                route="/orgs/{org_id}/connections",
                path_parameters={"org_id": org},
                sub="bob",
                body=body,
            ),
        )
        assert status == 201, reply
        return str(reply["connection_id"])

    def delete_connection(self, org: str, connection_id: str) -> None:
        status, reply = self._call(
            self.credential_store,
            http_event(
                "DELETE",
                f"/orgs/{org}/connections/{connection_id}",
                route="/orgs/{org_id}/connections/{connection_id}",
                path_parameters={"org_id": org, "connection_id": connection_id},
                sub="bob",
            ),
        )
        assert status == 204, reply

    # ---- backups ----------------------------------------------------------------------------

    def start(self, org: str, connection_id: str, sub: str = "bob") -> tuple[int, Any]:
        return self._call(
            self.backups,
            http_event(
                "POST",
                f"/orgs/{org}/connections/{connection_id}/backups",
                route=BACKUPS_ROUTE,
                path_parameters={"org_id": org, "connection_id": connection_id},
                sub=sub,
            ),
        )

    def audit_outage(self, down: dict[str, Any]) -> None:
        """While `down["s3"]`, the audit bucket cannot be written (only events of the action
        `down["s3"]` names, if it is a string); while `down["marks"]`, the audit sweep's marks
        cannot be. For the backup functions' own clients."""

        def s3(params: dict[str, Any], **_: Any) -> None:
            action = down["s3"]
            if not action or not str(params.get("Key", "")).startswith("audit/"):
                return
            if action is True or f'"action":"{action}"'.encode() in bytes(params["Body"]):
                raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutObject")

        def marks(params: dict[str, Any], **_: Any) -> None:
            if down["marks"] and params["Item"]["pk"]["S"].startswith("AUDIT_SWEEP#"):
                raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "PutItem")

        audit_s3 = self.services.audit._objects._s3
        audit_s3.meta.events.register("before-parameter-build.s3.PutObject", s3)
        dynamodb = self.services.table._store.client
        dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", marks)

    def sweep_later(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        """The dispatcher's scheduled run once every sweep mark made now is due."""
        later = datetime.now(UTC) + SWEEP_GRACE
        with monkeypatch.context() as patch:
            patch.setattr(self.backups, "_now", lambda: later)
            return self.dispatch()

    def dispatch(self) -> dict[str, Any]:
        event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        result: dict[str, Any] = self.backups.lambda_handler(event, Context())
        return result

    @property
    def sqs(self) -> Any:
        return made(self.services.sqs)  # the client itself, so that tests can patch it

    def drain(self, *, context: Callable[[], Context] = Context, max_invocations: int = 200) -> int:
        """Run the worker until the backup queue is empty, as Lambda's poller does; how many
        invocations it took."""
        queue = self.settings.backup_queue_url
        count = 0
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=queue, MaxNumberOfMessages=1, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return count
            count += 1
            assert count <= max_invocations, "the queue does not drain"
            message = messages[0]
            record = sqs_record(message)
            result = self.backups.worker_handler({"Records": [record]}, context())
            self.invocations.append(result)
            if result["batchItemFailures"]:
                self.sqs.change_message_visibility(
                    QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])

    @property
    def dead_letter_queue_url(self) -> str:
        return str(self.sqs.get_queue_url(QueueName=_dlq_name(self.sqs))["QueueUrl"])

    def dead_letters(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.dead_letter_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def lose_attempts(self, attempts: int) -> None:
        """Receive the backup queue's next message `attempts` times with no answer, as when the
        worker times out, runs out of memory or crashes; the queue's redrive policy then moves
        it to the dead-letter queue on the receive after its maxReceiveCount."""
        queue = self.settings.backup_queue_url
        for _ in range(attempts):
            (message,) = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"]
            self.sqs.change_message_visibility(
                QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        assert not self.sqs.receive_message(QueueUrl=queue).get("Messages")

    def drain_dead_letters(self) -> list[dict[str, Any]]:
        """Run the dead-letter function over the dead-letter queue, as Lambda's poller does;
        each invocation's result."""
        queue = self.dead_letter_queue_url
        results = []
        while messages := self.sqs.receive_message(
            QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", []):
            result = self.backups.dead_letter_handler(
                {"Records": [sqs_record(m) for m in messages]}, Context()
            )
            results.append(result)
            failed = {f["itemIdentifier"] for f in result["batchItemFailures"]}
            for message in messages:
                if message["MessageId"] in failed:  # back at once, for the next drain
                    self.sqs.change_message_visibility(
                        QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
            if failed:
                return results
        return results

    def record(self, org: str, backup_id: str) -> dict[str, Any]:
        from strongroom.backups import BACKUP_KIND

        item = self.services.table.get(
            org,
            BACKUP_KIND,
            backup_id,
            now=__import__("datetime").datetime.now(__import__("datetime").UTC),
        )
        return dict(item.attributes)

    def read(self, key: str, version_id: str | None = None) -> bytes:
        params: dict[str, Any] = {"Bucket": self.settings.backup_bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        body: bytes = self.services.s3.get_object(**params)["Body"].read()
        return body

    # ---- what the sandbox serves ------------------------------------------------------------

    def expected(self, resource: str) -> list[Any]:
        elements: list[Any] = []
        for parameters, listing in resource_listings(self.okta.org, resource):
            for item in listing.items():
                clean = without_secret_fields(resource, item)
                elements.append(
                    clean if resource in TOP_LEVEL else {"parent": parameters, "item": clean}
                )
        return elements

    def expected_removed_fields(self) -> dict[str, list[str]]:
        """Per resource, the secret paths that at least one of its items holds."""
        removed: dict[str, list[str]] = {}
        for resource, paths in SECRET_FIELDS.items():
            held = set()
            for _, listing in resource_listings(self.okta.org, resource):
                for item in listing.items():
                    for path in paths:
                        node: Any = item
                        for name in path.split("."):
                            node = node.get(name) if isinstance(node, dict) else None
                        if node is not None:
                            held.add(path)
            if held:
                removed[resource] = sorted(held)
        return dict(sorted(removed.items()))


def sqs_record(message: dict[str, Any]) -> dict[str, Any]:
    """An SQS message as Lambda's poller hands it to a function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "eventSource": "aws:sqs",
    }


def _dlq_name(sqs: Any) -> str:
    for url in sqs.list_queues().get("QueueUrls", []):
        if "DeadLetter" in url:
            return str(url.rsplit("/", 1)[1])
    raise AssertionError("no dead-letter queue")


# S3 (and moto) refuse parts under 5 MiB but the last; tests that need files of several parts
# shrink both sides alike with `small_parts`.
SMALL_PART = 4096


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    import moto.s3.models
    from backup_jobs import worker

    monkeypatch.setattr(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", SMALL_PART)
    monkeypatch.setattr(worker, "PART_SIZE", SMALL_PART)


@pytest.fixture
def okta_spec() -> OrgSpec:
    return OrgSpec(users=120, groups=6, apps=5, admins=3)


@pytest.fixture
def okta(okta_spec: OrgSpec) -> Iterator[SandboxOkta]:
    with SandboxOkta(okta_spec) as sandbox:
        yield sandbox


@pytest.fixture
def world(
    stack: Stack, okta: SandboxOkta, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch
) -> BackupWorld:
    environment = stack.function_environment("BackupWorkerFunction")
    environment["STRONGROOM_DEV_ALLOW_HOSTS"] = okta.host_port
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environ(os.environ)
    session = iam_check.session()

    credential_store = iam_check.guard(
        load_app("credential_store", "credential_store_app_backups"), "credential_store"
    )
    from credential_store import services as credential_services

    built_store = credential_services.build_services(settings, session)
    monkeypatch.setattr(credential_services, "services", lambda: built_store)
    monkeypatch.setattr(credential_store, "services", lambda: built_store)

    backups = iam_check.guard(load_app("scheduled_backup"), "scheduled_backup")
    from backup_jobs import services as backup_services

    metrics = Metrics()
    # Real waits for rate-limit resets; short backoff so that retried faults stay quick.
    provider = backup_services.provider_client(
        settings, retry=RetryPolicy(max_attempts=5, base_delay=0.01, max_delay=0.05, max_wait=65.0)
    )
    built = backup_services.build_services(settings, session, provider=provider, metrics=metrics)
    monkeypatch.setattr(backup_services, "services", lambda: built)
    monkeypatch.setattr(backups, "services", lambda: built)
    return BackupWorld(credential_store, backups, built, okta, settings, metrics)
