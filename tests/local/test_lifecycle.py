"""`strongroom local` as a process: one ready line on stdout, clean stop on SIGTERM or Ctrl-C
(during startup too, with no ready line), one stack per state directory."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from strongroom_local.cli import main
from strongroom_local.exceptions import StackStartFailed, UnsafeStateDir
from strongroom_local.harness import start_stack, strongroom_command
from strongroom_local.issuer import CONFIG_FILE, KEY_FILE, DevIssuer, write_private_file
from strongroom_local.stack import LOCK_FILE, STACK_FILE, LocalStack, StackOptions
from tests.local.conftest import FIXTURE_TEMPLATE, wait_for


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def local_command(state_dir: Path, *arguments: str, template: Path = FIXTURE_TEMPLATE) -> list[str]:
    """`strongroom local` of `template` (the fixture's) on free ports, with `state_dir`."""
    return [
        *strongroom_command(),
        "local",
        "--template",
        str(template),
        "--state-dir",
        str(state_dir),
        "--api-port",
        "0",
        *arguments,
    ]


def refused_local(state_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """`strongroom local` on `state_dir` run to its end (a refusal: it exits at once), exit
    code and output captured."""
    return subprocess.run(  # noqa: S603
        local_command(state_dir, *arguments),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_everything_and_exits_zero(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    state_dir, records = tmp_path / "state", tmp_path / "records"
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603
            local_command(state_dir, "--parameter", f"RecordDir={records}"),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        first_line = wait_for(
            lambda: (
                stdout_path.read_bytes().split(b"\n", 1)[0]
                if b"\n" in stdout_path.read_bytes()
                else None
            )
        )
        assert first_line.startswith(b'{"ready":')
        ready = json.loads(first_line)
        session = requests.Session()
        session.trust_env = False
        answer = session.get(f"{ready['api_url']}/public/hello", timeout=30).json()
        worker = answer["pid"]
        assert alive(worker)
        assert (state_dir / "stack.json").exists()
        process.send_signal(stop_signal)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    wait_for(lambda: not alive(worker))
    assert not (state_dir / "stack.json").exists()
    host, port = ready["api_url"].split("//", 1)[1].split("/", 1)[0].split(":")
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((host, int(port)), timeout=5),
    ):
        pass
    # stdout: the ready line, then the walk-through, and nothing a handler printed.
    stdout_text = stdout_path.read_text()
    assert stdout_text.count('{"ready":') == 1
    assert "dev-token" in stdout_text
    assert "/orgs" in stdout_text
    assert "echo handled a request" not in stdout_text
    assert "echo handled a request" in stderr_path.read_text()
    # The issuer key stays for the next run, and the empty lock; nothing else secret is left.
    assert sorted(p.name for p in state_dir.iterdir()) == [
        "dev-issuer-key.pem",
        "dev-issuer.json",
        LOCK_FILE,
    ]


def write_end(fifo: Path) -> int | None:
    """A (blocking) write end of `fifo` once a reader has it open; None until then."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return None
        raise
    os.set_blocking(fd, True)
    return fd


def fifo_template(tmp_path: Path) -> tuple[Path, str]:
    """A FIFO to give `strongroom local` as its template, and the fixture template's text to
    write into it: the stack waits mid-startup, reading it, until the test writes."""
    template = tmp_path / "template.yaml"
    os.mkfifo(template, 0o600)
    text = re.sub(
        r"(CodeUri|ContentUri): (\S+)",
        lambda m: f"{m[1]}: {(FIXTURE_TEMPLATE.parent / m[2]).resolve()}/",
        FIXTURE_TEMPLATE.read_text(encoding="utf-8"),
    )
    return template, text


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_startup_stops_it_before_ready(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    state_dir, records = tmp_path / "state", tmp_path / "records"
    stdout_path, stderr_path = tmp_path / "stdout", tmp_path / "stderr"
    # The template is a FIFO: provisioning, mid-startup (moto and the API listener are up),
    # waits on it until the test has signalled, so the signal lands before ready however fast
    # the machine is. Given then, the fixture template is whole and valid: nothing but the
    # signal stops the stack.
    template, text = fifo_template(tmp_path)
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603
            local_command(state_dir, "--parameter", f"RecordDir={records}", template=template),
            stdout=stdout,
            stderr=stderr,
        )
    try:
        fd = wait_for(lambda: write_end(template))  # the stack is reading its template
        process.send_signal(stop_signal)
        with os.fdopen(fd, "w", encoding="utf-8") as writer:
            writer.write(text)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert '{"ready":' not in stdout_path.read_text()
    assert "stopped before it was ready" in stderr_path.read_text()
    # It stopped at the end of the phase under way, provisioning: nothing after it started,
    # not even the first step after it, saving the issuer configuration provisioning gives.
    assert sorted(p.name for p in state_dir.iterdir()) == [KEY_FILE, LOCK_FILE]
    # The state dir is free for the next stack.
    with (state_dir / LOCK_FILE).open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


# `strongroom local` with a signal sent to itself just before it isolates itself from real AWS,
# its first step after its arguments are parsed.
SIGNAL_AT_ONCE = """
import os, signal, sys
from strongroom_local import cli
isolate = cli._isolate_from_real_aws
def signalled_first():
    os.kill(os.getpid(), signal.{name})
    isolate()
cli._isolate_from_real_aws = signalled_first
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_as_local_begins_stops_it_with_exit_zero(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    state_dir = tmp_path / "state"
    command = local_command(state_dir)[len(strongroom_command()) :]
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", SIGNAL_AT_ONCE.format(name=stop_signal.name), *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert "stopped before it was ready" in done.stderr
    assert "Traceback" not in done.stderr
    # Nothing had started: not even the state directory was made.
    assert not state_dir.exists()


def test_the_cli_loads_nothing_heavy_before_local_installs_its_signal_handlers() -> None:
    # What `import strongroom_local.cli` loads comes before main() runs: a signal then would
    # kill it with a traceback (Ctrl-C) or exit 143 (SIGTERM). boto3, moto and the functions'
    # layer (but its light errors and schedules) take most of a second to load: they come after
    # the handlers.
    loaded = "set(sys.modules) & {'boto3', 'moto', 'strongroom.api', 'strongroom.audit'}"
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", f"import sys, strongroom_local.cli; print(sorted({loaded}))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "[]\n"


def test_a_stack_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(StackStartFailed) as failed:
        start_stack(tmp_path / "state", template_path=tmp_path / "missing.yaml", timeout=60)
    assert "missing.yaml" in str(failed.value)


def test_a_stack_refuses_a_dev_issuer_key_others_can_read(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    DevIssuer.load_or_create(state_dir)
    (state_dir / KEY_FILE).chmod(0o644)
    done = refused_local(state_dir)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"strongroom local: {state_dir / KEY_FILE} is open to other users" in done.stderr
    assert sorted(p.name for p in state_dir.iterdir()) == [KEY_FILE, LOCK_FILE]


def test_a_second_stack_on_the_same_state_dir_is_refused_and_the_first_runs_on(
    tmp_path: Path,
) -> None:
    state_dir, records = tmp_path / "state", tmp_path / "records"
    parameters = {"RecordDir": str(records)}
    first = start_stack(state_dir, template_path=FIXTURE_TEMPLATE, parameters=parameters)
    try:
        stack_file = (state_dir / STACK_FILE).read_bytes()
        config = (state_dir / CONFIG_FILE).stat()
        second = refused_local(state_dir, "--parameter", f"RecordDir={records}")
        assert second.returncode == 2
        assert second.stdout == ""
        assert f"another strongroom local is running on {state_dir}" in second.stderr
        assert f"(pid {first.process.pid})" in second.stderr
        # Neither what the first wrote nor the issuer's configuration was touched.
        assert (state_dir / STACK_FILE).read_bytes() == stack_file
        rewritten = (state_dir / CONFIG_FILE).stat()
        assert (rewritten.st_ino, rewritten.st_mtime_ns) == (config.st_ino, config.st_mtime_ns)
        session = requests.Session()
        session.trust_env = False
        assert session.get(f"{first.api_url}/public/hello", timeout=30).status_code == 200
    finally:
        assert first.stop() == 0
    assert not (state_dir / STACK_FILE).exists()


def test_a_killed_stack_s_stack_json_is_not_trusted_and_the_next_stack_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir, records = tmp_path / "state", tmp_path / "records"
    killed = start_stack(
        state_dir, template_path=FIXTURE_TEMPLATE, parameters={"RecordDir": str(records)}
    )
    killed.process.kill()  # SIGKILL: no stop, stack.json stays
    killed.process.wait(30)
    dead = killed.process.pid
    assert (state_dir / STACK_FILE).exists()
    # The other commands see no running stack, rather than its dead URLs.
    assert main(["dev-token", "--state-dir", str(state_dir), "--sub", "alice"]) == 0
    assert f"no stack is running on {state_dir}" in capsys.readouterr().err
    assert main(["invoke", "EchoFunction", "--state-dir", str(state_dir)]) == 2
    assert f"no running stack found in {state_dir}" in capsys.readouterr().err
    # The next stack, once it holds the lock, removes it (here mid-startup, reading its
    # template); a third, refused, cannot say who holds the lock yet, and names no dead pid.
    template, text = fifo_template(tmp_path)
    with (tmp_path / "next.stderr").open("wb") as stderr:
        following = subprocess.Popen(  # noqa: S603
            local_command(state_dir, "--parameter", f"RecordDir={records}", template=template),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        fd = wait_for(lambda: write_end(template))
        assert not (state_dir / STACK_FILE).exists()
        third = refused_local(state_dir)
        assert third.returncode == 2
        assert "another strongroom local is running" in third.stderr
        assert "its pid is not known yet: it is still starting" in third.stderr
        assert f"pid {dead}" not in third.stderr
        following.send_signal(signal.SIGTERM)
        with os.fdopen(fd, "w", encoding="utf-8") as writer:
            writer.write(text)
        assert following.wait(timeout=30) == 0
    finally:
        if following.poll() is None:
            following.kill()
            following.wait()


def test_a_lock_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    (state_dir / LOCK_FILE).symlink_to(tmp_path / "elsewhere")
    stack = LocalStack(StackOptions(state_dir=state_dir))
    with pytest.raises(UnsafeStateDir, match=f"{state_dir / LOCK_FILE} is a symbolic link"):
        stack.start()
    assert not (tmp_path / "elsewhere").exists()


def test_stop_removes_stack_json_only_if_it_is_its_own(tmp_path: Path) -> None:
    stack = LocalStack(StackOptions(state_dir=tmp_path))
    stack_file = tmp_path / STACK_FILE
    others = json.dumps({"control_token": "another stack's"})
    write_private_file(stack_file, others.encode())
    stack.stop()
    assert stack_file.read_text() == others
    write_private_file(stack_file, json.dumps({"control_token": stack.control_token}).encode())
    stack.stop()
    assert not stack_file.exists()
