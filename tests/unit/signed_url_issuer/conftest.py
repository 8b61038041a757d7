"""signed_url_issuer through its lambda_handler, on moto resources built from the template.

Orgs and members are made through credential_store's handler (so each org has its tagged KMS
key); backups are planted as scheduled_backup writes them: objects SSE-KMS under the org's key
at the shared layout, then the BACKUP record with its gsi1 listing entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strongroom.backups import (
    BACKUP_KIND,
    MANIFEST_FILE,
    backup_index,
    backup_prefix,
    new_backup_id,
    object_key,
)
from strongroom.settings import Settings
from strongroom.tenancy import TenantTable
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import LambdaContext

LIST_ROUTE = "/orgs/{org_id}/connections/{connection_id}/backups"
GET_ROUTE = "/orgs/{org_id}/backups/{backup_id}"
ISSUE_ROUTE = "/orgs/{org_id}/backups/{backup_id}/download-url"
CONNECTION_ID = "conn_" + "c" * 26


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass
class PlantedBackup:
    backup_id: str
    connection_id: str
    prefix: str
    contents: dict[str, bytes] = field(default_factory=dict)  # resource (or "manifest") -> bytes
    versions: dict[str, str] = field(default_factory=dict)  # resource (or "manifest") -> version


@dataclass
class BackupWorld:
    """Orgs via credential_store, backups planted as the worker writes them, calls to
    signed_url_issuer."""

    credential_store: Any
    issuer: Any
    settings: Settings
    table: TenantTable
    s3: Any

    def _invoke(self, app: Any, event: dict[str, Any]) -> Reply:
        response = app.lambda_handler(event, LambdaContext())
        body = response.get("body")
        parsed = json.loads(body) if body else None
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        return Reply(response["statusCode"], parsed, headers)

    def new_org(self, owner: str = "alice") -> str:
        """An org of `owner`, with bob an admin and carol a member."""
        reply = self._invoke(
            self.credential_store, http_event("POST", "/orgs", sub=owner, body={"name": "Acme"})
        )
        assert reply.status == 201, reply.body
        org = str(reply.body["org_id"])
        for user, role in (("bob", "admin"), ("carol", "member")):
            event = http_event(
                "PUT",
                f"/orgs/{org}/members/{user}",
                sub=owner,
                route="/orgs/{org_id}/members/{user_id}",
                path_parameters={"org_id": org, "user_id": user},
                body={"role": role},
            )
            assert self._invoke(self.credential_store, event).status == 200
        return org

    def plant(
        self,
        org: str,
        *,
        connection_id: str = CONNECTION_ID,
        started_at: datetime | None = None,
        status: str = "complete",
        resources: dict[str, bytes] | None = None,
        backup_id: str | None = None,
        failure_reason: str | None = None,
    ) -> PlantedBackup:
        """A backup as scheduled_backup leaves it: files and manifest (when complete) under the
        org's key, then the record. A running or failed one has no manifest."""
        started_at = started_at or datetime(2026, 11, 23, 3, 0, tzinfo=UTC)
        backup_id = backup_id or new_backup_id()
        prefix = backup_prefix(org, connection_id, started_at, backup_id)
        if resources is None:
            resources = {
                "users": json.dumps([{"id": "00u1", "profile": {"login": "a@x.example"}}]).encode(),
                "groups": json.dumps([{"id": "00g1", "profile": {"name": "Everyone"}}]).encode(),
            }
        planted = PlantedBackup(backup_id, connection_id, prefix)
        finished_at = started_at + timedelta(minutes=2)
        files: dict[str, dict[str, Any]] = {}
        written = resources if status == "complete" else {}
        for resource, body in written.items():
            key = object_key(prefix, resource)
            version_id = self._put(org, key, body)
            planted.versions[resource] = version_id
            items = len(json.loads(body))
            files[resource] = {
                "key": key,
                "version_id": version_id,
                "sha256": hashlib.sha256(body).hexdigest(),
                "bytes": len(body),
                "items": items,
            }
            planted.contents[resource] = body
        attributes: dict[str, Any] = {
            "connection_id": connection_id,
            "provider": "okta",
            "trigger": "schedule",
            "requested_by": "system:scheduler",
            "status": status,
            "suspect": False,
            "started_at": _iso(started_at),
            "prefix": prefix,
            "manifest_key": object_key(prefix, "manifest"),
            "files": files,
            "removed_fields": {"users": ["credentials.password"]} if files else {},
            "schema_version": 1,
        }
        if status != "running":
            attributes["finished_at"] = _iso(finished_at)
        if failure_reason:
            attributes["failure_reason"] = failure_reason
        if status == "complete":
            manifest = {
                "schema_version": 1,
                "backup_id": backup_id,
                "org_id": org,
                "connection_id": connection_id,
                "provider": "okta",
                "started_at": attributes["started_at"],
                "finished_at": attributes["finished_at"],
                # As the worker's: each file's version is in the record, not the manifest.
                "files": [
                    {"resource": r, **{k: v for k, v in entry.items() if k != "version_id"}}
                    for r, entry in sorted(files.items())
                ],
                "removed_fields": attributes["removed_fields"],
            }
            body = json.dumps(manifest, sort_keys=True).encode()
            attributes["manifest_version_id"] = self._put(org, prefix + MANIFEST_FILE, body)
            planted.versions["manifest"] = attributes["manifest_version_id"]
            planted.contents["manifest"] = body
        self.table.create(
            org,
            BACKUP_KIND,
            backup_id,
            attributes=attributes,
            now=started_at,
            index=backup_index(connection_id, started_at, backup_id),
        )
        return planted

    def _put(self, org: str, key: str, body: bytes) -> str:
        """Write an object of the org as the worker does; its version id."""
        return self.s3.put_object(
            Bucket=self.settings.backup_bucket,
            Key=key,
            Body=body,
            ContentType="application/json",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=self.settings.org_key_alias_prefix + org,
        )["VersionId"]

    # ---- the function's routes ----------------------------------------------------------------

    def list(
        self, org: str, connection_id: str = CONNECTION_ID, *, sub: str = "carol", **query: Any
    ) -> Reply:
        event = http_event(
            "GET",
            f"/orgs/{org}/connections/{connection_id}/backups",
            sub=sub,
            route=LIST_ROUTE,
            path_parameters={"org_id": org, "connection_id": connection_id},
        )
        if query:
            event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
            event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        return self._invoke(self.issuer, event)

    def get(self, org: str, backup_id: str, *, sub: str = "carol") -> Reply:
        event = http_event(
            "GET",
            f"/orgs/{org}/backups/{backup_id}",
            sub=sub,
            route=GET_ROUTE,
            path_parameters={"org_id": org, "backup_id": backup_id},
        )
        return self._invoke(self.issuer, event)

    def issue(
        self,
        org: str,
        backup_id: str,
        body: Any = None,
        *,
        sub: str = "bob",
        raw_body: str | None = None,
    ) -> Reply:
        event = http_event(
            "POST",
            f"/orgs/{org}/backups/{backup_id}/download-url",
            sub=sub,
            route=ISSUE_ROUTE,
            path_parameters={"org_id": org, "backup_id": backup_id},
            body=body,
            raw_body=raw_body,
        )
        return self._invoke(self.issuer, event)

    def audit(self, org: str) -> list[Any]:
        page = self.issuer.services().audit.list_events(org, now=datetime.now(UTC), limit=100)
        return list(reversed(page.events))


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def world(stack: Stack, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch) -> BackupWorld:
    for name, value in stack.function_environment("SignedUrlIssuerFunction").items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environ(os.environ)
    session = iam_check.session()
    credential_store = iam_check.guard(load_app("credential_store"), "credential_store")
    issuer = iam_check.guard(load_app("signed_url_issuer"), "signed_url_issuer")
    from backup_downloads import services as issuer_services
    from credential_store import services as cs_services

    built_cs = cs_services.build_services(settings, session)
    built_issuer = issuer_services.build_services(settings, session)
    monkeypatch.setattr(credential_store, "services", lambda: built_cs)
    monkeypatch.setattr(issuer, "services", lambda: built_issuer)
    return BackupWorld(
        credential_store=credential_store,
        issuer=issuer,
        settings=settings,
        table=built_issuer.table,
        s3=session.client("s3"),
    )
