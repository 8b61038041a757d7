"""`strongroom local`: the whole template on 127.0.0.1, with no AWS account and no Docker.

Starts moto's server, provisions every resource of the template in it, and wires every function
the template declares: its HttpApi routes behind the emulated HTTP API and JWT authorizer, its
Schedule/ScheduleV2 events on a local timer, its SQS event sources on local pollers. Functions
run in their own warm worker processes with the environment the template gives them.

The state directory keeps what outlives one run (the dev issuer's key and its iss/aud) and, while
the stack runs, `stack.json` (mode 0600): its URLs and the control token other commands use. A
running stack holds `stack.lock` (flock): a second stack on the same directory is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import boto3

from strongroom.plain_urls import is_loopback_http_url
from strongroom_local.async_invoke import LAMBDA_RETRY_DELAYS_SECONDS, AsyncInvoker
from strongroom_local.authorizer import JwtAuthorizer
from strongroom_local.exceptions import (
    StackAlreadyRunning,
    StackNotRunning,
    StartInterrupted,
    UnsafeStateDir,
)
from strongroom_local.http_api import HttpApiGateway
from strongroom_local.issuer import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    DevIssuer,
    IssuerConfig,
    check_private_dir,
    ensure_state_dir,
    read_private_file,
    write_private_file,
)
from strongroom_local.provision import LOCAL_PARAMETERS, Stack, provision
from strongroom_local.runtime import FAKE_CREDENTIALS, FunctionPool, Invocation, lambda_environment
from strongroom_local.sandbox_okta import OrgSpec, SandboxOkta
from strongroom_local.scheduler import Scheduler, scheduled_event
from strongroom_local.servers import LOOPBACK, ApiServer, CommandFailed, ControlServer
from strongroom_local.sqs_source import SqsEventSource, pollers_for
from strongroom_local.template import TEMPLATE_PATH
from strongroom_local.wiring import ScheduleSource, Wiring, read_wiring

log = logging.getLogger("strongroom_local")

if TYPE_CHECKING:
    from strongroom.audit import AuditLog
    from strongroom.crypto import Keyrings
    from strongroom.settings import Settings
    from strongroom.tenancy import TenantTable

STACK_FILE = "stack.json"
LOCK_FILE = "stack.lock"
# The actor of the operator commands' audit events.
OPERATOR = "operator:local"
_T = TypeVar("_T")
# Once the workers are closed an asynchronous invocation ends at once, saying what it dropped;
# one whose worker is still starting ends when the start does. Not waited for beyond this.
ASYNC_STOP_WAIT_SECONDS = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StackOptions:
    template_path: Path = TEMPLATE_PATH
    state_dir: Path = Path(".strongroom")
    api_port: int = 3000
    aws_port: int = 0
    control_port: int = 0
    parameters: Mapping[str, str] = field(default_factory=dict)
    allow_hosts: Sequence[str] = ()
    region: str = "us-east-1"
    stack_name: str = "strongroom-local"
    max_workers: int = 4
    run_schedules: bool = True
    # The sandbox Okta's org (None: no sandbox) and port (0: a free one).
    sandbox_okta: OrgSpec | None = field(default_factory=OrgSpec)
    sandbox_okta_port: int = 0
    # Waits before the retries of a failed scheduled (asynchronous) invocation.
    async_retry_delays: Sequence[float] = LAMBDA_RETRY_DELAYS_SECONDS
    # How long stop() waits for asynchronous invocations under way to end (and say so).
    async_stop_wait_seconds: float = ASYNC_STOP_WAIT_SECONDS
    # The timer's clock: tests move it to a schedule's next firing rather than wait for it.
    clock: Callable[[], datetime] = _utc_now


def oauth_parameters(api_base: str, stage: str) -> dict[str, str]:
    """The OAuth template parameters for a stack served at `api_base`: its own callback route,
    and its health route as the page the browser lands on (the result is in its query)."""
    return {
        "OAuthRedirectUri": f"{api_base}/{stage}/oauth/callback",
        "OAuthReturnUrl": f"{api_base}/{stage}/health",
    }


def read_stack_file(state_dir: Path) -> dict[str, Any]:
    """What the running stack wrote for other commands; StackNotRunning if there is none.

    The commands send the control token and events to its URLs: UnsafeStateDir unless the state
    directory is ours and private, stack.json is a private file of ours (as the key must be), and
    every URL a command contacts is on a loopback address."""
    try:
        (state_dir / STACK_FILE).lstat()  # none: no stack, whatever the directory
        check_private_dir(state_dir)  # before the file is read, not after
        data = read_private_file(state_dir / STACK_FILE)
        document = json.loads(data)
    except (FileNotFoundError, ValueError):
        raise StackNotRunning(f"no running stack found in {state_dir}") from None
    if not isinstance(document, dict):
        raise StackNotRunning(f"no running stack found in {state_dir}")
    if not _lock_is_held(state_dir):
        # Left by a stack that was killed (its lock went with it): its port may be anyone's
        # now. The next stack to start removes the file.
        raise StackNotRunning(
            f"no running stack found in {state_dir} (its stack.json is left by a stack that"
            " is gone)"
        )
    sandbox = document.get("sandbox_okta") or {}
    for name, url in (
        ("control_url", document.get("control_url")),
        ("aws_url", document.get("aws_url")),
        ("sandbox_okta.url", sandbox.get("url") if isinstance(sandbox, dict) else sandbox),
    ):
        # Read alike by every parser (strongroom.plain_urls): the address checked is the one
        # contacted, whatever reads it.
        if url is not None and not is_loopback_http_url(url):
            raise UnsafeStateDir(
                f"{state_dir / STACK_FILE}: its {name} {url!r} is not on a loopback address"
                " (127.0.0.0/8, ::1, localhost); refused"
            )
    return document


def _lock_holder(state_dir: Path) -> str:
    """Who holds the state directory's lock, as far as can be vouched for: the pid in a
    stack.json, which only the holder writes once it is ready (it removes any stale one as it
    takes the lock)."""
    try:
        pid = read_stack_file(state_dir).get("pid")
    except (StackNotRunning, UnsafeStateDir):
        pid = None
    if not isinstance(pid, int):
        return " (its pid is not known yet: it is still starting)"
    return f" (pid {pid})"


def _open_lock_file(state_dir: Path, flags: int) -> int:
    """The state directory's lock file, opened with `flags`; UnsafeStateDir if it is a link."""
    path = state_dir / LOCK_FILE
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeStateDir(f"{path} is a symbolic link") from None
        raise


def _lock_is_held(state_dir: Path) -> bool:
    """Whether a stack holds the state directory's lock (exact, unlike a pid, which the system
    may have given to another process since). A stack holds it exclusively for its life."""
    try:
        fd = _open_lock_file(state_dir, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing it lets go of a shared lock taken just now
    return False


class LocalStack:
    """Everything `strongroom local` runs; `start()` then `stop()`."""

    def __init__(self, options: StackOptions) -> None:
        self.options = options
        self.control_token = secrets.token_urlsafe(32)
        self._lock_fd: int | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pools: dict[str, FunctionPool] = {}
        self._async: dict[str, AsyncInvoker] = {}
        self._moto: Any = None
        self._api: ApiServer | None = None
        self._control: ControlServer | None = None
        self._serving: list[ApiServer | ControlServer] = []
        self._issuer: DevIssuer | None = None
        self._issuer_config = IssuerConfig()
        self._stack: Stack | None = None
        self._wiring: Wiring | None = None
        self.sandbox: SandboxOkta | None = None
        self.ready: dict[str, Any] = {}

    # ---- lifecycle ----------------------------------------------------------------------

    def start(self) -> dict[str, Any]:
        """Start everything; return the ready document. On failure, or StartInterrupted when
        `request_stop()` came first, stop what started."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> dict[str, Any]:
        options = self.options
        state_dir = ensure_state_dir(options.state_dir)
        self._lock_state_dir(state_dir)
        self._issuer = DevIssuer.load_or_create(state_dir)
        self._unless_stop_requested()
        aws_url = self._start_moto()
        self._api = ApiServer(options.api_port)
        self._unless_stop_requested()
        # The stack's own values, for whichever of them the template declares; only what
        # --parameter gives must be declared.
        defaults = dict(LOCAL_PARAMETERS)
        defaults.update(JwtIssuer=DEFAULT_ISSUER, JwtAudience=DEFAULT_AUDIENCE)
        defaults.update(
            oauth_parameters(self._api.url, str(options.parameters.get("Stage", "dev")))
        )
        session = _emulator_session(options.region)
        stack = provision(
            session,
            endpoint_url=aws_url,
            parameters=options.parameters,
            defaults=defaults,
            stack_name=options.stack_name,
            template_path=options.template_path,
        )
        self._stack = stack
        self._unless_stop_requested()
        wiring = read_wiring(stack, options.template_path.parent)
        self._wiring = wiring
        audience = stack.resolver.refs.get("JwtAudience", DEFAULT_AUDIENCE)
        self._issuer_config = IssuerConfig(
            issuer=str(stack.resolver.refs.get("JwtIssuer", DEFAULT_ISSUER)),
            audience=tuple([audience] if isinstance(audience, str) else audience),
        )
        self._issuer_config.save(state_dir)
        allow_hosts = list(options.allow_hosts)
        if options.sandbox_okta is not None:
            self.sandbox = SandboxOkta(options.sandbox_okta, port=options.sandbox_okta_port)
            self.sandbox.start()
            # The functions may reach it over plain HTTP, and it may stand in for an Okta domain.
            allow_hosts.append(self.sandbox.host_port)
            self._unless_stop_requested()
        for function_id, function in wiring.functions.items():
            environment = lambda_environment(
                function,
                stack.function_environment(function_id),
                aws_endpoint_url=aws_url,
                region=options.region,
                allow_hosts=allow_hosts,
            )
            self._pools[function_id] = FunctionPool(
                function, environment, max_workers=options.max_workers
            )
        gateway = HttpApiGateway(
            wiring.apis,
            self._invoke_function,
            authorizers=self._authorizers(wiring),
            account_id=str(stack.resolver.refs["AWS::AccountId"]),
        )
        self._api.gateway = gateway
        self._control = ControlServer(options.control_port, self)
        self._serve(self._api, "api")
        self._serve(self._control, "control")
        self._unless_stop_requested()
        sqs = session.client("sqs", endpoint_url=aws_url, region_name=options.region)
        self._start_pollers(sqs, wiring)
        self._async_invokers(sqs, wiring)
        if options.run_schedules and wiring.schedules:
            scheduler = Scheduler(wiring.schedules, self._fire_async, started_at=options.clock())
            self._thread(scheduler.run, "scheduler", self._stop, options.clock)
        self._unless_stop_requested()
        self.ready = self._ready_document(aws_url)
        private = {**self.ready, "control_token": self.control_token}
        if self.sandbox is not None:
            private["sandbox_okta_control_token"] = self.sandbox.control_token
        write_private_file(state_dir / STACK_FILE, json.dumps(private).encode())
        return self.ready

    def _unless_stop_requested(self) -> None:
        """Between startup's phases: a stop asked for during startup (Ctrl-C, SIGTERM) ends it
        here, rather than once everything is up and announced ready."""
        if self._stop.is_set():
            raise StartInterrupted("stopped before it was ready")

    def _lock_state_dir(self, state_dir: Path) -> None:
        """Hold the state directory for the stack's life; StackAlreadyRunning if another stack
        does. A second stack would take over stack.json and dev-issuer.json, and its stop would
        strand the first."""
        # os.open's descriptors are not inherited: a worker cannot keep the lock past the stack.
        fd = _open_lock_file(state_dir, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StackAlreadyRunning(
                f"another strongroom local is running on {state_dir}{_lock_holder(state_dir)};"
                " stop it, or give this one another --state-dir"
            ) from None
        self._lock_fd = fd
        # No other stack can own a stack.json now: one here was left by a stack that died
        # (SIGKILL, a crash), and would send the other commands to its dead URLs.
        (state_dir / STACK_FILE).unlink(missing_ok=True)

    def _start_moto(self) -> str:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._moto = _atomic_moto_server(LOOPBACK, self.options.aws_port)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        return f"http://{host}:{port}"

    def _authorizers(self, wiring: Wiring) -> dict[tuple[str, str], JwtAuthorizer]:
        if self._issuer is None:
            raise RuntimeError("the issuer is not loaded")
        jwks = self._issuer.jwks()
        return {
            (api.logical_id, name): JwtAuthorizer(
                jwks,
                issuer=config.issuer,
                audiences=config.audiences,
                clock=time.time,
                identity_header=config.identity_header,
            )
            for api in wiring.apis
            for name, config in api.authorizers.items()
        }

    def _start_pollers(self, sqs: Any, wiring: Wiring) -> None:
        for source in wiring.queues:
            if not source.enabled:
                continue
            pool = self._pools[source.function_id]
            poller = SqsEventSource(
                source,
                queue_url=_queue_url(sqs, source.queue_arn),
                sqs=sqs,
                invoke=pool.invoke,
                region=self.options.region,
                timeout_seconds=pool.function.timeout_seconds,
            )
            # Lambda runs a mapping's batches side by side, up to its MaximumConcurrency; here
            # at most as many as the function has workers.
            for n in range(pollers_for(source, self.options.max_workers)):
                name = f"sqs-{source.function_id}-{source.event_name}-{n}"
                self._thread(poller.run, name, self._stop)

    def _thread(self, target: Any, name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _serve(self, server: ApiServer | ControlServer, name: str) -> None:
        self._thread(server.serve_forever, name, 0.05)
        self._serving.append(server)

    def _ready_document(self, aws_url: str) -> dict[str, Any]:
        if self._api is None or self._control is None or self._wiring is None:
            raise RuntimeError("the stack is not started")
        apis = self._wiring.apis
        api_base = self._api.url
        # The first API's stage is the base URL people call (`/dev/orgs`).
        stage = apis[0].stage if apis else "$default"
        api_url = api_base if stage == "$default" else f"{api_base}/{stage}"
        return {
            "ready": True,
            "api_url": api_url,
            "aws_url": aws_url,
            "control_url": self._control.url,
            "jwks_url": f"{self._control.url}/.well-known/jwks.json",
            "issuer": self._issuer_config.issuer,
            "audience": list(self._issuer_config.audience),
            "region": self.options.region,
            "state_dir": str(self.options.state_dir.resolve()),
            "pid": os.getpid(),
            "functions": sorted(self._wiring.functions),
            "routes": [
                {
                    "api_url": api_base if api.stage == "$default" else f"{api_base}/{api.stage}",
                    "route": route.route_key,
                    "function": route.function_id,
                    "protected": route.protected,
                }
                for api in apis
                for route in api.routes
            ],
            "schedules": [
                {"function": s.function_id, "event": s.event_name, "expression": s.expression.text}
                for s in self._wiring.schedules
            ],
            "sandbox_okta": self._sandbox_document(),
            "secrets": [
                {"logical_id": logical_id, "name": name}
                for logical_id, name in (self._stack.secret_names if self._stack else {}).items()
            ],
        }

    def _sandbox_document(self) -> dict[str, Any] | None:
        """What a newcomer needs to connect to the sandbox: its URL, domain and API token."""
        if self.sandbox is None:
            return None
        return {
            "url": self.sandbox.url,
            "domain": self.sandbox.host_port,
            "api_token": self.sandbox.api_token,
            "sizes": self.sandbox.spec.as_dict(),
        }

    def wait(self) -> None:
        """Block until `request_stop()` (signal handlers call it)."""
        while not self._stop.wait(0.5):
            pass

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop listeners, timers, pollers, workers and moto, and wait (a bounded time) for the
        asynchronous invocations under way to end; safe to call more than once."""
        self._stop.set()
        self._remove_own_stack_file()
        for serving in self._serving:
            serving.shutdown()
        for server in (self._api, self._control):
            if server is not None:
                server.server_close()
        self._serving.clear()
        self._api = self._control = None
        if self.sandbox is not None:
            # Before the workers: a request hung by a fault must not hold a worker's shutdown.
            self.sandbox.stop()
            self.sandbox = None
        for pool in self._pools.values():
            pool.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        # After the timer (nothing is submitted now) and before moto (a last attempt that
        # failed may still be dead-lettered): their lines would be lost as the process exits.
        self._wait_for_async_invocations()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: everything else has stopped
            self._lock_fd = None

    def _wait_for_async_invocations(self) -> None:
        bound = self.options.async_stop_wait_seconds
        deadline = time.monotonic() + bound
        under_way = sum(invoker.wait(deadline) for invoker in self._async.values())
        if under_way:
            log.warning(
                "%d asynchronous invocation(s) still under way after the stop waited %g s for"
                " them; left running (what becomes of them is not logged)",
                under_way,
                bound,
            )

    def _remove_own_stack_file(self) -> None:
        """Remove stack.json if it holds this stack's control token: if not, it is another
        stack's, which still runs and which the other commands must still find."""
        # Read as it is, not through read_stack_file: whether a stack holds the lock or its
        # URLs are loopback does not matter here, only whose token it holds.
        try:
            document = json.loads(read_private_file(self.options.state_dir / STACK_FILE))
        except (FileNotFoundError, ValueError, UnsafeStateDir):
            return
        if isinstance(document, dict) and document.get("control_token") == self.control_token:
            (self.options.state_dir / STACK_FILE).unlink(missing_ok=True)

    # ---- invocations --------------------------------------------------------------------

    def _invoke_function(
        self, function_id: str, event: dict[str, Any], *, cancelled: threading.Event
    ) -> Invocation:
        return self._pools[function_id].invoke(event, cancelled=cancelled)

    def verify_audit(self, org_id: str) -> dict[str, Any]:
        """The audit verifier's report on one org's chain (`strongroom audit-verify`), read with
        the settings the functions get. ValueError for a malformed org id."""
        tools = self._operator_tools(org_id)
        org_id, audit = tools.org_id, tools.audit()
        report = audit.verify_chain(org_id, now=datetime.now(UTC))
        return {
            "ok": report.ok,
            "org_id": report.org_id,
            "head_seq": report.head_seq,
            "last_seq": report.last_seq,
            "checked": report.checked,
            "unanchored": list(report.unanchored),
            "problems": [
                {"kind": problem.kind.value, "seq": problem.seq, "detail": problem.detail}
                for problem in report.problems
            ],
        }

    def rotate_dek(self, org_id: str) -> dict[str, Any]:
        """`strongroom rotate-dek`: a new current DEK for the org, audited."""
        from strongroom.operator_commands import rotate_dek  # noqa: PLC0415

        org_id, version = self._operator_command(org_id, rotate_dek)
        return {"org_id": org_id, "dek_version": version}

    def reseal(self, org_id: str) -> dict[str, Any]:
        """`strongroom reseal`: the org's connection secrets re-encrypted under its current DEK,
        audited; the run's report."""
        from strongroom.operator_commands import reseal  # noqa: PLC0415

        org_id, report = self._operator_command(org_id, reseal)
        return {"org_id": org_id, **dataclasses.asdict(report)}

    def _operator_command(self, org_id: str, command: Callable[..., _T]) -> tuple[str, _T]:
        """Run one of `strongroom.operator_commands` on the org with the functions' settings:
        (the org id, its result). ValueError for a malformed org id, LookupError if the org has
        no keyring, CommandFailed if AWS or the audit log fails."""
        tools = self._operator_tools(org_id)
        with tools.failures():
            result = command(
                tools.table(),
                tools.keyrings(),
                tools.audit(),
                tools.org_id,
                actor=OPERATOR,
                now=datetime.now(UTC),
                request_id=tools.request_id,
            )
        return tools.org_id, result

    def _operator_tools(self, org_id: str) -> OperatorTools:
        """What an operator command needs: the org id checked, and clients of the emulated AWS
        with the settings the functions get. ValueError for a malformed org id."""
        # Loaded here: only the operator commands need these packages and their dependencies.
        from strongroom.settings import Settings  # noqa: PLC0415
        from strongroom.tenancy import InvalidOrgId, validate_org_id  # noqa: PLC0415

        if self._stack is None or self.ready is None:
            raise RuntimeError("the stack is not started")
        try:
            org_id = validate_org_id(org_id)
        except InvalidOrgId:
            raise ValueError("not an org id") from None
        holder = next(
            (
                function_id
                for function_id in sorted(self._pools)
                if "STRONGROOM_AUDIT_BUCKET" in self._stack.function_environment(function_id)
            ),
            None,
        )
        if holder is None:
            raise LookupError("no function of this stack writes an audit log")
        return OperatorTools(
            org_id=org_id,
            settings=Settings.from_environ(self._stack.function_environment(holder)),
            session=_emulator_session(self.options.region),
            aws_url=self.ready["aws_url"],
        )

    def invoke(self, function_id: str, event: Any) -> Invocation:
        pool = self._pools.get(function_id)
        if pool is None:
            raise LookupError(f"no function {function_id}")
        return pool.invoke(event)

    def _schedule(self, function_id: str, event_name: str | None) -> ScheduleSource:
        if self._wiring is None:
            raise RuntimeError("the stack is not started")
        sources = [s for s in self._wiring.schedules if s.function_id == function_id]
        if event_name is not None and sources:
            names = ", ".join(s.event_name for s in sources)
            sources = [s for s in sources if s.event_name == event_name]
            if not sources:
                raise LookupError(
                    f"{function_id} has no schedule {event_name}; its schedules: {names}"
                )
        if not sources:
            raise LookupError(f"no schedule for {function_id}")
        if len(sources) > 1:
            names = ", ".join(s.event_name for s in sources)
            raise ValueError(f"{function_id} has several schedules; name one of: {names}")
        return sources[0]

    def _schedule_event(self, source: ScheduleSource, scheduled_time: datetime) -> Any:
        if self._stack is None:
            raise RuntimeError("the stack is not started")
        return scheduled_event(
            source,
            scheduled_time=scheduled_time,
            account_id=str(self._stack.resolver.refs["AWS::AccountId"]),
            region=self.options.region,
        )

    def fire_schedule(self, function_id: str, event_name: str | None = None) -> Invocation:
        """Fire one schedule now (enabled or not) and wait for the function."""
        source = self._schedule(function_id, event_name)
        now = datetime.now(UTC).replace(microsecond=0)
        return self._pools[function_id].invoke(self._schedule_event(source, now))

    def _fire_async(self, source: ScheduleSource, scheduled_time: datetime) -> None:
        """EventBridge invokes asynchronously: Lambda's retries, then the dead-letter queue."""
        self._async[source.function_id].submit(self._schedule_event(source, scheduled_time))

    def _async_invokers(self, sqs: Any, wiring: Wiring) -> None:
        for function_id in {source.function_id for source in wiring.schedules}:
            function = wiring.functions[function_id]
            dead_letters = function.dead_letter_queue_arn
            self._async[function_id] = AsyncInvoker(
                function_id,
                self._pools[function_id].invoke,
                retries=function.async_retries,
                dead_letter_queue_url=_queue_url(sqs, dead_letters) if dead_letters else None,
                sqs=sqs,
                stop=self._stop,
                retry_delays=self.options.async_retry_delays,
            )

    # ---- issuer -------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        if self._issuer is None:
            raise RuntimeError("the issuer is not loaded")
        return self._issuer.jwks()

    def openid_configuration(self, base_url: str) -> dict[str, Any]:
        return {
            "issuer": self._issuer_config.issuer,
            "jwks_uri": f"{base_url}/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [],
            "response_types_supported": [],
            "subject_types_supported": ["public"],
        }


def _queue_url(sqs: Any, queue_arn: str) -> str:
    url: str = sqs.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
    return url


@dataclass(frozen=True)
class OperatorTools:
    """An operator command's org, settings and clients of the emulated AWS (made when asked)."""

    org_id: str
    settings: Settings
    session: boto3.Session
    aws_url: str
    request_id: str = field(default_factory=lambda: "operator-" + secrets.token_hex(8))

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.aws_url)  # type: ignore[call-overload]

    def audit(self) -> AuditLog:
        from strongroom.audit import AuditLog  # noqa: PLC0415

        return AuditLog(
            s3=self.client("s3"), dynamodb=self.client("dynamodb"), settings=self.settings
        )

    def keyrings(self) -> Keyrings:
        from strongroom.crypto import Keyrings  # noqa: PLC0415

        return Keyrings(
            kms=self.client("kms"), dynamodb=self.client("dynamodb"), settings=self.settings
        )

    def table(self) -> TenantTable:
        from strongroom.tenancy import TenantTable  # noqa: PLC0415

        return TenantTable(dynamodb=self.client("dynamodb"), table_name=self.settings.table_name)

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """Strongroom's errors as the control endpoint answers them: an org without a keyring is
        404, anything else (AWS or the audit log failing) CommandFailed, named by its type."""
        from strongroom.crypto import KeyringNotFound  # noqa: PLC0415
        from strongroom.errors import StrongroomError  # noqa: PLC0415

        try:
            yield
        except KeyringNotFound:
            raise LookupError("the org has no keyring") from None
        except StrongroomError as exc:
            raise CommandFailed(f"the command failed ({type(exc).__name__})") from None


def _emulator_session(region: str) -> boto3.Session:
    """A session with fake credentials for the stack's own clients: it only talks to moto."""
    return boto3.Session(
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        region_name=region,
    )


def _atomic_moto_server(host: str, port: int) -> Any:
    """moto's threaded server, handling one AWS request at a time.

    Each AWS API request is atomic; moto's handlers are not (two threads can both pass one
    conditional write, and a failed TransactWriteItems restores a copy of the whole table over
    other threads' writes). Serialising requests gives the functions AWS's guarantees, so that
    their conditional writes and transactions behave locally as deployed.
    """
    # Imported here: moto's server pulls in every service and is only needed by `local`.
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: PLC0415
    from moto.moto_server.werkzeug_app import (  # noqa: PLC0415
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server  # noqa: PLC0415

    lock = threading.Lock()

    class AtomicMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            dispatcher = DomainDispatcherApplication(create_backend_app)

            def one_at_a_time(environ: Any, start_response: Any) -> list[bytes]:
                with lock:
                    return list(dispatcher(environ, start_response))

            self._server = make_server(
                self._ip_address,
                self._port,
                one_at_a_time,
                True,
                request_handler=MotoRequestHandler,
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return AtomicMotoServer(ip_address=host, port=port, verbose=False)
