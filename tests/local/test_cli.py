"""The `strongroom` command's arguments: what it refuses before it starts or mints anything,
and what dev-token warns about."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from strongroom.api.identity import is_subject
from strongroom_local.cli import MAX_DEV_TOKEN_SECONDS, build_parser, main
from strongroom_local.issuer import KEY_FILE
from strongroom_local.stack import STACK_FILE


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """`strongroom <argv>` is a usage error (exit 2, before `main` runs anything): its stderr."""
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_local_refuses_a_stack_without_workers(
    workers: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # With no worker a function never runs: every request would wait 30 s for a 503.
    assert "--max-workers" in refused(["local", "--max-workers", workers], capsys)


def test_local_takes_one_worker_or_more() -> None:
    assert build_parser().parse_args(["local", "--max-workers", "1"]).max_workers == 1
    assert build_parser().parse_args(["local"]).max_workers == 4


# ---- dev-token ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        ["--ttl", "0"],
        ["--ttl", "-60"],
        ["--ttl", str(MAX_DEV_TOKEN_SECONDS + 1)],
        ["--ttl", str(10**12)],
        # auth_time in the future: the functions answer reauth_required.
        ["--auth-age", "-1"],
        ["--auth-age", str(MAX_DEV_TOKEN_SECONDS + 1)],
    ],
)
def test_dev_token_refuses_lifetimes_the_stack_would_refuse(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert arguments[0] in refused(["dev-token", "--sub", "alice", *arguments], capsys)


@pytest.mark.parametrize(
    "sub", ["", "system:scheduler", "SYSTEM:x", "operator:local", "bob smith", "é", "a" * 129]
)
def test_dev_token_refuses_a_subject_the_functions_refuse(
    sub: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not is_subject(sub)
    assert "--sub" in refused(["dev-token", "--sub", sub], capsys)


def test_dev_token_takes_the_bounds_and_mints_what_it_was_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    for ttl, auth_age in ((1, 0), (MAX_DEV_TOKEN_SECONDS, MAX_DEV_TOKEN_SECONDS)):
        argv = ["dev-token", "--state-dir", str(state), "--sub", "a" * 128]
        assert main([*argv, "--ttl", str(ttl), "--auth-age", str(auth_age)]) == 0
        claims = jwt.decode(capsys.readouterr().out.strip(), options={"verify_signature": False})
        assert claims["sub"] == "a" * 128
        assert claims["exp"] - claims["iat"] == ttl
        assert claims["iat"] - claims["auth_time"] == auth_age


def test_dev_token_warns_when_no_stack_runs_on_its_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A mistyped --state-dir gets a key of its own: still a token (a stack may start there
    # later), but said on stderr.
    state = tmp_path / "mistyped"
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 0
    printed = capsys.readouterr()
    assert jwt.decode(printed.out.strip(), options={"verify_signature": False})["sub"] == "alice"
    assert f"no stack is running on {state}" in printed.err
    # With a running stack's stack.json there, no warning.
    (state / STACK_FILE).write_text(json.dumps({"control_token": "x"}))
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 0
    printed = capsys.readouterr()
    assert jwt.decode(printed.out.strip(), options={"verify_signature": False})["sub"] == "alice"
    assert printed.err == ""


# ---- --state-dir --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["local"],
        ["dev-token", "--sub", "alice"],
        ["fire-schedule", "Function"],
        ["invoke", "Function"],
        ["secret", "name"],
        ["sandbox-token"],
        ["audit-verify", "org"],
    ],
)
def test_an_empty_state_dir_is_refused(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # `--state-dir "$UNSET"` would be the current directory: the private key would land there.
    assert "--state-dir" in refused([*command, "--state-dir", ""], capsys)


def test_dev_token_with_an_empty_state_dir_writes_nothing_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["dev-token", "--state-dir", "", "--sub", "alice"])
    assert list(tmp_path.iterdir()) == []


def test_dev_token_refuses_a_key_others_can_read_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 0
    capsys.readouterr()
    (state / KEY_FILE).chmod(0o644)
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"strongroom dev-token: {state / KEY_FILE} is open to other users" in printed.err
