"""The sandbox Okta's control surface (`/__sandbox/`, its own token), the client for it, and
`python -m strongroom_local.sandbox_okta`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from strongroom_local.sandbox_okta import (
    ControlRequestRefused,
    InvalidSandboxSetting,
    OrgSpec,
    SandboxControl,
    SandboxOkta,
)
from tests.support.sandbox_okta import okta_session


@pytest.fixture
def sandbox() -> Iterator[SandboxOkta]:
    with SandboxOkta(OrgSpec(users=12, seed=5)) as running:
        yield running


@pytest.fixture
def control(sandbox: SandboxOkta) -> SandboxControl:
    return SandboxControl(sandbox.url, sandbox.control_token)


@pytest.mark.parametrize("which", ["none", "api", "wrong", "ssws"])
def test_the_control_surface_needs_the_control_token(sandbox: SandboxOkta, which: str) -> None:
    headers = {
        "none": {},
        "api": {"Authorization": f"Bearer {sandbox.api_token}"},
        "wrong": {"Authorization": "Bearer nope"},
        "ssws": {"Authorization": f"SSWS {sandbox.control_token}"},
    }[which]
    session = requests.Session()
    session.trust_env = False
    for method, route in (("GET", "counters"), ("PUT", "faults"), ("DELETE", "faults")):
        response = session.request(
            method,
            f"{sandbox.url}/__sandbox/{route}",
            headers=headers,
            json={"hang": 5},
            timeout=30,
        )
        assert response.status_code == 401
        assert response.json() == {"message": "Unauthorized"}
    assert sandbox.faults.plan.hang == 0
    assert sandbox.snapshot()["requests"] == 0  # control requests are not API requests


def test_faults_set_and_cleared_through_the_control_surface_take_effect(
    sandbox: SandboxOkta, control: SandboxControl
) -> None:
    state = control.set_faults(error_500=1, path_prefix="/api/v1/groups")
    assert state["plan"]["error_500"] == 1
    assert control.faults()["left"]["error_500"] == 1
    with okta_session(sandbox.api_token) as http:
        assert http.get(f"{sandbox.url}/api/v1/users", timeout=30).status_code == 200
        assert http.get(f"{sandbox.url}/api/v1/groups", timeout=30).status_code == 500
        control.set_faults(error_500=3)
        assert control.clear_faults()["plan"]["error_500"] == 0
        assert http.get(f"{sandbox.url}/api/v1/groups", timeout=30).status_code == 200
    counters = control.counters()
    assert counters["requests"] == 3
    assert counters["faults"] == {"error_500": 1}
    assert counters["rate_limits"]["/api/v1/groups"]["peak_window_usage"] == 2
    assert control.reset_counters()["requests"] == 0
    assert control.counters()["by_path"] == {}


def test_rate_limits_set_through_the_control_surface_take_effect(
    sandbox: SandboxOkta, control: SandboxControl
) -> None:
    limits = control.set_rate_limits({"/api/v1/users": {"limit": 1, "window_seconds": 3600}})
    assert limits["/api/v1/users"]["limit"] == 1
    assert limits["/api/v1/groups"]["limit"] == 500  # others keep theirs
    with okta_session(sandbox.api_token) as http:
        url = f"{sandbox.url}/api/v1/users"
        first = http.get(url, timeout=30)
        assert (first.status_code, first.headers["X-Rate-Limit-Limit"]) == (200, "1")
        assert http.get(url, timeout=30).status_code == 429
        assert control.rate_limits()["/api/v1/users"]["remaining"] == 0
        assert control.reset_rate_limits()["/api/v1/users"]["remaining"] == 1
        assert http.get(url, timeout=30).status_code == 200
    assert control.counters()["throttled_by_bucket"] == {"/api/v1/users": 1}


def test_bad_control_requests_are_refused_and_change_nothing(
    sandbox: SandboxOkta, control: SandboxControl
) -> None:
    control.set_faults(error_500=2)
    for bad in ({"error_500": -1}, {"surprise": 1}):
        with pytest.raises(InvalidSandboxSetting):
            control.set_faults(**bad)
    assert control.faults()["left"]["error_500"] == 2
    for limits in (
        {"/api/v1/users": {"limit": 0}},
        {"/api/v1/users": {"window_seconds": 5}},
        {"/api/v1/users": {"limit": 5, "burst": 2}},
        {"/api/v9": {"limit": 5}},
    ):
        with pytest.raises(InvalidSandboxSetting):
            control.set_rate_limits(limits)
    assert control.rate_limits()["/api/v1/users"]["limit"] == 600
    session = requests.Session()
    session.trust_env = False
    headers = {"Authorization": f"Bearer {sandbox.control_token}"}
    not_json = session.put(
        f"{sandbox.url}/__sandbox/faults", data=b"{nope", headers=headers, timeout=30
    )
    assert not_json.status_code == 400
    assert not_json.json() == {"message": "body: not JSON"}
    listed = session.put(f"{sandbox.url}/__sandbox/faults", json=[1], headers=headers, timeout=30)
    assert listed.status_code == 400
    with pytest.raises(ControlRequestRefused, match="Not Found"):
        control._call("GET", "nothing-here")
    with pytest.raises(ControlRequestRefused, match="Unauthorized"):
        SandboxControl(sandbox.url, "wrong").counters()


def test_info_names_the_org(sandbox: SandboxOkta, control: SandboxControl) -> None:
    info = control.info()
    assert info["url"] == sandbox.url
    assert info["host_port"] == f"127.0.0.1:{sandbox.port}"
    assert info["seed"] == 5
    assert info["sizes"]["users"] == 12
    assert "/api/v1/users" in info["buckets"]


def test_the_module_runs_a_sandbox_until_sigterm() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom_local.sandbox_okta",
            "--users",
            "40",
            "--size",
            "groups=3",
            "--seed",
            "9",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())["sandbox_okta"]
        assert ready["sizes"]["users"] == 40
        assert ready["sizes"]["groups"] == 3
        with okta_session(ready["api_token"]) as http:
            users = http.get(f"{ready['url']}/api/v1/users", timeout=30).json()
            groups = http.get(f"{ready['url']}/api/v1/groups", timeout=30).json()
        assert (len(users), len(groups)) == (40, 3)
        assert SandboxControl(ready["url"], ready["control_token"]).counters()["requests"] == 2
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_module_refuses_bad_sizes() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "strongroom_local.sandbox_okta", "--size", "groups=0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert "groups: must be an integer from 1 to 100000" in finished.stderr
