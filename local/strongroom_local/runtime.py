"""Run each function like a Lambda: its own warm worker processes, environment and modules.

A `FunctionPool` keeps up to `max_workers` worker processes (`_worker.py`) per function, started
on demand and reused between invocations, so two functions that both have an `app.py` never
share a module and concurrent requests to one function run concurrently. An invocation that
outlives the function's Timeout kills its worker, as Lambda does, and fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from strongroom_local.wiring import LocalFunction

log = logging.getLogger("strongroom_local.runtime")

WORKER_SCRIPT = Path(__file__).with_name("_worker.py")
# Lambda's init phase may take up to 10 s before the first invocation's own timeout starts.
INIT_TIMEOUT_SECONDS = 10.0
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def lambda_environment(
    function: LocalFunction,
    template_environment: Mapping[str, str],
    *,
    aws_endpoint_url: str,
    region: str,
    allow_hosts: Sequence[str] = (),
) -> dict[str, str]:
    """What a function's process sees: Lambda's variables, the template's, the emulator's.

    Built from scratch rather than inherited: a developer's real AWS profile, credentials or
    config files must never reach a local function.
    """
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "PYTHONUNBUFFERED": "1",
        "LAMBDA_TASK_ROOT": str(function.code_dir),
        "_HANDLER": function.handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": function.name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(function.timeout_seconds),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function.name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        # No X-Ray daemon runs locally: Powertools' tracer would only warn.
        "POWERTOOLS_TRACE_DISABLED": "1",
        **template_environment,
        **FAKE_CREDENTIALS,
        "AWS_ENDPOINT_URL": aws_endpoint_url,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    if allow_hosts:
        environment["STRONGROOM_DEV_ALLOW_HOSTS"] = ",".join(allow_hosts)
    return environment


@dataclass(frozen=True)
class Invocation:
    """The outcome of one function invocation; `error_type` names what failed, never why."""

    request_id: str
    ok: bool
    result: Any = None
    error_type: str | None = None
    # Whether the handler was called: False when no worker could be had (an init that failed,
    # the stack stopping, a caller that gave up), so nothing of the function ran.
    handler_ran: bool = True


class InvocationCancelled(Exception):
    """The caller gave up while the invocation waited for a worker; it never ran."""


class WorkerFailed(Exception):
    """The worker process died, timed out or broke the protocol; it is discarded."""


class EventNotDelivered(WorkerFailed):
    """The worker was gone before the event reached it: no handler ran."""


class _Worker:
    """One warm worker process of a function."""

    def __init__(self, function: LocalFunction, environment: Mapping[str, str]) -> None:
        self.function = function
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, "-P", "-u", str(WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(environment),
            cwd=function.code_dir,
            # Its own session: a terminal's Ctrl-C reaches the stack, which stops the workers.
            start_new_session=True,
        )
        self._buffer = bytearray()
        self._scanned = 0
        stdin, stdout, stderr = self.process.stdin, self.process.stdout, self.process.stderr
        if stdin is None or stdout is None or stderr is None:
            raise WorkerFailed("Runtime.ExitError")
        self._stdin: IO[bytes] = stdin
        self._stdout_fd = stdout.fileno()
        threading.Thread(
            target=_copy_log,
            args=(stderr, function.logical_id),
            name=f"log-{function.logical_id}-{self.process.pid}",
            daemon=True,
        ).start()
        init = {
            "code_dir": str(function.code_dir),
            "layer_dirs": [str(d) for d in function.layer_dirs],
            "handler": function.handler,
            "runtime": function.runtime,
        }
        self.init_error: str | None = None
        try:
            self._write(init)
            ready = self._read(time.monotonic() + INIT_TIMEOUT_SECONDS)
        except WorkerFailed:
            self.kill()
            raise
        if not ready.get("ready"):
            self.init_error = str(ready.get("errorType", "Runtime.InitError"))

    def _write(self, message: Mapping[str, Any]) -> None:
        try:
            self._stdin.write(json.dumps(message).encode("utf-8") + b"\n")
            self._stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise EventNotDelivered("Runtime.ExitError") from exc

    def _read(self, deadline: float) -> dict[str, Any]:
        while (end := self._buffer.find(b"\n", self._scanned)) < 0:
            self._scanned = len(self._buffer)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailed("Sandbox.Timedout")
            readable, _, _ = select.select([self._stdout_fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(self._stdout_fd, 1 << 16)
            if not chunk:
                raise WorkerFailed("Runtime.ExitError")
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        self._scanned = 0
        try:
            message: dict[str, Any] = json.loads(line)
        except ValueError as exc:
            raise WorkerFailed("Runtime.InvalidResponse") from exc
        return message

    def invoke(self, event: Mapping[str, Any], request_id: str) -> Invocation:
        function = self.function
        now = time.time()
        deadline_ms = int((now + function.timeout_seconds) * 1000)
        context = {
            "aws_request_id": request_id,
            "function_name": function.name,
            "function_version": "$LATEST",
            "invoked_function_arn": function.arn,
            "memory_limit_in_mb": str(function.memory_mb),
            "log_group_name": f"/aws/lambda/{function.name}",
            "log_stream_name": (f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"),
            "deadline_ms": deadline_ms,
        }
        self._write({"event": event, "context": context})
        answer = self._read(time.monotonic() + function.timeout_seconds)
        if answer.get("ok"):
            return Invocation(request_id, True, answer.get("result"))
        return Invocation(request_id, False, error_type=str(answer.get("errorType", "Error")))

    def close(self, timeout: float = 2.0) -> None:
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        # Closed now, so that an event it could not take (still buffered) is not flushed into
        # the dead pipe when the writer is collected (an unraisable BrokenPipeError).
        with contextlib.suppress(OSError):
            self._stdin.close()


def _copy_log(stream: IO[bytes], name: str) -> None:
    """Copy a worker's output into the stack's log (stderr), one prefixed line at a time."""
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sys.stderr.write(f"[{name}] {line}\n")
            sys.stderr.flush()


class FunctionPool:
    """Warm workers of one function; up to `max_workers` invocations run at once."""

    def __init__(
        self, function: LocalFunction, environment: Mapping[str, str], *, max_workers: int = 4
    ) -> None:
        self.function = function
        self._environment = dict(environment)
        self._max_workers = max_workers
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._condition = threading.Condition()
        self._closed = False

    def invoke(
        self,
        event: Mapping[str, Any],
        *,
        request_id: str | None = None,
        cancelled: threading.Event | None = None,
    ) -> Invocation:
        """Run the handler on `event`; a failure of any kind is an unsuccessful Invocation.

        `cancelled`, set while the invocation still waits for a free worker, drops it unrun
        (`Gateway.Cancelled`): API Gateway has answered its caller already.
        """
        request_id = request_id or str(uuid.uuid4())
        try:
            worker = self._acquire(cancelled)
        except InvocationCancelled:
            log.warning("%s: %s dropped before it ran", request_id, self.function.logical_id)
            return Invocation(request_id, False, error_type="Gateway.Cancelled", handler_ran=False)
        except WorkerFailed as exc:
            log.error("%s: %s could not start: %s", request_id, self.function.logical_id, exc)
            return Invocation(request_id, False, error_type=str(exc), handler_ran=False)
        try:
            invocation = worker.invoke(event, request_id)
        except WorkerFailed as exc:
            log.error("%s: %s failed: %s", request_id, self.function.logical_id, exc)
            self._discard(worker)
            ran = not isinstance(exc, EventNotDelivered)
            return Invocation(request_id, False, error_type=str(exc), handler_ran=ran)
        self._release(worker)
        if not invocation.ok:
            log.error(
                "%s: %s raised %s", request_id, self.function.logical_id, invocation.error_type
            )
        return invocation

    def _acquire(self, cancelled: threading.Event | None = None) -> _Worker:
        with self._condition:
            while True:
                if self._closed:
                    raise WorkerFailed("the stack is stopping")
                if cancelled is not None and cancelled.is_set():
                    # A release's notify() may have woken this waiter rather than another: pass
                    # it on, or a waiter without a deadline would sleep beside an idle worker.
                    self._condition.notify()
                    raise InvocationCancelled()
                while self._idle:
                    idle = self._idle.pop()
                    if idle.process.poll() is None:
                        return idle
                    # It died waiting (killed, out of memory): as Lambda, a fresh one instead.
                    self._all.discard(idle)
                    idle.kill()
                if len(self._all) + self._starting < self._max_workers:
                    self._starting += 1
                    break
                # Nothing notifies a cancellation: look again now and then.
                self._condition.wait(None if cancelled is None else 0.05)
        try:
            worker = _Worker(self.function, self._environment)
        except (OSError, WorkerFailed) as exc:
            with self._condition:
                self._starting -= 1
                self._condition.notify()
            raise WorkerFailed(str(exc) if isinstance(exc, WorkerFailed) else "spawn") from exc
        with self._condition:
            self._starting -= 1
            self._all.add(worker)
            closed = self._closed
        if worker.init_error is not None or closed:
            self._discard(worker)
            raise WorkerFailed(worker.init_error or "the stack is stopping")
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._condition:
            if self._closed:
                closed = True
            else:
                closed = False
                self._idle.append(worker)
                self._condition.notify()
        if closed:
            self._discard(worker)

    def _discard(self, worker: _Worker) -> None:
        worker.kill()
        with self._condition:
            self._all.discard(worker)
            self._condition.notify()

    def worker_count(self) -> int:
        with self._condition:
            return len(self._all)

    def close(self) -> None:
        """Stop every worker: idle ones at once, busy ones are killed."""
        with self._condition:
            self._closed = True
            workers = list(self._all)
            self._idle.clear()
            self._condition.notify_all()
        for worker in workers:
            worker.close()
