"""Every sample event under events/signed_url_issuer/ drives its route, in a realistic order."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from strongroom_local.routes import http_routes
from strongroom_local.template import load_template
from tests.support.events import EVENTS_DIR, load_event
from tests.unit.signed_url_issuer.conftest import BackupWorld

SAMPLES = EVENTS_DIR / "signed_url_issuer"
SCENARIO = [
    ("list_backups", 200),
    ("get_backup", 200),
    ("issue_download_url", 200),
    ("issue_manifest_download_url", 200),
]


def test_there_is_a_sample_event_for_every_route_of_the_function() -> None:
    routes = {
        r.route_key
        for r in http_routes(load_template())
        if r.function.logical_id == "SignedUrlIssuerFunction"
    }
    sampled = {load_event(f"signed_url_issuer/{name}")["routeKey"] for name, _ in SCENARIO}
    assert sampled == routes
    assert {p.stem for p in SAMPLES.glob("*.json")} == {name for name, _ in SCENARIO}


def test_sample_events_replay(world: BackupWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from credential_store import orgs

    sample = load_event("signed_url_issuer/get_backup")["pathParameters"]
    connection_id = load_event("signed_url_issuer/list_backups")["pathParameters"]["connection_id"]
    monkeypatch.setattr(orgs, "new_org_id", lambda: sample["org_id"])
    org = world.new_org()
    assert org == sample["org_id"]
    world.plant(org, connection_id=connection_id, backup_id=sample["backup_id"])
    replies = {}
    for name, expected in SCENARIO:
        reply = world._invoke(world.issuer, load_event(f"signed_url_issuer/{name}"))
        assert reply.status == expected, (name, reply.body)
        replies[name] = reply.body
    assert [b["backup_id"] for b in replies["list_backups"]["backups"]] == [sample["backup_id"]]
    assert replies["issue_download_url"]["expires_in"] == 600
    assert urlsplit(replies["issue_download_url"]["url"]).path.endswith("/users.json")
    assert urlsplit(replies["issue_manifest_download_url"]["url"]).path.endswith("/manifest.json")
