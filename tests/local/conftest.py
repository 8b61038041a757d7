"""Fixtures of the local stack's tests: the test-only template, and a running stack of it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import pytest
import requests

from strongroom_local.harness import RunningStack, start_stack

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_TEMPLATE = FIXTURES / "template.yaml"
ALLOWED_HOST = "127.0.0.1:9"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], *, timeout: float = 30.0) -> T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)


@dataclass
class FixtureStack:
    """`strongroom local` running the test-only template, with its record folder."""

    running: RunningStack
    record_dir: Path
    http: requests.Session

    def url(self, path: str) -> str:
        return self.running.api_url + path

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=30, **kwargs)

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.running.aws_url, region_name="us-east-1")


@pytest.fixture(scope="session")
def fixture_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixtureStack]:
    base = tmp_path_factory.mktemp("fixture-stack")
    record_dir = base / "records"
    record_dir.mkdir()
    running = start_stack(
        base / "state",
        template_path=FIXTURE_TEMPLATE,
        parameters={"RecordDir": str(record_dir)},
        allow_hosts=[ALLOWED_HOST],
        # The timer is tested in-process; here schedules fire only when asked to.
        extra_args=["--no-schedules"],
    )
    http = requests.Session()
    http.trust_env = False  # never a proxy: everything is on loopback
    try:
        yield FixtureStack(running, record_dir, http)
    finally:
        http.close()
        running.stop()
