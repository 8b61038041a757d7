"""The local stack's HTTP listeners, on 127.0.0.1 only: the API and the control endpoint.

The API listener turns each request into an `HttpRequest` for the gateway (bodies above API
Gateway's 10 MB limit are refused with 413 before they are read). The control listener serves
the dev issuer's JWKS and OpenID configuration to anyone on the machine, and fires schedules or
invokes functions only for callers that present the control token kept in the state directory.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
import traceback
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from strongroom_local.http_api import (
    MAX_REQUEST_BODY_BYTES,
    HttpApiGateway,
    HttpRequest,
    HttpResponse,
    gateway_error,
    new_request_id,
)
from strongroom_local.runtime import Invocation

log = logging.getLogger("strongroom_local.server")

LOOPBACK = "127.0.0.1"
# Lambda's limit for a synchronous invocation payload.
MAX_INVOKE_PAYLOAD_BYTES = 6 * 1024 * 1024
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
_NO_CONTENT = frozenset({204, 304})
_DECIMAL = re.compile(r"[0-9]{1,18}")
_HEXADECIMAL = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_LINE_BYTES = 1024
_MAX_TRAILER_LINES = 64
# A client that stops sending mid-request frees its thread after this long.
_SOCKET_TIMEOUT_SECONDS = 300
# While an invocation runs or waits for a worker, the control listener sends an interim
# `100 Continue` this often: a client may then time out on silence (a suspended or hung stack)
# without bounding the invocation, which the function's Timeout and a busy pool's queue bound.
KEEPALIVE_SECONDS = 5.0


class BodyTooLarge(Exception):
    """The request body exceeds the listener's limit."""


class BadRequest(Exception):
    """The request's framing is broken."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "strongroom-local"
    timeout = _SOCKET_TIMEOUT_SECONDS

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged by the gateway, without query strings or headers."""

    def _read_body(self, limit: int) -> bytes:
        """The request's body, framed as RFC 9112 §6 says; anything ambiguous is BadRequest (a
        request smuggled behind a conflicting length must never reach a function)."""
        lengths = self.headers.get_all("Content-Length") or []
        codings = self.headers.get_all("Transfer-Encoding") or []
        if codings:
            if lengths or len(codings) != 1 or codings[0].strip().lower() != "chunked":
                raise BadRequest()
            return self._read_chunked(limit)
        if not lengths:
            return b""
        if len(lengths) != 1 or not _DECIMAL.fullmatch(lengths[0].strip()):
            raise BadRequest()
        length = int(lengths[0])
        if length > limit:
            raise BodyTooLarge()
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest()  # the client stopped mid-body
        return body

    def _read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            if not _HEXADECIMAL.fullmatch(size_text):
                raise BadRequest()
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILER_LINES):
                    if not self._line().strip():
                        return bytes(body)
                raise BadRequest()
            if len(body) + size > limit:
                raise BodyTooLarge()
            chunk = self.rfile.read(size)
            if len(chunk) != size or self._line().strip():
                raise BadRequest()
            body += chunk

    def _line(self) -> bytes:
        line = self.rfile.readline(_MAX_LINE_BYTES)
        if not line.endswith(b"\n"):
            raise BadRequest()  # too long, or the client stopped
        return line

    def _send(self, response: HttpResponse) -> None:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = ""  # the reason phrase is optional (RFC 9112 §4)
        self.send_response(response.status, phrase)
        for name, value in response.headers:
            if name.lower() not in _HOP_BY_HOP:
                # UTF-8 on the wire for whatever is not Latin-1 (send_header would raise).
                self.send_header(name, value.encode().decode("latin-1"))
        # RFC 9110 §15.3.5, §15.4.5: a 204 or 304 has no content, and says no length.
        has_content = response.status not in _NO_CONTENT
        if has_content:
            self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and has_content:
            self.wfile.write(response.body)


class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of clients (a platform retrying webhooks,
    # concurrent API calls) would be reset, which API Gateway never does.
    request_queue_size = 128

    def __init__(self, port: int, gateway: HttpApiGateway | None = None) -> None:
        # Bound before the gateway exists, so that the stack knows its own URL (the OAuth
        # redirect URI) while it provisions; it serves only once the gateway is set.
        self.gateway = gateway
        super().__init__((LOOPBACK, port), _ApiHandler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


class _ApiHandler(_Handler):
    server: ApiServer

    def _serve(self) -> None:
        try:
            body = self._read_body(MAX_REQUEST_BODY_BYTES)
        except BodyTooLarge:
            self.close_connection = True
            self._send(gateway_error(413, "Request Entity Too Large", new_request_id()))
            return
        except BadRequest:
            self.close_connection = True
            self._send(gateway_error(400, "Bad Request", new_request_id()))
            return
        except OSError:  # the client went away or stalled: nobody to answer
            self.close_connection = True
            return
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            server_port=self.server.server_address[1],
            protocol=self.request_version,
        )
        gateway = self.server.gateway
        if gateway is None:
            self._send(gateway_error(503, "Service Unavailable", new_request_id()))
            return
        try:
            response = gateway.handle(request)
        except Exception:  # noqa: BLE001 - a bug in the emulator must still answer the client
            log.error("the gateway failed:\n%s", traceback.format_exc())
            response = gateway_error(500, "Internal Server Error", new_request_id())
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class ControlBackend(Protocol):
    """What the control endpoint needs from the running stack."""

    control_token: str

    def jwks(self) -> dict[str, Any]: ...

    def openid_configuration(self, base_url: str) -> dict[str, Any]: ...

    def fire_schedule(self, function_id: str, event_name: str | None) -> Invocation: ...

    def invoke(self, function_id: str, event: Any) -> Invocation: ...

    def verify_audit(self, org_id: str) -> dict[str, Any]: ...

    def rotate_dek(self, org_id: str) -> dict[str, Any]: ...

    def reseal(self, org_id: str) -> dict[str, Any]: ...


class CommandFailed(Exception):
    """An operator command failed on the stack's side (its message names the error's type)."""


class ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, backend: ControlBackend) -> None:
        self.backend = backend
        super().__init__((LOOPBACK, port), _ControlHandler)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"


def _json(status: int, document: Mapping[str, Any]) -> HttpResponse:
    return HttpResponse(
        status, [("Content-Type", "application/json")], json.dumps(document).encode()
    )


def invocation_document(invocation: Invocation, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {**extra, "requestId": invocation.request_id, "ok": invocation.ok}
    if not invocation.ok:
        document["errorType"] = invocation.error_type
    return document


# The control requests that wait for an invocation: (first, last) of their path's segments.
_INVOCATIONS = frozenset({("schedules", "fire"), ("functions", "invoke")})


class _ControlHandler(_Handler):
    server: ControlServer

    def _authorized(self) -> bool:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        expected = self.server.backend.control_token
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), expected.encode()
        )

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        backend = self.server.backend
        if path == "/.well-known/jwks.json":
            self._send(_json(200, backend.jwks()))
        elif path == "/.well-known/openid-configuration":
            self._send(_json(200, backend.openid_configuration(self.server.url)))
        elif path == "/ready":
            self._send(_json(200, {"ready": True}))
        else:
            self._send(_json(404, {"message": "Not Found"}))

    def do_POST(self) -> None:
        try:
            body = self._read_body(MAX_INVOKE_PAYLOAD_BYTES)
        except BodyTooLarge:
            self.close_connection = True
            self._send(_json(413, {"message": "Request Entity Too Large"}))
            return
        except BadRequest:
            self.close_connection = True
            self._send(_json(400, {"message": "Bad Request"}))
            return
        except OSError:
            self.close_connection = True
            return
        if not self._authorized():
            self._send(_json(401, {"message": "Unauthorized"}))
            return
        parts = urlsplit(self.path)
        segments = [unquote(s) for s in parts.path.strip("/").split("/")]
        query = parse_qs(parts.query)
        try:
            if len(segments) == 3 and (segments[0], segments[2]) in _INVOCATIONS:
                answer = self._with_keepalives(lambda: self._dispatch(segments, query, body))
                if answer is None:
                    return  # the client went away: nobody to answer
                response = answer
            else:
                response = self._dispatch(segments, query, body)
        except LookupError as exc:
            response = _json(404, {"message": str(exc)})
        except ValueError as exc:
            response = _json(400, {"message": str(exc)})
        except CommandFailed as exc:
            response = _json(503, {"message": str(exc)})
        self._send(response)

    def _with_keepalives(self, work: Callable[[], HttpResponse]) -> HttpResponse | None:
        """`work()`, run on its own thread while this one sends an interim `100 Continue` every
        KEEPALIVE_SECONDS (to an HTTP/1.1 client: RFC 9110 §15.2 has it skip them); None if the
        client went away meanwhile. What `work` raises is raised here."""
        done = threading.Event()
        outcome: list[HttpResponse] = []
        failure: list[Exception] = []

        def run() -> None:
            try:
                outcome.append(work())
            except Exception as exc:  # noqa: BLE001 - raised again on the handler's thread
                failure.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="control-invocation", daemon=True).start()
        interim = self.request_version >= "HTTP/1.1"  # never to an HTTP/1.0 client
        gone = False
        while not done.wait(KEEPALIVE_SECONDS):
            if interim and not gone:
                try:
                    self.send_response_only(HTTPStatus.CONTINUE)
                    self.end_headers()
                except OSError:
                    gone = True
                    self.close_connection = True
        if failure:
            raise failure[0]
        return None if gone else outcome[0]

    def _dispatch(
        self, segments: list[str], query: Mapping[str, list[str]], body: bytes
    ) -> HttpResponse:
        backend = self.server.backend
        if len(segments) == 3 and segments[0] == "schedules" and segments[2] == "fire":
            event_name = query.get("event", [None])[0]
            invocation = backend.fire_schedule(segments[1], event_name)
            document = invocation_document(invocation, function=segments[1])
            return _json(200 if invocation.ok else 502, document)
        if len(segments) == 3 and segments[0] == "functions" and segments[2] == "invoke":
            event = json.loads(body or b"{}")
            invocation = backend.invoke(segments[1], event)
            document = invocation_document(invocation, function=segments[1])
            if invocation.ok:
                document["result"] = invocation.result
            return _json(200 if invocation.ok else 502, document)
        if len(segments) == 3 and segments[0] == "audit" and segments[2] == "verify":
            return _json(200, backend.verify_audit(segments[1]))
        if len(segments) == 3 and segments[0] == "keys" and segments[2] == "rotate":
            return _json(200, backend.rotate_dek(segments[1]))
        if len(segments) == 3 and segments[0] == "keys" and segments[2] == "reseal":
            return _json(200, backend.reseal(segments[1]))
        return _json(404, {"message": "Not Found"})
