"""The control endpoint's operator commands: routed to the stack, their failures told apart,
and nothing served without the control token."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom_local.servers import CommandFailed, ControlServer

TOKEN = "control-token-for-tests"


class FakeStack:
    control_token = TOKEN

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def jwks(self) -> dict[str, Any]:
        return {"keys": []}

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        return {"issuer": base_url}

    def fire_schedule(self, function_id: str, event_name: str | None) -> Any:
        raise NotImplementedError

    def invoke(self, function_id: str, event: Any) -> Any:
        raise NotImplementedError

    def verify_audit(self, org_id: str) -> dict[str, Any]:
        self.calls.append(("verify", org_id))
        return {"ok": True}

    def rotate_dek(self, org_id: str) -> dict[str, Any]:
        self.calls.append(("rotate", org_id))
        if org_id == "org_missing":
            raise LookupError("the org has no keyring")
        if org_id == "org_down":
            raise CommandFailed("the command failed (KeyringUnavailable)")
        return {"org_id": org_id, "dek_version": 2}

    def reseal(self, org_id: str) -> dict[str, Any]:
        self.calls.append(("reseal", org_id))
        return {"org_id": org_id, "resealed": 0}


@pytest.fixture
def control() -> Iterator[tuple[ControlServer, FakeStack]]:
    stack = FakeStack()
    server = ControlServer(0, stack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, stack
    server.shutdown()
    server.server_close()


def _post(server: ControlServer, path: str, token: str = TOKEN) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
        server.url + path, data=b"{}", method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_key_commands_reach_the_stack_and_their_failures_are_told_apart(
    control: tuple[ControlServer, FakeStack],
) -> None:
    server, stack = control
    assert _post(server, "/keys/org_a/rotate") == (200, {"org_id": "org_a", "dek_version": 2})
    assert _post(server, "/keys/org_a/reseal") == (200, {"org_id": "org_a", "resealed": 0})
    assert _post(server, "/keys/org_missing/rotate")[0] == 404
    assert _post(server, "/keys/org_down/rotate") == (
        503,
        {"message": "the command failed (KeyringUnavailable)"},
    )
    assert stack.calls == [
        ("rotate", "org_a"),
        ("reseal", "org_a"),
        ("rotate", "org_missing"),
        ("rotate", "org_down"),
    ]


def test_without_the_control_token_no_command_runs(
    control: tuple[ControlServer, FakeStack],
) -> None:
    server, stack = control
    assert _post(server, "/keys/org_a/rotate", token="wrong")[0] == 401
    assert stack.calls == []
