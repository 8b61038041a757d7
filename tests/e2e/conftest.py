"""End-to-end fixture: the real `strongroom local` on the real template.yaml, over HTTP.

`local_stack` is session-scoped: one stack per test process (under pytest-xdist, one per
worker), on free ports with a private state directory, stopped at the end of the session.
Every test under tests/e2e carries the `e2e` marker, so `-m "not e2e"` skips them all.

    def test_create_org(local_stack):
        response = local_stack.http.post(
            local_stack.url("/orgs"),
            json={"name": "Acme"},
            headers=local_stack.auth("alice"),
        )
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from strongroom_local.authorization_server import LocalAuthorizationServer
from strongroom_local.exceptions import StackStartFailed
from strongroom_local.harness import RunningStack, start_stack, strongroom_command

E2E_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT_SECONDS = 60.0
REQUEST_TIMEOUT_SECONDS = 30


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.e2e)


@dataclass
class LocalStackClient:
    """The running stack, and helpers to call it."""

    running: RunningStack
    http: requests.Session

    @property
    def api_url(self) -> str:
        """Base URL of the HTTP API, stage included (e.g. http://127.0.0.1:PORT/dev)."""
        return self.running.api_url

    @property
    def aws_url(self) -> str:
        """moto's endpoint: every AWS resource of the template lives there."""
        return self.running.aws_url

    @property
    def control_url(self) -> str:
        return self.running.control_url

    @property
    def state_dir(self) -> Path:
        return self.running.state_dir

    def url(self, path: str) -> str:
        return self.api_url + path

    def token(self, sub: str, **kwargs: Any) -> str:
        """A dev token the stack accepts: email=, ttl=, auth_age=, scopes=, now=, claims."""
        return self.running.token(sub, **kwargs)

    def auth(self, sub: str, **kwargs: Any) -> dict[str, str]:
        """`{"Authorization": "Bearer <token>"}` for `sub`."""
        return {"Authorization": f"Bearer {self.token(sub, **kwargs)}"}

    def client(self, service: str) -> Any:
        """A boto3 client of the stack's emulated AWS (to inspect tables, buckets, queues)."""
        return boto3.client(service, endpoint_url=self.aws_url, region_name="us-east-1")

    def log(self) -> str:
        """The stack's stderr so far (its own log and the functions' output)."""
        return self.running.log()

    def cli(self, *args: str) -> tuple[int, Any]:
        """`strongroom <args> --state-dir <the stack's>`: its exit status, and its stdout as
        JSON (its stderr when it printed nothing)."""
        done = subprocess.run(  # noqa: S603 - our own CLI
            [*strongroom_command(), *args, "--state-dir", str(self.state_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


def new_user(name: str) -> str:
    """A subject unique to this test run, so tests sharing the session stack never meet."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def call(
    stack: LocalStackClient, method: str, path: str, sub: str | None, **kwargs: Any
) -> tuple[int, Any]:
    """`method path` on the API as `sub` (None: no token); the status and the JSON body."""
    headers = dict(kwargs.pop("headers", {}))
    if sub is not None:
        headers.update(stack.auth(sub))
    response = stack.http.request(
        method, stack.url(path), headers=headers, timeout=REQUEST_TIMEOUT_SECONDS, **kwargs
    )
    return response.status_code, response.json() if response.content else None


@pytest.fixture(scope="session")
def authorization_server() -> Iterator[LocalAuthorizationServer]:
    """The OAuth 2.0 authorization server double, allow-listed for the stack's functions."""
    with LocalAuthorizationServer() as server:
        yield server


@pytest.fixture(scope="session")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory, authorization_server: LocalAuthorizationServer
) -> Iterator[LocalStackClient]:
    state_dir = tmp_path_factory.mktemp("e2e-stack") / "state"
    try:
        running = start_stack(
            state_dir,
            timeout=STARTUP_TIMEOUT_SECONDS,
            allow_hosts=[authorization_server.host_port],
        )
    except StackStartFailed as exc:
        pytest.fail(str(exc), pytrace=False)
    http = requests.Session()
    http.trust_env = False  # the stack is on loopback: never route through a proxy
    try:
        yield LocalStackClient(running, http)
    finally:
        http.close()
        running.stop()
