"""Every sample event under events/credential_store/ drives its route, in a realistic order (the
schedule's sample drives the stalled-deletion sweep in test_org_deletion)."""

from __future__ import annotations

import time

import pytest

from strongroom_local.routes import http_routes
from strongroom_local.template import load_template
from tests.support.events import EVENTS_DIR, load_event
from tests.unit.credential_store.conftest import Invoke

SAMPLES = EVENTS_DIR / "credential_store"
# The order a newcomer would replay them in, with the status each answers.
SCENARIO = [
    ("health", 200),
    ("openapi", 200),
    ("create_org", 201),
    ("get_org", 200),
    ("list_members", 200),
    ("put_member", 200),
    ("create_connection", 201),
    ("list_connections", 200),
    ("get_connection", 200),
    ("replace_credentials", 200),
    ("delete_connection", 204),
    ("delete_member", 204),
    ("list_audit", 200),  # alice is the owner: she reads what the scenario did
    ("delete_org", 204),
]
# The function's one event that is not an HTTP request.
SCHEDULE = "finish_stalled_deletions"


def test_there_is_a_sample_event_for_every_route_of_the_function() -> None:
    routes = {
        r.route_key
        for r in http_routes(load_template())
        if r.function.logical_id == "CredentialStoreFunction"
    }
    sampled = {load_event(f"credential_store/{name}")["routeKey"] for name, _ in SCENARIO}
    assert sampled == routes
    assert {p.stem for p in SAMPLES.glob("*.json")} == {name for name, _ in SCENARIO} | {SCHEDULE}


def test_sample_events_replay_end_to_end(invoke: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    from credential_store import connections, orgs

    sample_org = load_event("credential_store/get_org")["pathParameters"]["org_id"]
    monkeypatch.setattr(orgs, "new_org_id", lambda: sample_org)
    sample_connection = load_event("credential_store/get_connection")["pathParameters"]
    monkeypatch.setattr(
        connections, "new_connection_id", lambda: sample_connection["connection_id"]
    )
    for name, expected in SCENARIO:
        event = load_event(f"credential_store/{name}")
        if name == "delete_org":
            # Deleting needs a sign-in within 5 minutes; a sample's fixed auth_time goes stale.
            claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
            claims["auth_time"] = str(int(time.time()))
        status, body = invoke(event)
        assert status == expected, (name, body)
