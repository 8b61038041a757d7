"""The sandbox Okta of the real stack: the walk-through's connection is accepted, other loopback
ports are not, and the sandbox answers the token the ready line gives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import LocalStackClient
from tests.support.sandbox_okta import okta_session, walk

pytestmark = pytest.mark.e2e
TIMEOUT = 30


def _connection(domain: str, token: str) -> dict[str, Any]:
    # The body the walk-through prints.
    return {
        "name": "Sandbox Okta",
        "provider": "okta",
        "domain": domain,
        "auth": {"method": "api_token", "token": token},
        "schedule": "rate(1 day)",
    }


def test_a_connection_to_the_sandbox_is_accepted_and_its_token_reads_the_org(
    local_stack: LocalStackClient,
) -> None:
    sandbox = local_stack.running.sandbox_okta
    alice = f"alice-{uuid.uuid4().hex[:8]}"
    headers = local_stack.auth(alice)
    created = local_stack.http.post(
        local_stack.url("/orgs"), json={"name": "Sandbox"}, headers=headers, timeout=TIMEOUT
    )
    org = created.json()["org_id"]
    connections = local_stack.url(f"/orgs/{org}/connections")
    accepted = local_stack.http.post(
        connections,
        json=_connection(sandbox["domain"], sandbox["api_token"]),
        headers=headers,
        timeout=TIMEOUT,
    )
    assert accepted.status_code == 201, accepted.text
    stored = local_stack.http.get(
        f"{connections}/{accepted.json()['connection_id']}", headers=headers, timeout=TIMEOUT
    ).json()
    assert stored["domain"] == sandbox["domain"]
    assert sandbox["api_token"] not in str(stored)
    # Another loopback port is not on the functions' allow list: not a provider domain.
    host, port = sandbox["domain"].rsplit(":", 1)
    refused = local_stack.http.post(
        connections,
        json=_connection(f"{host}:{int(port) + 1}", sandbox["api_token"]),
        headers=headers,
        timeout=TIMEOUT,
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith("domain:")
    with okta_session(sandbox["api_token"]) as okta:
        assert len(walk(okta, f"{sandbox['url']}/api/v1/users").items) == sandbox["sizes"]["users"]
