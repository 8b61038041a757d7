"""`SandboxOkta`: the seeded org served over HTTP on 127.0.0.1, with its control surface.

API requests (`/api/v1/...`, GET only: the sandbox is read-only) need `Authorization: SSWS
<api_token>` or `Bearer <api_token>`; anything else is 401 with Okta's error body (E0000011).
Each authenticated request is counted against its rate-limit bucket (429 E0000047 once the
bucket's window is spent), then the fault plan may hang, delay, fail or truncate it, then it is
answered with the rate-limit headers, `Link` headers for lists, and Okta-shaped JSON.

The control surface lives under `/__sandbox/` on the same port and needs `Authorization: Bearer
<control_token>` (a different token). It is neither counted, rate-limited nor faulted:

| request | what |
|---|---|
| `GET /__sandbox/info` | seed, sizes, URL, buckets |
| `GET /__sandbox/counters` | `Counters.snapshot()` plus the rate-limit state per bucket |
| `POST /__sandbox/counters/reset` | zero the counters and the per-bucket peaks |
| `GET /__sandbox/faults` | the current plan and what is left of it |
| `PUT /__sandbox/faults` | replace the plan (body: FaultPlan fields; unknown ones are 400) |
| `DELETE /__sandbox/faults` | no faults; hung requests are freed |
| `GET /__sandbox/rate-limits` | limit, window, remaining, reset, peak usage per bucket |
| `PUT /__sandbox/rate-limits` | `{"<bucket>": {"limit": N, "window_seconds": S}, ...}` |
| `POST /__sandbox/rate-limits/reset` | start a fresh window in every bucket |
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from strongroom_local.sandbox_okta.api import respond
from strongroom_local.sandbox_okta.counters import Counters
from strongroom_local.sandbox_okta.exceptions import (
    InvalidParameter,
    InvalidSandboxSetting,
    ResourceNotFound,
)
from strongroom_local.sandbox_okta.faults import FaultDecision, FaultInjector, FaultPlan
from strongroom_local.sandbox_okta.org import OrgSpec, SandboxOrg
from strongroom_local.sandbox_okta.paging import CursorCodec
from strongroom_local.sandbox_okta.ratelimit import (
    BUCKETS,
    Admission,
    RateLimit,
    RateLimiter,
    bucket_for,
)

LOOPBACK = "127.0.0.1"
CONTROL_PREFIX = "/__sandbox/"
_MAX_CONTROL_BODY = 64 * 1024


def _okta_error(code: str, summary: str, causes: list[str] | None = None) -> bytes:
    document = {
        "errorCode": code,
        "errorSummary": summary,
        "errorLink": code,
        "errorId": "oae" + secrets.token_urlsafe(16),
        "errorCauses": [{"errorSummary": cause} for cause in causes or []],
    }
    return json.dumps(document, separators=(",", ":")).encode()


def _okta_error_for(error: Exception) -> tuple[int, bytes]:
    """The one place sandbox errors become Okta's error responses."""
    if isinstance(error, InvalidParameter):
        return 400, _okta_error(
            "E0000001", "Api validation failed: " + str(error), [f"{error}: invalid value"]
        )
    if isinstance(error, ResourceNotFound):
        return 404, _okta_error("E0000007", "Not found: Resource not found: " + str(error))
    raise error


UNAUTHORIZED = "E0000011", "Invalid token provided"
RATE_LIMITED = "E0000047", "API call exceeded rate limit due to too many requests."
INTERNAL_ERROR = "E0000009", "Internal Server Error"
METHOD_NOT_ALLOWED = "E0000022", "The endpoint does not support the provided HTTP method"


class SandboxOkta:
    """A local Okta Management API (read side) for one seeded org.

        with SandboxOkta(OrgSpec(users=1000)) as sandbox:
            requests.get(f"{sandbox.url}/api/v1/users",
                         headers={"Authorization": f"SSWS {sandbox.api_token}"})

    `clock` (epoch seconds) drives the rate-limit windows and their reset headers.
    """

    def __init__(
        self,
        spec: OrgSpec | None = None,
        *,
        api_token: str | None = None,
        control_token: str | None = None,
        port: int = 0,
        rate_limits: Mapping[str, RateLimit] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec or OrgSpec()
        self.api_token = api_token or secrets.token_urlsafe(32)
        self.control_token = control_token or secrets.token_urlsafe(32)
        self.counters = Counters()
        self.faults = FaultInjector()
        self.rate_limits = RateLimiter(rate_limits, clock=clock)
        self.codec = CursorCodec(self.spec.seed)
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._org: SandboxOrg | None = None
        self.stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> SandboxOkta:
        if self._server is not None:
            raise RuntimeError("the sandbox is already started")
        self.stopping.clear()
        server = _Server(self._port, self)
        self._server = server
        self._org = SandboxOrg(self.spec, self.url)
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="sandbox-okta", daemon=True
        )
        self._thread.start()
        # Who is in which group: built now, off the request path, for big orgs' first pages.
        threading.Thread(
            target=self._org.warm_up, name="sandbox-okta-topology", daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening, free hung requests and close open connections; safe to repeat."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        self.faults.release_all()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SandboxOkta:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        return int(self._server.server_address[1])

    @property
    def host_port(self) -> str:
        """`127.0.0.1:PORT`: the STRONGROOM_DEV_ALLOW_HOSTS entry and connection domain."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def org(self) -> SandboxOrg:
        """The served org (its items are what the API returns, links under `url`)."""
        if self._org is None:
            raise RuntimeError("the sandbox is not started")
        return self._org

    # ---- control ---------------------------------------------------------------------------

    def set_faults(self, plan: FaultPlan | None = None, **settings: Any) -> None:
        """Replace the fault plan: a FaultPlan, or its fields as keywords."""
        self.faults.set(plan if plan is not None else FaultPlan.from_mapping(settings))

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_rate_limits(self, limits: Mapping[str, RateLimit]) -> None:
        self.rate_limits.configure(limits)

    def reset_counters(self) -> None:
        self.counters.reset()
        self.rate_limits.reset_peaks()

    def snapshot(self) -> dict[str, Any]:
        """The counters and each bucket's rate-limit state."""
        return {**self.counters.snapshot(), "rate_limits": self.rate_limits.snapshot()}

    def info(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "host_port": self.host_port,
            "seed": self.spec.seed,
            "sizes": self.spec.as_dict(),
            "buckets": list(BUCKETS),
        }

    def authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() in ("ssws", "bearer") and hmac.compare_digest(
            token.strip().encode(), self.api_token.encode()
        )

    def control_authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.control_token.encode()
        )


@dataclass
class _Reply:
    """One API answer: `status` None when nothing is sent (a hung or abandoned request)."""

    status: int | None
    body: bytes
    headers: list[tuple[str, str]]
    bucket: str | None = None
    route: str | None = None
    throttled: bool = False
    fault: str | None = None
    truncate: bool = False
    delayed: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int, sandbox: SandboxOkta) -> None:
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by the peer
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "strongroom-sandbox-okta"
    sys_version = ""
    # Headers and body go out in one write, and without Nagle's delay: small pages behind a
    # delayed ACK would otherwise cost 40 ms each.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines carry cursors and headers carry tokens."""

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Sequence[tuple[str, str]] = (),
        *,
        send_bytes: int | None = None,
    ) -> None:
        """Status line, headers and body in one write (`send_bytes`: cut the body short)."""
        lines = [
            f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json",
            *(f"{name}: {value}" for name, value in headers),
            f"Content-Length: {len(body)}",
        ]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        payload = b"" if self.command == "HEAD" else body[:send_bytes]
        self.wfile.write(head + payload)

    def _dispatch(self) -> None:
        parts = urlsplit(self.path)
        if parts.path.startswith(CONTROL_PREFIX):
            self._control(parts.path[len(CONTROL_PREFIX) :])
            return
        sandbox = self.server.sandbox
        sandbox.counters.started()
        try:
            self._api(sandbox, parts.path, parts.query)
        finally:
            sandbox.counters.finished()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch

    # ---- API -------------------------------------------------------------------------------

    def _api(self, sandbox: SandboxOkta, path: str, query_text: str) -> None:
        reply = self._reply(sandbox, path, query_text)
        # Counted before the response leaves: a client that has read it sees it counted.
        sandbox.counters.record(
            path=path,
            route=reply.route,
            bucket=reply.bucket,
            status=None if reply.truncate else reply.status,
            throttled=reply.throttled,
            fault=reply.fault,
            unauthorized=reply.status == 401,
        )
        if reply.delayed:
            sandbox.counters.record_fault("delay")
        if reply.status is not None:
            if reply.truncate:
                self.close_connection = True
                self._send(reply.status, reply.body, reply.headers, send_bytes=len(reply.body) // 2)
            else:
                self._send(reply.status, reply.body, reply.headers)

    def _reply(self, sandbox: SandboxOkta, path: str, query_text: str) -> _Reply:
        """What to answer: authentication, then the rate limit, then faults, then the API."""
        request_id = [("X-Okta-Request-Id", secrets.token_urlsafe(18))]
        if not sandbox.authorized(self.headers.get("Authorization", "")):
            return _Reply(401, _okta_error(*UNAUTHORIZED), request_id)
        bucket = bucket_for(path)
        admission = sandbox.rate_limits.admit(bucket)
        headers = request_id + admission.headers()
        if not admission.allowed:
            body = _okta_error(*RATE_LIMITED)
            return _Reply(429, body, headers, bucket=bucket, throttled=True)
        if self.command != "GET":
            self.close_connection = True  # a body may follow, unread
            return _Reply(405, _okta_error(*METHOD_NOT_ALLOWED), headers, bucket=bucket)
        decision = sandbox.faults.decide(path)
        faulted = self._faulted(sandbox, decision, admission, request_id, headers)
        if faulted is not None:
            return faulted
        query = parse_qsl(query_text, keep_blank_values=True)
        target = path + (f"?{query_text}" if query_text else "")
        delayed = decision.delay_seconds > 0
        try:
            answer = respond(sandbox.org, sandbox.codec, path, query, target)
        except (InvalidParameter, ResourceNotFound) as error:
            status, body = _okta_error_for(error)
            return _Reply(status, body, headers, bucket=bucket, delayed=delayed)
        headers += [("Link", link) for link in answer.links]
        truncate = decision.action == "truncate"
        return _Reply(
            200,
            answer.body,
            headers,
            bucket=bucket,
            route=answer.template,
            fault="truncate" if truncate else None,
            truncate=truncate,
            delayed=delayed,
        )

    def _faulted(
        self,
        sandbox: SandboxOkta,
        decision: FaultDecision,
        admission: Admission,
        request_id: list[tuple[str, str]],
        headers: list[tuple[str, str]],
    ) -> _Reply | None:
        """The reply a hang, a 429 storm or a 500 gives (after any delay), or None."""
        bucket = admission.bucket
        if decision.action == "hang":
            self._hang(sandbox, decision)
            return _Reply(None, b"", [], bucket=bucket, fault="hang")
        if decision.delay_seconds and sandbox.stopping.wait(decision.delay_seconds):
            self.close_connection = True  # stopping: nobody waits for the answer any more
            return _Reply(None, b"", [], bucket=bucket, delayed=True)
        delayed = decision.delay_seconds > 0
        if decision.action == "storm_429":
            storm = request_id + self._storm_headers(sandbox, admission, decision)
            body = _okta_error(*RATE_LIMITED)
            return _Reply(429, body, storm, bucket=bucket, fault="storm_429", delayed=delayed)
        if decision.action == "error_500":
            body = _okta_error(*INTERNAL_ERROR)
            return _Reply(500, body, headers, bucket=bucket, fault="error_500", delayed=delayed)
        return None

    def _hang(self, sandbox: SandboxOkta, decision: FaultDecision) -> None:
        """Answer nothing until the plan changes, `hang_seconds` pass or the sandbox stops."""
        if decision.release is not None and not sandbox.stopping.is_set():
            decision.release.wait(decision.hang_seconds)
        self.close_connection = True

    @staticmethod
    def _storm_headers(
        sandbox: SandboxOkta, admission: Admission, decision: FaultDecision
    ) -> list[tuple[str, str]]:
        if decision.storm_honest:
            return Admission(False, admission.bucket, admission.limit, 0, admission.reset).headers()
        # Dishonest: budget said to be left, and a reset time that has already passed.
        current = sandbox.rate_limits.peek(admission.bucket)
        past = int(sandbox.rate_limits.now()) - 1
        return Admission(
            False, admission.bucket, current.limit, max(current.remaining, 1), past
        ).headers()

    # ---- control surface -------------------------------------------------------------------

    def _control_json(self, status: int, document: Any) -> None:
        self._send(status, json.dumps(document).encode())

    def _read_json(self) -> Any:
        length_text = self.headers.get("Content-Length", "0")
        if not length_text.isdigit() or int(length_text) > _MAX_CONTROL_BODY:
            raise InvalidSandboxSetting("body: missing length or over 64 KiB")
        raw = self.rfile.read(int(length_text))
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise InvalidSandboxSetting("body: not JSON") from None

    def _control(self, route: str) -> None:
        sandbox = self.server.sandbox
        if not sandbox.control_authorized(self.headers.get("Authorization", "")):
            # The body may be unread: do not reuse the connection.
            self.close_connection = True
            self._control_json(401, {"message": "Unauthorized"})
            return
        try:
            status, document = self._control_action(sandbox, self.command, route.rstrip("/"))
        except InvalidSandboxSetting as error:
            status, document = 400, {"message": str(error)}
        self._control_json(status, document)

    def _control_action(self, sandbox: SandboxOkta, method: str, route: str) -> tuple[int, Any]:
        def put_faults() -> Any:
            body = self._read_json()
            if not isinstance(body, dict):
                raise InvalidSandboxSetting("body: must be a JSON object")
            sandbox.set_faults(FaultPlan.from_mapping(body))
            return sandbox.faults.snapshot()

        def put_rate_limits() -> Any:
            sandbox.set_rate_limits(_rate_limits_from(self._read_json()))
            return sandbox.rate_limits.snapshot()

        def reset_counters() -> Any:
            sandbox.reset_counters()
            return sandbox.snapshot()

        def clear_faults() -> Any:
            sandbox.clear_faults()
            return sandbox.faults.snapshot()

        def reset_rate_limits() -> Any:
            sandbox.rate_limits.reset()
            return sandbox.rate_limits.snapshot()

        actions: dict[tuple[str, str], Callable[[], Any]] = {
            ("GET", "info"): sandbox.info,
            ("GET", "counters"): sandbox.snapshot,
            ("POST", "counters/reset"): reset_counters,
            ("GET", "faults"): sandbox.faults.snapshot,
            ("PUT", "faults"): put_faults,
            ("DELETE", "faults"): clear_faults,
            ("GET", "rate-limits"): sandbox.rate_limits.snapshot,
            ("PUT", "rate-limits"): put_rate_limits,
            ("POST", "rate-limits/reset"): reset_rate_limits,
        }
        action = actions.get((method, route))
        if action is None:
            return 404, {"message": "Not Found"}
        return 200, action()


def _rate_limits_from(body: Any) -> dict[str, RateLimit]:
    if not isinstance(body, dict):
        raise InvalidSandboxSetting("body: must be a JSON object of buckets")
    limits: dict[str, RateLimit] = {}
    for bucket, setting in body.items():
        if not isinstance(setting, dict) or set(setting) - {"limit", "window_seconds"}:
            raise InvalidSandboxSetting(f"{bucket}: expected {{limit, window_seconds}}")
        if "limit" not in setting:
            raise InvalidSandboxSetting(f"{bucket}: limit is required")
        limits[bucket] = RateLimit(setting["limit"], setting.get("window_seconds", 60.0))
    return limits
