"""The `strongroom` command's arguments: what it refuses before it starts or mints anything,
and what dev-token warns about; how fire-schedule and invoke meet a stack that fails them."""

from __future__ import annotations

import fcntl
import http.client
import json
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest

from strongroom.api.identity import is_subject
from strongroom_local import cli, servers
from strongroom_local.cli import MAX_DEV_TOKEN_SECONDS, build_parser, main
from strongroom_local.exceptions import StackNotRunning, UnsafeStateDir
from strongroom_local.issuer import CONFIG_FILE, KEY_FILE, write_private_file
from strongroom_local.stack import LOCK_FILE, STACK_FILE, read_stack_file

# Locks held as a running stack holds its state directory's (let go after each test).
_HELD_LOCKS: list[int] = []


@pytest.fixture(autouse=True)
def _let_go_of_held_locks() -> Iterator[None]:
    yield
    while _HELD_LOCKS:
        os.close(_HELD_LOCKS.pop())


def running_stack_file(state: Path, document: dict[str, Any]) -> None:
    """stack.json as a running stack leaves it: written, and the state dir's lock held."""
    write_private_file(state / STACK_FILE, json.dumps(document).encode())
    fd = os.open(state / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    _HELD_LOCKS.append(fd)


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


@pytest.mark.parametrize(
    "entry", ["::1:8080", "[127.0.0.1]:80", "127.0.0.1:\u0668\u0660", "evil.example\\@127.0.0.1:80"]
)
def test_local_refuses_an_allow_host_the_functions_settings_would_refuse(
    entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--allow-host" in refused(["local", "--allow-host", entry], capsys)


def test_local_takes_the_loopback_allow_hosts_the_settings_take() -> None:
    entries = ["127.0.0.1:8443", "[::1]:9001", "localhost:9000"]
    argv = ["local", *(arg for entry in entries for arg in ("--allow-host", entry))]
    assert build_parser().parse_args(argv).allow_host == entries


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
        # auth_time in the future: the functions would answer reauth_required.
        ["--auth-age", "-1"],
        ["--auth-age", str(MAX_DEV_TOKEN_SECONDS + 1)],
    ],
)
def test_dev_token_refuses_lifetimes_beyond_its_seven_day_policy(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert arguments[0] in refused(["dev-token", "--sub", "alice", *arguments], capsys)


def test_dev_token_help_calls_the_seven_day_bound_its_own_policy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The stack's authorizer checks only that exp is in the future: the bound is dev-token's.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["dev-token", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "dev-token's policy: no dev token lives longer than 7 days" in help_text


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
    running_stack_file(state, {"control_token": "x"})
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


def test_a_shared_directory_is_neither_chmodded_nor_given_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--state-dir .` in a project root, or a shared 1777 directory: never made 0700 (it would
    # lose its sticky bit), never given the private key.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "notes.txt").write_text("someone's")
    assert main(["dev-token", "--state-dir", str(shared), "--sub", "alice"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"strongroom dev-token: {shared} is not private (mode 1777, not 0700)" in printed.err
    assert f"chmod 700 {shared}" in printed.err
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    assert sorted(p.name for p in shared.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("mode", "make"),
    [
        (0o755, lambda state: None),  # empty: the stack never wrote to it
        (0o1777, lambda state: (state / LOCK_FILE).write_text("")),  # sticky: shared by design
        (0o755, lambda state: (state / "stack.stderr.log").mkdir()),  # a directory, not a file
        (0o755, lambda state: (state / STACK_FILE).symlink_to(state.parent / "elsewhere")),
    ],
    ids=["empty", "sticky", "directory-named-like-a-stack-file", "link-named-like-a-stack-file"],
)
def test_a_directory_the_stack_did_not_write_is_not_chmodded(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mode: int,
    make: Callable[[Path], object],
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    make(state)
    state.chmod(mode)
    before = sorted(p.name for p in state.iterdir())
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"{state} is not private (mode {mode:04o}, not 0700)" in printed.err
    assert stat.S_IMODE(state.stat().st_mode) == mode
    assert sorted(p.name for p in state.iterdir()) == before  # no key written


@pytest.mark.parametrize(
    "content",
    [[CONFIG_FILE, LOCK_FILE, "stack.stderr.log", f".{KEY_FILE}.0a1b2c3d"]],
    ids=["stack-files"],
)
def test_a_directory_holding_only_the_stack_s_files_is_made_private(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: list[str]
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    for name in content:
        (state / name).write_text(
            '{"issuer": "i", "audience": ["a"]}' if name == CONFIG_FILE else ""
        )
    assert main(["dev-token", "--state-dir", str(state), "--sub", "alice"]) == 0
    capsys.readouterr()
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert (state / KEY_FILE).exists()


def test_the_root_and_home_directories_are_refused_as_state_dirs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    for state in ("/", str(home), f"{home}/."):
        assert main(["dev-token", "--state-dir", state, "--sub", "alice"]) == 2
        printed = capsys.readouterr()
        assert printed.out == ""
        assert "give a directory of its own" in printed.err
    assert list(home.iterdir()) == []


# ---- fire-schedule and invoke against a stack ----------------------------------------------


class StubStack(ThreadingHTTPServer):
    """A control endpoint on loopback that answers each POST as `answer` says, and stack.json
    in `state` pointing at it."""

    daemon_threads = True

    def __init__(self, state: Path, answer: Callable[[BaseHTTPRequestHandler], None]) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                stub.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.requests = 0
        state.mkdir(mode=0o700)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        document = {"control_url": self.url, "control_token": "t"}
        running_stack_file(state, document)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Callable[[BaseHTTPRequestHandler], None]], Path]]:
    """Start a StubStack answering as given; its state directory."""
    servers: list[StubStack] = []

    def start(answer: Callable[[BaseHTTPRequestHandler], None]) -> Path:
        state = tmp_path / f"state-{len(servers)}"
        server = StubStack(state, answer)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def answer_with(status: int, body: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


def hang_up(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without an answer, as a stack that stops or dies mid-invocation."""
    handler.close_connection = True


def test_a_stack_that_hangs_up_or_answers_garbage_is_a_clear_error(
    serve: Callable[[Callable[[BaseHTTPRequestHandler], None]], Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    hung_up = serve(hang_up)
    assert main(["invoke", "BackupWorkerFunction", "--state-dir", str(hung_up)]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        "strongroom invoke: the stack did not answer:"
        " Remote end closed connection without response\n"
    )
    garbled = serve(answer_with(200, b"<html>not json</html>"))
    assert main(["fire-schedule", "TickFunction", "--state-dir", str(garbled)]) == 2
    assert capsys.readouterr().err == "strongroom fire-schedule: the stack's answer is not JSON\n"
    bad_gateway = serve(answer_with(502, b"<html>not json</html>"))
    assert main(["fire-schedule", "TickFunction", "--state-dir", str(bad_gateway)]) == 2
    assert capsys.readouterr().err == "strongroom fire-schedule: HTTP 502\n"


def never_answer(handler: BaseHTTPRequestHandler) -> None:
    """Say nothing until the client gives up and closes, as a suspended (SIGSTOP) stack: the
    kernel accepted the connection into the backlog, and nothing answers it."""
    handler.rfile.read(1)
    handler.close_connection = True


@pytest.mark.parametrize(
    ("command", "bound"),
    [
        (["audit-verify", "org_a"], "ORG_COMMAND_TIMEOUT_SECONDS"),
        (["rotate-dek", "org_a"], "ORG_COMMAND_TIMEOUT_SECONDS"),
        (["invoke", "F"], "INVOCATION_SILENCE_SECONDS"),
        (["fire-schedule", "F"], "INVOCATION_SILENCE_SECONDS"),
    ],
)
def test_a_stack_that_says_nothing_is_given_up_on_with_a_clear_error(
    serve: Callable[[Callable[[BaseHTTPRequestHandler], None]], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    bound: str,
) -> None:
    monkeypatch.setattr(cli, bound, 0.2)
    state = serve(never_answer)
    assert main([*command, "--state-dir", str(state)]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err == (
        f"strongroom {command[0]}: the stack sent nothing for 0.2 s (suspended or hung?);"
        " gave up waiting\n"
    )


def keep_alive_then_answer(handler: BaseHTTPRequestHandler) -> None:
    """What the control listener sends while an invocation runs: interim 100s, then the answer."""
    for _ in range(3):
        handler.send_response_only(100)
        handler.end_headers()
    answer_with(200, b'{"function": "F", "requestId": "r", "ok": true}')(handler)


def test_invoke_takes_the_stack_s_keep_alives_and_times_out_only_on_silence(
    serve: Callable[[Callable[[BaseHTTPRequestHandler], None]], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stack answers when the invocation ends, after up to the function's Timeout (900 s
    # for the backup worker) and any wait for a busy worker: the CLI bounds only its silence,
    # which the stack's keep-alives break well within the bound.
    assert servers.KEEPALIVE_SECONDS * 3 <= cli.INVOCATION_SILENCE_SECONDS
    timeouts: list[float | None] = []
    connect = http.client.HTTPConnection.connect

    def recording_connect(self: http.client.HTTPConnection) -> None:
        timeouts.append(self.timeout)
        connect(self)

    monkeypatch.setattr(http.client.HTTPConnection, "connect", recording_connect)
    state = serve(keep_alive_then_answer)
    assert main(["invoke", "F", "--state-dir", str(state)]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True
    assert timeouts == [cli.INVOCATION_SILENCE_SECONDS]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, ": No such file or directory"),
        (b"{not json", " is not JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe", " is not UTF-8 text"),
    ],
)
def test_invoke_refuses_an_event_file_it_cannot_read_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, reason: str
) -> None:
    event_file = tmp_path / "event.json"
    if content is not None:
        event_file.write_bytes(content)
    with pytest.raises(SystemExit) as exited:
        main(["invoke", "F", "--event-file", str(event_file), "--state-dir", str(tmp_path)])
    assert exited.value.code == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert f"argument --event-file: {event_file}{reason}" in printed.err


# ---- what the commands trust in stack.json ------------------------------------------------


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[StubStack]:
    """A StubStack that answers every POST with success, and counts them."""
    server = StubStack(tmp_path / "stub", answer_with(200, b'{"ok": true}'))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def refused_invoke(state: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """`strongroom invoke` on `state` exits 2 having printed nothing: its stderr."""
    assert main(["invoke", "F", "--state-dir", str(state)]) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    return printed.err


def test_a_stack_json_others_could_have_written_is_refused(
    tmp_path: Path, stub: StubStack, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "stub"
    (state / STACK_FILE).chmod(0o666)
    assert f"{state / STACK_FILE} is open to other users" in refused_invoke(state, capsys)
    (state / STACK_FILE).chmod(0o600)
    state.chmod(0o777)
    assert f"{state} is not private (mode 0777, not 0700)" in refused_invoke(state, capsys)
    state.chmod(0o700)
    # A link to a stack.json elsewhere is not the stack's own.
    elsewhere = tmp_path / "elsewhere.json"
    (state / STACK_FILE).rename(elsewhere)
    (state / STACK_FILE).symlink_to(elsewhere)
    assert f"{state / STACK_FILE} is a symbolic link" in refused_invoke(state, capsys)
    # The control token never went anywhere.
    assert stub.requests == 0


@pytest.mark.parametrize(
    "control_url",
    [
        "http://files.example.net:8080",
        "http://10.0.0.1:8080",
        "http://127.0.0.1.example.net:8080",
        "https://[::ffff:8.8.8.8]:443",
        "file:///etc/passwd",
        # Read as 127.0.0.1 by urlsplit, contacted at the first host by urllib3.
        "http://127.0.0.2:46211\\@127.0.0.1:9",
        "http://files.example.net\\@127.0.0.1:9/",
        "http://someone@127.0.0.1:9",
        "http://127.0.0.1:9 /",
    ],
)
def test_a_control_url_off_loopback_is_refused_and_never_contacted(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    control_url: str,
) -> None:
    contacted: list[object] = []

    def no_connection(*args: object, **kwargs: object) -> None:
        contacted.append(args)
        raise ConnectionRefusedError("the test contacts loopback only")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    document = {"control_url": control_url, "control_token": "t"}
    running_stack_file(state, document)
    err = refused_invoke(state, capsys)
    assert f"its control_url {control_url!r} is not on a loopback address" in err
    assert contacted == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:4000",
        "http://127.8.9.10:4000",
        "http://[::1]:4000",
        "http://localhost:4000",
    ],
)
def test_loopback_urls_are_the_stack_s_own(tmp_path: Path, url: str) -> None:
    tmp_path.chmod(0o700)
    document = {"control_url": url, "aws_url": url, "sandbox_okta": {"url": url}}
    running_stack_file(tmp_path, document)
    assert read_stack_file(tmp_path) == document


def test_a_stack_json_no_stack_holds_is_not_trusted_whatever_its_pid(tmp_path: Path) -> None:
    """A killed stack's pid may belong to another process since (pid 1 always runs): only the
    state directory's lock says whether a stack is running."""
    tmp_path.chmod(0o700)
    document = {"pid": 1, "control_url": "http://127.0.0.1:1", "control_token": "t"}
    write_private_file(tmp_path / STACK_FILE, json.dumps(document).encode())
    with pytest.raises(StackNotRunning, match="left by a stack that is gone"):
        read_stack_file(tmp_path)
    (tmp_path / LOCK_FILE).write_text("")
    with pytest.raises(StackNotRunning, match="left by a stack that is gone"):
        read_stack_file(tmp_path)
    # Held, as a running stack holds it: trusted.
    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert read_stack_file(tmp_path) == document
    finally:
        os.close(fd)


@pytest.mark.parametrize("field", ["aws_url", "sandbox_okta"])
def test_the_aws_and_sandbox_urls_must_be_on_loopback_too(tmp_path: Path, field: str) -> None:
    tmp_path.chmod(0o700)
    url = "http://files.example.net:8080"
    document = {
        "control_url": "http://127.0.0.1:1",
        field: {"url": url} if field == "sandbox_okta" else url,
    }
    running_stack_file(tmp_path, document)
    with pytest.raises(UnsafeStateDir, match="is not on a loopback address"):
        read_stack_file(tmp_path)
