"""The sandbox Okta inside `strongroom local`: the ready line, the token, the functions' allow
list, the control token in stack.json, the CLI options and the walk-through."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from strongroom_local.cli import _sandbox_spec, build_parser, walkthrough
from strongroom_local.harness import strongroom_command
from strongroom_local.sandbox_okta import OrgSpec
from strongroom_local.stack import read_stack_file
from tests.local.conftest import FixtureStack
from tests.support.sandbox_okta import okta_session, walk

# One stack serves this module: keep its tests on the worker that runs the fixture stack.
pytestmark = pytest.mark.xdist_group("fixture_stack")


def test_the_ready_line_carries_the_sandbox_and_its_token_works(
    fixture_stack: FixtureStack,
) -> None:
    sandbox = fixture_stack.running.ready["sandbox_okta"]
    assert set(sandbox) == {"url", "domain", "api_token", "sizes"}
    assert sandbox["url"] == f"http://{sandbox['domain']}"
    assert sandbox["domain"].startswith("127.0.0.1:")
    assert sandbox["sizes"] == OrgSpec().as_dict()  # the small default: 25 users
    with okta_session(sandbox["api_token"]) as http:
        users = walk(http, f"{sandbox['url']}/api/v1/users?limit=10")
        refused = http.get(f"{sandbox['url']}/api/v1/users", headers={"Authorization": "SSWS x"})
    assert len(users.items) == 25
    assert users.pages == 3
    assert refused.status_code == 401


def test_the_sandbox_control_token_is_in_the_private_stack_file(
    fixture_stack: FixtureStack,
) -> None:
    running = fixture_stack.running
    private = read_stack_file(running.state_dir)
    token = private["sandbox_okta_control_token"]
    assert token != running.sandbox_okta["api_token"]
    assert token not in json.dumps(running.ready)  # the printed line has no control token
    assert (running.state_dir / "stack.json").stat().st_mode & 0o077 == 0
    control = running.sandbox_control()
    control.reset_counters()
    with okta_session(running.sandbox_okta["api_token"]) as http:
        http.get(f"{running.sandbox_okta['url']}/api/v1/groups", timeout=30)
    counters = control.counters()
    assert counters["by_route"] == {"/api/v1/groups": 1}


def test_sandbox_options_of_strongroom_local() -> None:
    parser = build_parser()
    assert _sandbox_spec(parser.parse_args(["local", "--no-sandbox"])) is None
    assert _sandbox_spec(parser.parse_args(["local"])) == OrgSpec()
    spec = _sandbox_spec(
        parser.parse_args(
            [
                "local",
                "--sandbox-users",
                "2000",
                "--sandbox-groups",
                "60",
                "--sandbox-apps",
                "24",
                "--sandbox-seed",
                "3",
                "--sandbox-size",
                "admins=6",
                "--sandbox-size",
                "group_rules=8",
            ]
        )
    )
    assert spec == OrgSpec(seed=3, users=2000, groups=60, apps=24, admins=6, group_rules=8)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--sandbox-size", "groups=0"], "sandbox: groups: must be an integer from 1 to 100000"),
        (["--sandbox-size", "wheels=4"], "sandbox: wheels: not an org size"),
    ],
)
def test_bad_sandbox_sizes_stop_strongroom_local_before_it_starts(
    tmp_path: Path, arguments: list[str], message: str
) -> None:
    finished = subprocess.run(  # noqa: S603 - our own command line
        [*strongroom_command(), "local", "--state-dir", str(tmp_path), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert message in finished.stderr
    assert not (tmp_path / "stack.json").exists()


def test_the_walkthrough_shows_how_to_reach_and_connect_the_sandbox(
    fixture_stack: FixtureStack,
) -> None:
    ready = fixture_stack.running.ready
    text = walkthrough(ready, fixture_stack.running.state_dir)
    sandbox = ready["sandbox_okta"]
    assert f'curl -s "{sandbox["url"]}/api/v1/users?limit=2"' in text
    assert f"SSWS {sandbox['api_token']}" in text
    connection = json.loads(text.rsplit("-d '", 1)[1].split("'", 1)[0])
    assert connection["domain"] == sandbox["domain"]
    assert connection["auth"] == {"method": "api_token", "token": sandbox["api_token"]}
    assert "Sandbox Okta" not in walkthrough({**ready, "sandbox_okta": None}, Path("s"))
