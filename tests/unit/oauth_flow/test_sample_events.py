"""Every sample event under events/oauth_callback/ drives its route."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from strongroom_local.routes import http_routes
from strongroom_local.template import load_template
from tests.support.events import EVENTS_DIR, load_event
from tests.unit.oauth_flow.conftest import OAuthWorld

SAMPLES = EVENTS_DIR / "oauth_callback"
# Replay order and the answer of each. The sample callbacks carry a made-up state, so they
# end in the invalid_state redirect: a real state is 256 random bits.
SCENARIO = [("authorize", 200), ("callback_denied", 302), ("callback", 302)]


def test_there_is_a_sample_event_for_every_route_of_the_function() -> None:
    routes = {
        r.route_key
        for r in http_routes(load_template())
        if r.function.logical_id == "OAuthCallbackFunction"
    }
    sampled = {load_event(f"oauth_callback/{name}")["routeKey"] for name, _ in SCENARIO}
    assert sampled == routes
    assert {p.stem for p in SAMPLES.glob("*.json")} == {name for name, _ in SCENARIO}


def test_sample_events_replay(world: OAuthWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    from credential_store import connections, orgs

    sample = load_event("oauth_callback/authorize")["pathParameters"]
    monkeypatch.setattr(orgs, "new_org_id", lambda: sample["org_id"])
    monkeypatch.setattr(connections, "new_connection_id", lambda: sample["connection_id"])
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    assert (org, connection_id) == (sample["org_id"], sample["connection_id"])
    for name, expected in SCENARIO:
        reply = world._invoke(world.oauth_callback, load_event(f"oauth_callback/{name}"))
        assert reply.status == expected, (name, reply.body)
        if expected == 302:
            query = parse_qs(urlsplit(reply.headers["location"]).query)
            assert query == {"result": ["invalid_state"]}
