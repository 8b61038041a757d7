"""The control endpoint: fire-schedule, invoke and the operator commands routed to the stack,
their failures told apart, and nothing served without the control token."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom_local import servers
from strongroom_local.runtime import Invocation
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

    def fire_schedule(self, function_id: str, event_name: str | None) -> Invocation:
        self.calls.append(("fire", f"{function_id}.{event_name}"))
        if function_id == "EchoFunction":
            raise LookupError(f"no schedule for {function_id}")
        if event_name == "Failing":
            return Invocation("req-fire", ok=False, error_type="RuntimeError")
        return Invocation("req-fire", ok=True, result={"ignored": True})

    def invoke(self, function_id: str, event: Any) -> Invocation:
        self.calls.append(("invoke", f"{function_id} {json.dumps(event)}"))
        if function_id == "Missing":
            raise LookupError(f"no function {function_id}")
        if event.get("fail"):
            return Invocation("req-invoke", ok=False, error_type="RuntimeError")
        return Invocation("req-invoke", ok=True, result={"got": event})

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


def _post(
    server: ControlServer, path: str, token: str = TOKEN, body: bytes = b"{}"
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(  # noqa: S310 - the test's own loopback server
        server.url + path, data=body, method="POST", headers={"Authorization": f"Bearer {token}"}
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


def test_fire_schedule_answers_200_or_502_as_the_function_did_and_404_without_a_schedule(
    control: tuple[ControlServer, FakeStack],
) -> None:
    server, stack = control
    assert _post(server, "/schedules/TickFunction/fire?event=Nightly") == (
        200,
        {"function": "TickFunction", "requestId": "req-fire", "ok": True},
    )
    # The function failed: 502, with its error's type (the CLI then exits 1, not 2).
    assert _post(server, "/schedules/TickFunction/fire?event=Failing") == (
        502,
        {
            "function": "TickFunction",
            "requestId": "req-fire",
            "ok": False,
            "errorType": "RuntimeError",
        },
    )
    assert _post(server, "/schedules/EchoFunction/fire") == (
        404,
        {"message": "no schedule for EchoFunction"},
    )
    assert stack.calls == [
        ("fire", "TickFunction.Nightly"),
        ("fire", "TickFunction.Failing"),
        ("fire", "EchoFunction.None"),
    ]


def test_invoke_answers_the_result_or_502_404_and_400_for_an_event_that_is_not_json(
    control: tuple[ControlServer, FakeStack],
) -> None:
    server, stack = control
    assert _post(server, "/functions/EchoFunction/invoke", body=b'{"n": 1}') == (
        200,
        {
            "function": "EchoFunction",
            "requestId": "req-invoke",
            "ok": True,
            "result": {"got": {"n": 1}},
        },
    )
    assert _post(server, "/functions/EchoFunction/invoke", body=b'{"fail": true}') == (
        502,
        {
            "function": "EchoFunction",
            "requestId": "req-invoke",
            "ok": False,
            "errorType": "RuntimeError",
        },
    )
    assert _post(server, "/functions/Missing/invoke") == (404, {"message": "no function Missing"})
    status, answer = _post(server, "/functions/EchoFunction/invoke", body=b"{not json")
    assert status == 400
    assert "Expecting property name" in answer["message"]
    # The event that was not JSON reached no function.
    assert [call for call, _ in stack.calls] == ["invoke", "invoke", "invoke"]


class SlowStack(FakeStack):
    """Its invocations run until `finish` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.finish = threading.Event()

    def invoke(self, function_id: str, event: Any) -> Invocation:
        self.finish.wait(30)
        return super().invoke(function_id, event)


def test_an_invocation_under_way_sends_interim_100s_until_its_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # So that the CLI can time out on a silent (suspended, hung) stack without bounding the
    # invocation itself.
    monkeypatch.setattr(servers, "KEEPALIVE_SECONDS", 0.01)
    stack = SlowStack()
    server = ControlServer(0, stack)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as s:
            s.sendall(
                b"POST /functions/F/invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                b"Authorization: Bearer " + TOKEN.encode() + b"\r\n\r\n{}"
            )
            received = b""
            while received.count(b"HTTP/1.1 100 Continue\r\n\r\n") < 2:
                received += s.recv(4096)
            assert received.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            stack.finish.set()
            while b"\r\n\r\n{" not in received or not received.endswith(b"}"):
                received += s.recv(4096)
        final = received.split(b"HTTP/1.1 100 Continue\r\n\r\n")[-1]
        assert final.startswith(b"HTTP/1.1 200 OK\r\n")
        assert json.loads(final.split(b"\r\n\r\n", 1)[1])["result"] == {"got": {}}
    finally:
        stack.finish.set()
        server.shutdown()
        server.server_close()
