"""An audit outage after a change commits: the change is answered as done, its audit entries
wait in the table, and the next flush or the dispatcher's sweep appends them, once each."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.audit.pending import PENDING_KIND, SWEEP_GRACE
from strongroom.settings import Settings
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import LambdaContext

MEMBER_ROUTE = "/orgs/{org_id}/members/{user_id}"


@dataclass
class Outage:
    """Failures of one AWS operation, switched on and off, for every client of the session."""

    s3_down: bool = False
    marks_down: bool = False

    def s3(self, **_: Any) -> None:
        if self.s3_down:
            raise EndpointConnectionError(endpoint_url="https://s3.invalid")

    def dynamodb_put(self, params: dict[str, Any], **_: Any) -> None:
        if self.marks_down and params["Item"]["pk"]["S"].startswith("AUDIT_SWEEP#"):
            raise EndpointConnectionError(endpoint_url="https://dynamodb.invalid")


@dataclass
class World:
    credential_store: Any
    dispatcher: Any
    services: Any
    outage: Outage

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        event = http_event(method, path, **kwargs)
        response = self.credential_store.lambda_handler(event, LambdaContext())
        body = response.get("body")
        return response["statusCode"], json.loads(body) if body else None

    def set_member(self, org_id: str, user: str, role: str) -> int:
        status, _ = self.call(
            "PUT",
            f"/orgs/{org_id}/members/{user}",
            route=MEMBER_ROUTE,
            path_parameters={"org_id": org_id, "user_id": user},
            body={"role": role},
        )
        return status

    def events(self, org_id: str) -> list[tuple[str, str | None]]:
        """(action, target id) of the org's chain, oldest first; the chain verified."""
        now = datetime.now(UTC)
        report = self.services.audit.verify_chain(org_id, now=now)
        assert report.ok, report.problems
        page = self.services.audit.list_events(org_id, now=now, limit=100)
        return [(event.action, event.target_id) for event in reversed(page.events)]

    def pending(self, org_id: str) -> int:
        now = datetime.now(UTC)
        return len(self.services.table.query(org_id, PENDING_KIND, now=now).items)

    def tick(self, *, after: timedelta) -> dict[str, Any]:
        """The dispatcher's scheduled invocation, `after` from now."""
        event = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
        later = datetime.now(UTC) + after
        self.dispatcher._now = lambda: later
        result: dict[str, Any] = self.dispatcher.lambda_handler(event, LambdaContext())
        return result


@pytest.fixture
def world(stack: Stack, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch) -> World:
    for name, value in stack.function_environment("CredentialStoreFunction").items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environ(os.environ)
    outage = Outage()
    session = iam_check.session()
    session.events.register("before-call.s3.PutObject", outage.s3)
    session.events.register("before-parameter-build.dynamodb.PutItem", outage.dynamodb_put)

    credential_store = iam_check.guard(
        load_app("credential_store", "credential_store_audit_outages"), "credential_store"
    )
    from credential_store import services as store_services

    built = store_services.build_services(settings, session)
    monkeypatch.setattr(credential_store, "services", lambda: built)

    dispatcher = iam_check.guard(
        load_app("scheduled_backup", "scheduled_backup_audit_outages"), "scheduled_backup"
    )
    from backup_jobs import services as backup_services

    # The dispatcher's clients come from a session of their own: the outage is credential_store's.
    dispatching = backup_services.build_services(settings, iam_check.session())
    monkeypatch.setattr(dispatcher, "services", lambda: dispatching)
    return World(credential_store, dispatcher, built, outage)


def test_an_org_created_during_an_audit_outage_is_answered_and_audited_by_the_sweep(
    world: World,
) -> None:
    world.outage.s3_down = True
    status, body = world.call("POST", "/orgs", body={"name": "Acme"})
    assert status == 201  # the org exists: a 500 would make the client create a second one
    org_id = body["org_id"]
    assert world.call("GET", f"/orgs/{org_id}", route="/orgs/{org_id}")[0] == 200
    world.outage.s3_down = False
    assert world.events(org_id) == []
    assert world.pending(org_id) == 1

    # Not before its grace: the request that recorded it might still be running.
    assert world.tick(after=timedelta(minutes=1))["audit_sweep"]["appended"] == 0
    report = world.tick(after=SWEEP_GRACE + timedelta(minutes=1))
    assert report["audit_sweep"]["appended"] >= 1
    assert world.events(org_id) == [("org.create", org_id)]
    assert world.pending(org_id) == 0
    # Swept once: the next tick finds nothing to append.
    assert world.tick(after=SWEEP_GRACE + timedelta(minutes=6))["audit_sweep"]["appended"] == 0
    assert world.events(org_id) == [("org.create", org_id)]


def test_a_member_change_during_an_outage_is_appended_by_the_orgs_next_change_in_order(
    world: World,
) -> None:
    _, body = world.call("POST", "/orgs", body={"name": "Acme"})
    org_id = body["org_id"]
    world.outage.s3_down = True
    assert world.set_member(org_id, "bob", "admin") == 200
    assert world.set_member(org_id, "carol", "member") == 200
    world.outage.s3_down = False

    assert world.set_member(org_id, "bob", "member") == 200

    assert world.events(org_id) == [
        ("org.create", org_id),
        ("member.add", "bob"),
        ("member.add", "carol"),
        ("member.change_role", "bob"),
    ]
    assert world.pending(org_id) == 0


def test_a_change_whose_audit_cannot_be_recorded_is_not_made(world: World) -> None:
    _, body = world.call("POST", "/orgs", body={"name": "Acme"})
    org_id = body["org_id"]
    world.outage.marks_down = True
    assert world.set_member(org_id, "bob", "admin") == 500
    world.outage.marks_down = False

    status, members = world.call("GET", f"/orgs/{org_id}/members", route="/orgs/{org_id}/members")
    assert status == 200
    assert [m["user_id"] for m in members["members"]] == ["alice"]
    assert world.events(org_id) == [("org.create", org_id)]
