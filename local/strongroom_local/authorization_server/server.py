"""The local authorization server: an HTTP listener on 127.0.0.1 and its test controls.

Endpoints (plain HTTP on a free loopback port):

| request | what |
|---|---|
| `GET /authorize` | RFC 6749 §4.1 with RFC 7636 S256 PKCE; auto-consent, answers 302 |
| `POST /token` | `authorization_code`, `refresh_token` (rotating), `client_credentials` |
| `POST /revoke` | RFC 7009 |
| `GET /.well-known/oauth-authorization-server` | RFC 8414 metadata |

Every authorization response (code or error) carries `iss`, the server's URL (RFC 9207). The
same endpoints answer under Okta's org authorization server paths too (`/oauth2/v1/authorize`,
`/oauth2/v1/token`, `/oauth2/v1/revoke`), so an `okta` connection whose domain is the server's
`host:port` (a dev allow-list entry) uses it, with the issuer Okta's would have: the server's URL.

Requests are never logged: their query strings carry codes and state.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, get_args

from strongroom_local.authorization_server.client_auth import (
    ASSERTION_ALGORITHMS,
    ClientAuthenticator,
    SeenAssertion,
)
from strongroom_local.authorization_server.clients import (
    AUTH_METHODS,
    RegisteredClient,
    load_jwks,
)
from strongroom_local.authorization_server.exceptions import (
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    UntrustedRedirect,
)
from strongroom_local.authorization_server.ledger import Ledger, TokenSet
from strongroom_local.authorization_server.protocol import (
    check_redirect_uri,
    check_scope_tokens,
    format_scope,
    is_error_code,
    is_pkce_value,
    name_for_message,
    parse_parameters,
    parse_scope,
    redirect_with,
    split_parameters,
)

log = logging.getLogger("strongroom_local.authorization_server")

LOOPBACK = "127.0.0.1"
FaultKind = Literal[
    "status_500",
    "status_429",
    "html",
    "hang",
    "oversized",
    "invalid_grant",
    "odd_expires_in",
    "long_expires_in",
    "deep_json",
]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)
MAX_FORM_BYTES = 64 * 1024
# Above the 2 MiB a careful client caps a token response at.
OVERSIZED_BODY_BYTES = 3 * 1024 * 1024
_STREAM_CHUNK = b"A" * (64 * 1024)
_FORM_TYPE = "application/x-www-form-urlencoded"
_GRANT_COUNTERS = {
    "authorization_code": "grant_authorization_code",
    "refresh_token": "grant_refresh_token",
    "client_credentials": "grant_client_credentials",
}
# The one mapping from protocol errors to the wire (RFC 6749 §4.1.2.1 and §5.2).
_ERROR_CODES: dict[type[OAuthError], tuple[str, int]] = {
    InvalidRequest: ("invalid_request", 400),
    InvalidClient: ("invalid_client", 401),
    InvalidGrant: ("invalid_grant", 400),
    UnauthorizedClient: ("unauthorized_client", 400),
    UnsupportedGrantType: ("unsupported_grant_type", 400),
    UnsupportedResponseType: ("unsupported_response_type", 400),
    InvalidScope: ("invalid_scope", 400),
    UntrustedRedirect: ("invalid_request", 400),
}
_NO_STORE = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
# Okta's org authorization server puts its endpoints under this path.
_OKTA_PREFIX = "/oauth2/v1"
_JSON = ("Content-Type", "application/json;charset=UTF-8")


@dataclass(frozen=True)
class Reply:
    """A complete HTTP response."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes = b""


@dataclass(frozen=True)
class _Fault:
    kind: FaultKind
    hang_seconds: float


def _json_reply(status: int, document: Mapping[str, Any], *extra: tuple[str, str]) -> Reply:
    return Reply(status, (_JSON, *_NO_STORE, *extra), json.dumps(document).encode())


def _canned_fault_reply(kind: FaultKind) -> Reply | None:
    """The answer an injected fault gives, or None for one that is not an answer (`hang`,
    `oversized`: the connection handler acts those out)."""
    injected = {"error_description": "injected fault"}
    if kind == "status_500":
        return _json_reply(500, {"error": "server_error", **injected})
    if kind == "status_429":
        return _json_reply(429, {"error": "rate_limited", **injected}, ("Retry-After", "1"))
    if kind == "html":
        page = b"<!doctype html><html><body><h1>Sign in</h1></body></html>"
        return Reply(200, (("Content-Type", "text/html; charset=utf-8"),), page)
    if kind in ("odd_expires_in", "long_expires_in"):
        expires_in = "\u00b2" if kind == "odd_expires_in" else "9" * 5000
        token = {"access_token": "injected", "token_type": "Bearer", "expires_in": expires_in}
        return _json_reply(200, token)
    if kind == "deep_json":
        return Reply(200, (_JSON, *_NO_STORE), b'{"access_token": ' + b"[" * 50_000)
    return None


def _error_code(error: OAuthError) -> tuple[str, int]:
    for cls in type(error).__mro__:
        if cls in _ERROR_CODES:
            return _ERROR_CODES[cls]
    return "server_error", 500


def _required(parameters: Mapping[str, str], *names: str) -> list[str]:
    missing = [name for name in names if name not in parameters]
    if missing:
        raise InvalidRequest(f"missing parameter {missing[0]}")
    return [parameters[name] for name in names]


def _granted_scope(client: RegisteredClient, requested: tuple[str, ...] | None) -> tuple[str, ...]:
    """The requested scope, bounded by the client's registered scopes (all of them if absent)."""
    if requested is None:
        return tuple(sorted(client.scopes)) if client.scopes is not None else ()
    if client.scopes is not None and not set(requested) <= client.scopes:
        raise InvalidScope("scope exceeds the client's registered scopes")
    return requested


class LocalAuthorizationServer:
    """An OAuth 2.0 authorization server for tests that enforces what real servers enforce.

    Use it in a `with` block (or `start()` / `stop()`); register clients, drive it over HTTP,
    and inspect it with `counts()`, `is_active()`, `current_refresh_tokens()` and
    `assertions_seen`. Every expiry is computed from `clock`.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, access_token_ttl: int = 3600
    ) -> None:
        if access_token_ttl <= 0:
            raise ValueError("access_token_ttl must be positive")
        self._clock = clock
        self._ledger = Ledger(access_token_ttl=access_token_ttl)
        # Guards the test controls below; the ledger has its own lock for the OAuth state.
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._denials: deque[str] = deque()
        self._token_delay = 0.0
        self._assertions: list[SeenAssertion] = []
        self._stopping = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def start(self) -> LocalAuthorizationServer:
        if self._httpd is not None:
            raise RuntimeError("the authorization server was already started")
        self._httpd = _HttpServer(self, self._stopping)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},  # how soon stop() is noticed
            name=f"authorization-server-{self.host_port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end every open connection, hanging ones included; idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None or thread is None or self._stopping.is_set():
            return
        self._stopping.set()  # wakes hanging and delayed requests
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        thread.join()

    def __enter__(self) -> LocalAuthorizationServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # Addresses

    @property
    def host_port(self) -> str:
        """`127.0.0.1:PORT`, as `STRONGROOM_DEV_ALLOW_HOSTS` takes it."""
        if self._httpd is None:
            raise RuntimeError("the authorization server is not started")
        return f"{LOOPBACK}:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """The issuer URL, `http://127.0.0.1:PORT`."""
        return f"http://{self.host_port}"

    @property
    def authorization_endpoint(self) -> str:
        return self.url + "/authorize"

    @property
    def token_endpoint(self) -> str:
        return self.url + "/token"

    @property
    def revocation_endpoint(self) -> str:
        return self.url + "/revoke"

    # Set-up

    def register_client(
        self,
        client_id: str,
        *,
        redirect_uris: Sequence[str],
        secret: str | None = None,
        jwks: Mapping[str, Any] | None = None,
        auth_methods: Collection[str] = (
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ),
        scopes: Collection[str] | None = None,
    ) -> None:
        """Register (or replace) a client.

        `auth_methods` may also hold `none` (a public client). A method whose credential was not
        given (no `secret`, no `jwks`) always fails. `scopes=None` allows any scope. Registering
        an id again replaces its registration (new keys, secret, redirect URIs); tokens already
        issued stay as they are.
        """
        if not isinstance(client_id, str) or not client_id:
            raise ValueError("client_id must be a non-empty string")
        if isinstance(redirect_uris, str) or isinstance(auth_methods, str):
            raise ValueError("redirect_uris and auth_methods are collections, not strings")
        for uri in redirect_uris:
            check_redirect_uri(uri)
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ValueError("secret must be a non-empty string")
        methods = frozenset(auth_methods)
        if not methods or not methods <= AUTH_METHODS:
            raise ValueError(f"auth_methods must be a non-empty subset of {sorted(AUTH_METHODS)}")
        if scopes is not None:
            if isinstance(scopes, str):
                raise ValueError("scopes is a collection, not a string")
            check_scope_tokens(scopes)
        self._ledger.register(
            RegisteredClient(
                client_id=client_id,
                redirect_uris=tuple(redirect_uris),
                secret=secret,
                keys=load_jwks(jwks) if jwks is not None else {},
                auth_methods=methods,
                scopes=frozenset(scopes) if scopes is not None else None,
            )
        )

    # Test controls

    def deny_next_authorization(self, error: str = "access_denied") -> None:
        """The next valid authorization request redirects back with `error` (the user refused)."""
        if not is_error_code(error):
            raise ValueError("error must be an RFC 6749 error code")
        with self._lock:
            self._denials.append(error)

    def fail_next_token_requests(
        self, count: int, kind: FaultKind, *, hang_seconds: float = 30.0
    ) -> None:
        """The next `count` requests to /token fail as `kind`, without touching any grant.

        `status_500`: 500 with a JSON body. `status_429`: 429 with `Retry-After: 1` (a rate
        limit: the request did not count). `html`: 200 with an HTML page. `hang`: no answer for
        `hang_seconds` (or until `stop()`), then the connection closes. `oversized`: 200 whose
        chunked JSON body exceeds 2 MiB. `invalid_grant`: 400 `{"error": "invalid_grant"}`.
        `odd_expires_in`, `long_expires_in`: 200 with a token whose `expires_in` is a string of
        a digit `int()` refuses ("²") or of 5,000 digits (past `int()`'s limit).
        `deep_json`: 200 with JSON nested 50,000 deep (past the decoder's recursion bound).
        Calls queue up in order.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}")
        if count < 0 or hang_seconds < 0:
            raise ValueError("count and hang_seconds must not be negative")
        with self._lock:
            self._faults.extend([_Fault(kind, hang_seconds)] * count)

    def set_token_delay(self, seconds: float) -> None:
        """Every /token response waits `seconds` after the request was processed.

        The grant is already spent or rotated while the client still waits, which widens the
        window in which a second caller can act on stale state.
        """
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            self._token_delay = seconds

    def invalidate_grants(self, client_id: str) -> None:
        """Revoke every grant of the client: its refresh tokens (and their access tokens) die."""
        self._ledger.invalidate_grants(client_id)

    # Inspection

    def counts(self) -> dict[str, int]:
        """A snapshot of every counter (see `ledger.COUNTER_NAMES`)."""
        return self._ledger.counts()

    def is_active(self, token: str) -> bool:
        """True for an unexpired, unrevoked access token or a current refresh token."""
        return self._ledger.is_active(token, now=self._clock())

    def current_refresh_tokens(self, client_id: str) -> list[str]:
        """The refresh tokens of the client that a refresh would accept now."""
        return self._ledger.current_refresh_tokens(client_id)

    @property
    def assertions_seen(self) -> list[SeenAssertion]:
        """Every `private_key_jwt` assertion received, in order, accepted or not."""
        with self._lock:
            return list(self._assertions)

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 authorization server metadata."""
        return {
            "issuer": self.url,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "revocation_endpoint": self.revocation_endpoint,
            "response_types_supported": ["code"],
            "grant_types_supported": sorted(_GRANT_COUNTERS),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": sorted(AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": sorted(AUTH_METHODS),
            "authorization_response_iss_parameter_supported": True,
        }

    # Request handling (called on the listener's threads)

    def _record_assertion(self, seen: SeenAssertion) -> None:
        with self._lock:
            self._assertions.append(seen)

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _handle_authorize(self, query: str) -> Reply:
        self._ledger.count("authorize")
        try:
            client, redirect_uri, parameters, repeated = self._trusted_redirect(query)
        except UntrustedRedirect as exc:
            self._ledger.count("authorize_errors")
            return _error_page(exc)
        state = parameters.get("state")
        try:
            challenge, scope = self._check_authorization_request(client, parameters, repeated)
        except OAuthError as exc:
            self._ledger.count("authorize_errors")
            error, _ = _error_code(exc)
            return _redirect(
                redirect_uri, error=error, error_description=str(exc), state=state, iss=self.url
            )
        with self._lock:
            denial = self._denials.popleft() if self._denials else None
        if denial is not None:
            self._ledger.count("authorize_errors")
            return _redirect(redirect_uri, error=denial, state=state, iss=self.url)
        code = self._ledger.issue_code(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            code_challenge=challenge,
            scope=scope,
            now=self._clock(),
        )
        return _redirect(redirect_uri, code=code, state=state, iss=self.url)

    def _trusted_redirect(
        self, query: str
    ) -> tuple[RegisteredClient, str, dict[str, str], set[str]]:
        """RFC 6749 §4.1.2.1: without a known client and exact redirect_uri, never redirect."""
        try:
            parameters, repeated = split_parameters(query)
        except InvalidRequest:
            raise UntrustedRedirect("the request's parameters are not UTF-8") from None
        if {"client_id", "redirect_uri", "state"} & repeated:
            raise UntrustedRedirect("client_id, redirect_uri or state is repeated")
        client_id = parameters.get("client_id")
        client = self._ledger.client(client_id) if client_id else None
        if client is None:
            raise UntrustedRedirect("unknown client_id")
        redirect_uri = parameters.get("redirect_uri")
        # Exact string comparison: no prefix match, no normalisation (RFC 9700 §4.1.3).
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            raise UntrustedRedirect("redirect_uri is not registered for this client")
        return client, redirect_uri, parameters, repeated

    def _check_authorization_request(
        self, client: RegisteredClient, parameters: Mapping[str, str], repeated: set[str]
    ) -> tuple[str, tuple[str, ...]]:
        """The code challenge and granted scope of a valid request, or the error to redirect."""
        if repeated:
            raise InvalidRequest(f"repeated parameter {name_for_message(min(repeated))}")
        response_type = parameters.get("response_type")
        if response_type is None:
            raise InvalidRequest("missing parameter response_type")
        if response_type != "code":
            raise UnsupportedResponseType("only response_type=code is supported")
        challenge = parameters.get("code_challenge")
        if challenge is None:
            raise InvalidRequest("code_challenge is required (PKCE)")
        if parameters.get("code_challenge_method") != "S256":
            raise InvalidRequest("code_challenge_method must be S256")
        if len(challenge) != 43 or not is_pkce_value(challenge):
            raise InvalidRequest("code_challenge must be a base64url SHA-256 digest")
        return challenge, _granted_scope(client, parse_scope(parameters.get("scope")))

    def _handle_token(
        self, headers: Mapping[str, str], body: bytes, query: str, endpoint_url: str | None = None
    ) -> Reply | _Fault:
        self._ledger.count("token_requests")
        self._count_grant_type(body)
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            delay = self._token_delay
        if fault is not None:
            self._ledger.count("faults_injected")
            reply: Reply | _Fault = self._fault_reply(fault)
        else:
            reply = self._token_reply(headers, body, query, endpoint_url or self.token_endpoint)
        self._pause(delay)
        return reply

    def _count_grant_type(self, body: bytes) -> None:
        try:
            parameters, _ = split_parameters(body.decode("utf-8"))
        except (UnicodeDecodeError, InvalidRequest):
            return
        counter = _GRANT_COUNTERS.get(parameters.get("grant_type", ""))
        if counter is not None:
            self._ledger.count(counter)

    def _fault_reply(self, fault: _Fault) -> Reply | _Fault:
        if fault.kind == "invalid_grant":
            return self._error_reply(InvalidGrant("injected fault"), basic_attempted=False)
        reply = _canned_fault_reply(fault.kind)
        return fault if reply is None else reply

    def _token_reply(
        self, headers: Mapping[str, str], body: bytes, query: str, endpoint_url: str
    ) -> Reply:
        basic_attempted = headers.get("authorization") is not None
        try:
            parameters = _form(headers, body, query)
            client, method = self._authenticate(parameters, headers, endpoint_url)
            tokens = self._grant(client, method, parameters)
        except OAuthError as exc:
            return self._error_reply(exc, basic_attempted=basic_attempted)
        document: dict[str, Any] = {
            "access_token": tokens.access_token,
            "token_type": "Bearer",
            "expires_in": tokens.expires_in,
            "scope": format_scope(tokens.scope),
        }
        if tokens.refresh_token is not None:
            document["refresh_token"] = tokens.refresh_token
        return _json_reply(200, document)

    def _authenticate(
        self, parameters: Mapping[str, str], headers: Mapping[str, str], endpoint_url: str
    ) -> tuple[RegisteredClient, str]:
        authenticator = ClientAuthenticator(
            self._ledger, self.token_endpoint, self._record_assertion
        )
        return authenticator.authenticate(
            parameters, headers.get("authorization"), endpoint_url=endpoint_url, now=self._clock()
        )

    def _grant(
        self, client: RegisteredClient, method: str, parameters: Mapping[str, str]
    ) -> TokenSet:
        grant_type = parameters.get("grant_type")
        now = self._clock()
        if grant_type is None:
            raise InvalidRequest("missing parameter grant_type")
        if grant_type == "authorization_code":
            code, redirect_uri, verifier = _required(
                parameters, "code", "redirect_uri", "code_verifier"
            )
            if not is_pkce_value(verifier):
                raise InvalidRequest("code_verifier must be 43 to 128 unreserved characters")
            return self._ledger.redeem_code(
                client_id=client.client_id,
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=verifier,
                now=now,
            )
        if grant_type == "refresh_token":
            (refresh_token,) = _required(parameters, "refresh_token")
            return self._ledger.refresh(
                client_id=client.client_id,
                refresh_token=refresh_token,
                scope=parse_scope(parameters.get("scope")),
                now=now,
            )
        if grant_type == "client_credentials":
            # RFC 6749 §4.4: only a confidential client may use this grant.
            if method == "none":
                raise UnauthorizedClient("a public client cannot use client_credentials")
            scope = _granted_scope(client, parse_scope(parameters.get("scope")))
            return self._ledger.issue_client_credentials(
                client_id=client.client_id, scope=scope, now=now
            )
        raise UnsupportedGrantType("grant_type is not supported")

    def _handle_revoke(
        self, headers: Mapping[str, str], body: bytes, query: str, endpoint_url: str | None = None
    ) -> Reply:
        try:
            parameters = _form(headers, body, query)
            client, _ = self._authenticate(
                parameters, headers, endpoint_url or self.revocation_endpoint
            )
            (token,) = _required(parameters, "token")
        except OAuthError as exc:
            return self._error_reply(exc, basic_attempted=headers.get("authorization") is not None)
        # token_type_hint only speeds up a real server's lookup; both kinds are searched anyway.
        self._ledger.revoke(client_id=client.client_id, token=token)
        self._ledger.count("revocations")
        return Reply(200, _NO_STORE)

    def _error_reply(self, error: OAuthError, *, basic_attempted: bool) -> Reply:
        code, status = _error_code(error)
        extra: tuple[tuple[str, str], ...] = ()
        if isinstance(error, InvalidClient):
            self._ledger.count("client_auth_failures")
            if basic_attempted:
                extra = (("WWW-Authenticate", 'Basic realm="strongroom-local-oauth"'),)
        elif isinstance(error, InvalidGrant):
            self._ledger.count("invalid_grant")
        return _json_reply(status, {"error": code, "error_description": str(error)}, *extra)


def _form(headers: Mapping[str, str], body: bytes, query: str) -> dict[str, str]:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != _FORM_TYPE:
        raise InvalidRequest(f"Content-Type must be {_FORM_TYPE}")
    if query:
        # Credentials and codes do not belong in a URL (RFC 6749 §3.2: POST body).
        raise InvalidRequest("parameters must be sent in the request body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("parameters are not UTF-8") from None
    return parse_parameters(text)


def _redirect(redirect_uri: str, **parameters: str | None) -> Reply:
    present = {name: value for name, value in parameters.items() if value is not None}
    location = redirect_with(redirect_uri, present)
    return Reply(302, (("Location", location), *_NO_STORE))


def _error_page(error: OAuthError) -> Reply:
    page = (
        "<!doctype html><html><head><title>Authorization error</title></head><body>"
        f"<h1>invalid_request</h1><p>{html.escape(str(error))}</p>"
        "<p>This request cannot be redirected back to the client.</p></body></html>"
    )
    headers = (("Content-Type", "text/html; charset=utf-8"), *_NO_STORE)
    return Reply(400, headers, page.encode())


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    # stop() ends every connection itself; never wait for handler threads here.
    block_on_close = False
    # socketserver's default backlog of 5 resets a burst of concurrent clients.
    request_queue_size = 128

    def __init__(self, app: LocalAuthorizationServer, stopping: threading.Event) -> None:
        self.app = app
        self.stopping = stopping
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOOPBACK, 0), _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def forget(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already closed by its peer
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (as it should on an oversized body) is normal.
        log.debug("a connection to the authorization server ended abruptly", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "strongroom-local-oauth"
    # An idle keep-alive connection ends on its own after this many seconds.
    timeout = 30
    # Headers and body go out in separate writes; with Nagle on, delayed ACKs add 40 ms each.
    disable_nagle_algorithm = True
    server: _HttpServer

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Not logged: request lines carry authorization codes and state."""

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.forget(self.connection)

    def _route(self) -> tuple[str, str, str]:
        """(path, query, the URL asked for): an Okta-shaped path is served as the plain one."""
        asked, _, query = self.path.partition("?")
        path = asked
        if asked.startswith(_OKTA_PREFIX + "/"):
            path = asked.removeprefix(_OKTA_PREFIX)
            if path not in {"/authorize", "/token", "/revoke"}:
                path = asked  # only the endpoints: anything else there is unknown
        return path, query, self.server.app.url + asked

    def do_GET(self) -> None:
        path, query, _ = self._route()
        app = self.server.app
        if path == "/authorize":
            self._send(app._handle_authorize(query))
        elif path == "/.well-known/oauth-authorization-server":
            self._send(_json_reply(200, app.metadata()))
        elif path in {"/token", "/revoke"}:
            self._send(_json_reply(405, {"error": "invalid_request"}, ("Allow", "POST")))
        else:
            self._send(_json_reply(404, {"error": "not_found"}))

    def do_POST(self) -> None:
        path, query, endpoint_url = self._route()
        app = self.server.app
        if path not in {"/token", "/revoke"}:
            self._discard_body()
            status, allow = (405, "GET") if path == "/authorize" else (404, "")
            extra = (("Allow", allow),) if allow else ()
            self._send(_json_reply(status, {"error": "invalid_request"}, *extra))
            return
        body = self._read_body()
        if body is None:
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        if path == "/revoke":
            self._send(app._handle_revoke(headers, body, query, endpoint_url))
            return
        reply = app._handle_token(headers, body, query, endpoint_url)
        if isinstance(reply, Reply):
            self._send(reply)
        elif reply.kind == "hang":
            self.server.stopping.wait(reply.hang_seconds)
            self.close_connection = True  # then hang up without a word
        else:
            self._stream_oversized()

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a request framed in a way we refuse."""
        length_text = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length_text is None:
            self.close_connection = True
            self._send(_json_reply(411, {"error": "invalid_request"}))
            return None
        if not length_text.strip().isdigit() or int(length_text) > MAX_FORM_BYTES:
            self.close_connection = True
            self._send(_json_reply(413, {"error": "invalid_request"}))
            return None
        return self.rfile.read(int(length_text))

    def _discard_body(self) -> None:
        length_text = self.headers.get("Content-Length", "0").strip()
        if length_text.isdigit() and int(length_text) <= MAX_FORM_BYTES:
            self.rfile.read(int(length_text))
        else:
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def _stream_oversized(self) -> None:
        """A 200 JSON body over 2 MiB in chunks, with no Content-Length to warn the client."""
        self.close_connection = True
        self.send_response(200)
        self.send_header(*_JSON)
        self.send_header("Cache-Control", "no-store")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        pieces = [b'{"access_token": "']
        pieces += [_STREAM_CHUNK] * (OVERSIZED_BODY_BYTES // len(_STREAM_CHUNK))
        pieces.append(b'", "token_type": "Bearer", "expires_in": 3600}')
        try:
            for piece in pieces:
                if self.server.stopping.is_set():
                    return
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client stopped reading, as a careful one does
