"""The README's quick start, run line for line against the live local stack, so it cannot rot."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from strongroom_local.cli import build_parser
from strongroom_local.template import REPO_ROOT
from tests.e2e.conftest import LocalStackClient

pytestmark = pytest.mark.e2e
README_API = "http://127.0.0.1:3000/dev"


def _quickstart_script(block: str = "quickstart") -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(rf"<!-- {block}:.*?-->\s*```sh\n(.*?)```\s*<!-- /{block} -->", text, re.S)
    assert match, f"README.md lost its {block} block"
    return match.group(1)


def _run(script: str, *, cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own README, run by bash
        ["bash", "-euo", "pipefail", "-c", script],  # noqa: S607
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_readme_quickstart_creates_an_org_and_lists_its_owner(
    local_stack: LocalStackClient,
) -> None:
    script = _quickstart_script()
    assert README_API in script
    # Only the stack's address and state directory differ from a newcomer's defaults.
    script = script.replace(README_API, local_stack.api_url)
    script = script.replace(
        "dev-token ", f"dev-token --state-dir {shlex.quote(str(local_stack.state_dir))} "
    )
    result = _run(script, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    members = json.loads(result.stdout.strip().splitlines()[-1])["members"]
    assert [(m["user_id"], m["role"]) for m in members] == [("alice", "owner")]


def test_the_readme_addresses_are_where_make_run_serves(local_stack: LocalStackClient) -> None:
    """The tests swap the README's addresses for the fixture stack's free ports: `make run` must
    serve at the ones the README names (its API port and stage, the sandbox's port)."""
    dry_run = subprocess.run(
        ["make", "-s", "-n", "run"],  # noqa: S607
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (command,) = [line for line in dry_run.stdout.splitlines() if "strongroom local" in line]
    arguments = shlex.split(command.partition("strongroom ")[2])
    options = build_parser().parse_args(arguments)
    api = urlsplit(README_API)
    assert (api.hostname, api.port) == ("127.0.0.1", options.api_port)
    # The stage is the template's, as the fixture stack serves it.
    assert urlsplit(local_stack.api_url).path == api.path
    assert options.sandbox_port == 3001
    assert "127.0.0.1:3001" in _quickstart_script("backups")


def test_readme_webhook_example_is_accepted(local_stack: LocalStackClient) -> None:
    script = _quickstart_script("webhooks")
    assert README_API in script
    script = script.replace(README_API, local_stack.api_url)
    script = script.replace(
        "strongroom secret ",
        f"strongroom secret --state-dir {shlex.quote(str(local_stack.state_dir))} ",
    )
    result = _run(script, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"status": "accepted"}


def test_readme_backup_example_downloads_a_file_the_manifest_describes(
    local_stack: LocalStackClient, tmp_path: Path
) -> None:
    sandbox = local_stack.running.sandbox_okta
    script = _quickstart_script() + _quickstart_script("backups")
    assert README_API in script
    assert "127.0.0.1:3001" in script
    # Only the stack's addresses and state directory differ from a newcomer's `make run`; the
    # files it downloads go to a scratch directory rather than the repository.
    state = shlex.quote(str(local_stack.state_dir))
    script = (
        script.replace(README_API, local_stack.api_url)
        .replace("127.0.0.1:3001", sandbox["domain"])
        .replace(
            ".venv/bin/strongroom", shlex.quote(str(Path(sys.executable).parent / "strongroom"))
        )
        .replace("dev-token ", f"dev-token --state-dir {state} ")
        .replace("sandbox-token", f"sandbox-token --state-dir {state}")
    )
    result = _run(script, cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    # The quick start's last curl prints no newline: the check's line ends the output.
    printed = re.search(r"(True|False) (\d+)\s*$", result.stdout)
    assert printed, result.stdout[-500:]
    assert printed.group(1) == "True"
    assert int(printed.group(2)) == sandbox["sizes"]["users"]
    backup = json.loads((tmp_path / "backup.json").read_text(encoding="utf-8"))
    assert backup["status"] == "complete"
