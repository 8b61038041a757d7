"""Start the real `strongroom local` as a subprocess and wait for its ready line.

Used by the test suites (tests/local, tests/e2e) and usable from any script that needs a
running stack: free ports, a private state directory, the stack's stderr kept in a file so a
failure to start can show why.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from strongroom_local.exceptions import StackStartFailed
from strongroom_local.issuer import mint_dev_token
from strongroom_local.sandbox_okta import SandboxControl
from strongroom_local.stack import read_stack_file

READY_PREFIX = b'{"ready":'


def strongroom_command() -> list[str]:
    """The installed console script if present, else the module, with this interpreter."""
    script = Path(sys.executable).with_name("strongroom")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "strongroom_local.cli"]


@dataclass
class RunningStack:
    """A `strongroom local` subprocess that printed its ready line."""

    process: subprocess.Popen[bytes]
    ready: dict[str, Any]
    state_dir: Path
    stderr_path: Path

    @property
    def api_url(self) -> str:
        return str(self.ready["api_url"])

    @property
    def aws_url(self) -> str:
        return str(self.ready["aws_url"])

    @property
    def control_url(self) -> str:
        return str(self.ready["control_url"])

    @property
    def sandbox_okta(self) -> dict[str, Any]:
        """The sandbox Okta's `url`, `domain`, `api_token` and `sizes` (KeyError if disabled)."""
        document = self.ready.get("sandbox_okta")
        if not document:
            raise KeyError("this stack runs no sandbox Okta")
        return dict(document)

    def sandbox_control(self) -> SandboxControl:
        """The sandbox Okta's control surface (counters, faults, rate limits)."""
        private = read_stack_file(self.state_dir)
        return SandboxControl(self.sandbox_okta["url"], private["sandbox_okta_control_token"])

    def token(
        self,
        sub: str,
        *,
        email: str | None = None,
        ttl: int = 3600,
        auth_age: int = 0,
        scopes: Sequence[str] = (),
        now: float | None = None,
        **extra_claims: Any,
    ) -> str:
        """A dev token the stack accepts (same code as `strongroom dev-token`)."""
        return mint_dev_token(
            self.state_dir,
            sub,
            now=time.time() if now is None else now,
            ttl_seconds=ttl,
            auth_age_seconds=auth_age,
            email=email,
            scopes=scopes,
            extra_claims=extra_claims or None,
        )

    def log(self) -> str:
        """What the stack wrote to stderr so far."""
        return self.stderr_path.read_text("utf-8", "replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; kill if it does not stop. The exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


def _read_ready_line(process: subprocess.Popen[bytes], timeout: float) -> bytes | None:
    stdout = process.stdout
    if stdout is None:
        return None
    deadline = time.monotonic() + timeout
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                return None
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                return None
            buffer += chunk
    return buffer.split(b"\n", 1)[0]


def _drain(stream: IO[bytes]) -> None:
    with stream:
        for _ in iter(lambda: stream.read(65536), b""):
            pass


def start_stack(
    state_dir: Path,
    *,
    template_path: Path | None = None,
    parameters: Mapping[str, str] | None = None,
    allow_hosts: Sequence[str] = (),
    extra_args: Sequence[str] = (),
    timeout: float = 60.0,
    env: Mapping[str, str] | None = None,
) -> RunningStack:
    """Start `strongroom local` on free ports; StackStartFailed (with its stderr) if not ready."""
    # Private from the start: the stack refuses to chmod a directory that holds more than its
    # own files.
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stderr_path = state_dir / "stack.stderr.log"
    command = [
        *strongroom_command(),
        "local",
        "--api-port",
        "0",
        "--aws-port",
        "0",
        "--control-port",
        "0",
        "--state-dir",
        str(state_dir),
    ]
    if template_path is not None:
        command += ["--template", str(template_path)]
    for name, value in (parameters or {}).items():
        command += ["--parameter", f"{name}={value}"]
    for host in allow_hosts:
        command += ["--allow-host", host]
    command += list(extra_args)
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=dict(env) if env is not None else None,
        )
    line = _read_ready_line(process, timeout)
    if line is None or not line.startswith(READY_PREFIX):
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(5)
        if process.stdout is not None:
            process.stdout.close()
        log = stderr_path.read_text("utf-8", "replace")
        raise StackStartFailed(f"strongroom local did not become ready; its stderr:\n{log}")
    if process.stdout is not None:
        # Keep reading the walk-through so the stack never blocks on a full pipe.
        threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
    return RunningStack(process, json.loads(line), state_dir, stderr_path)
