"""The one hardened HTTP client every request to a provider goes through.

Each hop: parse the URL strictly, look the name up once, check every answer, and connect to the
checked address while TLS (SNI and certificate verification) and the Host header keep the
original name. requests/urllib3 never see a name they could resolve again, never read proxy
settings from the environment, and never follow a redirect themselves: redirects come back
here and go through the same checks. Bodies are read under a cap; failures are retried with
bounded, jittered backoff that honours the server's Retry-After and rate-limit reset headers.
"""

from __future__ import annotations

import json as jsonlib
import random as random_module
import re
import ssl
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool

from strongroom.outbound.addresses import IPAddress, is_forbidden_address
from strongroom.outbound.exceptions import (
    CertificateRejected,
    DeadlineReached,
    MalformedOutboundRequest,
    MalformedResponse,
    OutboundError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
    ResponseTooLarge,
    TooManyRedirects,
)
from strongroom.outbound.guard import (
    AddressCheck,
    Resolver,
    admit,
    normalise_allow_hosts,
    resolve_checked,
    system_resolver,
)
from strongroom.outbound.limited_reads import (
    POOL_CLASSES_BY_SCHEME,
    AttemptLimits,
    reading_under,
)
from strongroom.outbound.response import OutboundResponse, ResponseHeaders
from strongroom.outbound.retry import IDEMPOTENT_METHODS, RetryPolicy
from strongroom.outbound.urls import Target, parse_target, refused

MAX_REDIRECTS = 5
DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Each read costs about the same in Python whatever its size: 16 KiB reads made a 1 MB body
# cost 40% more to read than 64 KiB ones.
_READ_CHUNK_BYTES = 64 * 1024
# The raw bytes an attempt may receive beyond twice the body cap: status line, headers and
# chunk framing. A compressed body is smaller than what it decodes to unless it is built not
# to be (empty deflate blocks decode to nothing, forever).
_RAW_BYTES_ALLOWANCE = 1024 * 1024
# Each address can cost a connect timeout, so an attempt tries only the first few.
_MAX_ADDRESSES_PER_ATTEMPT = 3
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}")
# Printable ASCII, tab and obs-text; never CR, LF or NUL (header injection).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Set by the client from the target and body; a caller's value would contradict the check.
_CLIENT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Dropped when a redirect leaves the origin, with any the caller names as secret.
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# Dropped with the body when a redirect turns the request into a GET (Fetch standard).
_BODY_HEADERS = frozenset(
    {"content-type", "content-encoding", "content-language", "content-location"}
)
_DEFAULT_HEADERS = {"User-Agent": "strongroom-outbound/1", "Accept-Encoding": "gzip, deflate"}


class _PinnedRequest(requests.PreparedRequest):
    """A prepared request that carries the checked address it must be sent to."""

    def __init__(self, address: IPAddress, server_hostname: str, port: int) -> None:
        super().__init__()
        self.address = address
        self.server_hostname = server_hostname
        self.port = port


class _PinnedAdapter(HTTPAdapter):
    """An adapter whose pools are keyed to the checked IP, with TLS bound to the original name.

    urllib3 connects to the pool's host, so with the IP there it never looks a name up; its
    `server_hostname` sets SNI and the name the certificate must match (the ssl module checks
    it, as `assert_hostname` stays unset). Pools are keyed by IP, port and server_hostname, so a
    connection is only reused for the same name on the same checked address.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # Every response of these pools reads under its attempt's limits (limited_reads).
        self.poolmanager.pool_classes_by_scheme = POOL_CLASSES_BY_SCHEME

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: Mapping[str, str] | None = None,
        cert: tuple[str, str] | str | None = None,
    ) -> HTTPConnectionPool:
        # Replaces requests' choice of pool (and of any proxy, which is never used here).
        if not isinstance(request, _PinnedRequest):
            raise refused()  # fail closed: nothing reaches a pool without a checked address
        host_params, tls_params = self.build_connection_pool_key_attributes(
            request, True if verify is None else verify, cert
        )
        pool_kwargs: dict[str, Any] = dict(tls_params)
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = request.server_hostname
        pool: HTTPConnectionPool = self.poolmanager.connection_from_host(
            host=str(request.address),
            port=request.port,
            scheme=host_params["scheme"],
            pool_kwargs=pool_kwargs,
        )
        return pool


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: ResponseHeaders
    body: bytes
    location: str | None


class _AttemptFailed(Exception):
    """One attempt failed in a way a retry may cure (internal: never leaves the client)."""

    def __init__(
        self,
        kind: Literal["timeout", "connection", "status"],
        *,
        nothing_sent: bool,
        status: int | None = None,
        headers: ResponseHeaders | None = None,
    ) -> None:
        super().__init__(kind)
        self.kind = kind
        # True when the provider cannot have acted on the request (no connection, or 429), so
        # a retry is safe even for a non-idempotent method.
        self.nothing_sent = nothing_sent
        self.status = status
        self.headers = headers

    def final_error(self) -> OutboundError:
        if self.kind == "timeout":
            return ProviderTimeout("provider timed out")
        if self.status == 429:
            return ProviderRateLimited("provider rate limit persisted")
        return ProviderUnavailable("provider unavailable")


class _Budget:
    """Attempts one call may make and has used, across all its hops."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts
        self.used = 0


class OutboundClient:
    """The hardened HTTP client for provider requests.

    `allow_hosts` is `Settings.dev_allow_hosts`: loopback `(host, port)` entries the local stack
    and tests may reach (over plain HTTP too); production leaves it empty. `resolver` is called
    once per attempt of each hop. `is_forbidden` is the address rule; only tests widen it.
    Each address's connect (and TLS handshake) waits at most `connect_timeout`; each read at
    most `read_timeout`, and never past the attempt's `total_timeout` from its first connect,
    however slowly the status line, headers or body arrive.
    `sleep`, `clock` (epoch seconds) and `random` (in [0, 1)) are injectable so that backoff
    and rate-limit waits run without real time.
    """

    def __init__(
        self,
        *,
        allow_hosts: Iterable[tuple[str, int]] = frozenset(),
        resolver: Resolver = system_resolver,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        total_timeout: float = 120.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_redirects: int = MAX_REDIRECTS,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = random_module.random,
        is_forbidden: AddressCheck = is_forbidden_address,
        ca_bundle: str | None = None,
    ) -> None:
        if min(connect_timeout, read_timeout, total_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        if max_response_bytes < 0:
            raise ValueError("max_response_bytes must not be negative")
        if not 0 <= max_redirects <= MAX_REDIRECTS:
            raise ValueError(f"max_redirects must be between 0 and {MAX_REDIRECTS}")
        self._allow_hosts = normalise_allow_hosts(allow_hosts)
        self._resolver = resolver
        self._timeout = (connect_timeout, read_timeout)
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_response_bytes = max_response_bytes
        self._max_redirects = max_redirects
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._random = random
        self._is_forbidden = is_forbidden
        # requests reads `verify` as a CA bundle path, or True for its default bundle.
        self._verify: bool | str = ca_bundle or True
        self._adapter = _PinnedAdapter(max_retries=0)

    def close(self) -> None:
        """Close pooled connections."""
        self._adapter.close()

    def __enter__(self) -> OutboundClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def get(self, url: str, **kwargs: Any) -> OutboundResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> OutboundResponse:
        return self.request("POST", url, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        data: bytes | Mapping[str, str] | None = None,
        json: Any = None,
        retryable: bool | None = None,
        secret_headers: Collection[str] = (),
        allow_redirects: bool = True,
        deadline: float | None = None,
        max_attempts: int | None = None,
    ) -> OutboundResponse:
        """Send one request and return the final response, fully read.

        `data` is sent as is (bytes) or form-encoded (mapping); `json` as JSON. Idempotent
        methods are retried; pass `retryable=True` for a request that is safe to repeat (or
        False to never repeat it). `secret_headers` are dropped, like Authorization, when a
        redirect leaves the origin. Any status but 429 and 5xx is returned, 4xx included.
        `deadline` (epoch seconds, on the client's clock) bounds the waits between attempts, not
        an attempt itself: a retry whose wait would end after it is not made. `max_attempts`
        lowers the retry policy's number of attempts for this request (1: never sent twice, not
        even after a 429 or a failed connection, whose request did not arrive).

        Raises DestinationRefused, TooManyRedirects, ResponseTooLarge, ProviderTimeout,
        ProviderUnavailable, ProviderRateLimited, DeadlineReached, CertificateRejected,
        MalformedResponse, MalformedOutboundRequest: all OutboundError.
        """
        if not isinstance(method, str) or method.upper() not in _METHODS:
            raise MalformedOutboundRequest("unsupported method")
        method = method.upper()
        target = parse_target(url)
        admit(target, self._allow_hosts)
        if params:
            target = _with_params(target, params)
        request_headers = _checked_headers(headers or {})
        body = _encode_body(data, json, request_headers)
        secret = {name.lower() for name in secret_headers} | _CREDENTIAL_HEADERS
        if max_attempts is not None and (isinstance(max_attempts, bool) or max_attempts < 1):
            raise MalformedOutboundRequest("max_attempts must be at least 1")
        attempts = self._retry.max_attempts
        budget = _Budget(attempts if max_attempts is None else min(max_attempts, attempts))
        for hop in range(self._max_redirects + 1):
            may_retry = retryable if retryable is not None else method in IDEMPOTENT_METHODS
            reply = self._send_with_retries(
                target,
                method,
                headers=request_headers,
                body=body,
                may_retry=may_retry,
                follow_redirects=allow_redirects,
                budget=budget,
                deadline=deadline,
            )
            if reply.location is None:
                return OutboundResponse(
                    status=reply.status, headers=reply.headers, body=reply.body, url=target.url
                )
            if hop == self._max_redirects:
                raise TooManyRedirects("too many redirects")
            next_target = _redirect_target(target, reply.location)
            admit(next_target, self._allow_hosts)
            if _redirect_drops_body(reply.status, method):
                method, body = "GET", None
                request_headers = {
                    name: value
                    for name, value in request_headers.items()
                    if name.lower() not in _BODY_HEADERS
                }
            if next_target.origin != target.origin:
                # A body may hold credentials (client_secret, a refresh token, an assertion):
                # it is never replayed to another origin, whatever the redirect status says.
                if body is not None:
                    raise refused()
                request_headers = {
                    name: value
                    for name, value in request_headers.items()
                    if name.lower() not in secret
                }
            target = next_target
        raise AssertionError("unreachable")  # pragma: no cover

    def _send_with_retries(
        self,
        target: Target,
        method: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        may_retry: bool,
        follow_redirects: bool,
        budget: _Budget,
        deadline: float | None,
    ) -> _Reply:
        retry_number = 0
        while True:
            budget.used += 1
            try:
                return self._attempt(
                    target, method, headers=headers, body=body, follow_redirects=follow_redirects
                )
            except _AttemptFailed as caught:
                failure = caught
            attempts_left = budget.used < budget.attempts
            if not attempts_left or not (may_retry or failure.nothing_sent):
                raise failure.final_error()  # outside the handler: nothing chained
            now = self._clock()
            wait = self._retry.wait_before_retry(
                retry_number,
                headers=failure.headers,
                rate_limited=failure.status == 429,
                now=now,
                random=self._random,
            )
            if deadline is not None and now + wait > deadline:
                raise DeadlineReached("no time left to retry")
            retry_number += 1
            self._sleep(wait)

    def _attempt(
        self,
        target: Target,
        method: str,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        follow_redirects: bool,
    ) -> _Reply:
        try:
            addresses = resolve_checked(
                target,
                allow_hosts=self._allow_hosts,
                resolver=self._resolver,
                is_forbidden=self._is_forbidden,
            )
        except OSError:
            raise _AttemptFailed("connection", nothing_sent=True) from None
        # From here every read waits at most the attempt's time left, and all of them together
        # receive at most the raw byte limit: headers and body, however they trickle in.
        limits = AttemptLimits(
            deadline=self._clock() + self._total_timeout,
            read_timeout=self._read_timeout,
            max_bytes=2 * self._max_response_bytes + _RAW_BYTES_ALLOWANCE,
            clock=self._clock,
        )
        with reading_under(limits):
            response = self._send_to_any(target, addresses, method, headers, body)
        try:
            status = response.status_code
            reply_headers = ResponseHeaders(response.raw.headers.iteritems())
            if status == 429 or 500 <= status <= 599:
                raise _AttemptFailed(
                    "status", nothing_sent=status == 429, status=status, headers=reply_headers
                )
            if follow_redirects and status in _REDIRECT_STATUSES and "location" in reply_headers:
                locations = reply_headers.get_all("location")
                if len(locations) != 1:
                    raise refused()
                return _Reply(status, reply_headers, b"", locations[0])
            if method == "HEAD" or status in (204, 304) or status < 200:
                return _Reply(status, reply_headers, b"", None)
            return _Reply(status, reply_headers, self._read_body(response), None)
        finally:
            response.close()

    def _send_to_any(
        self,
        target: Target,
        addresses: Sequence[IPAddress],
        method: str,
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> requests.Response:
        """Send to the first checked address that takes the connection.

        The next one is tried only when nothing was sent (a dual-stack `localhost` whose server
        listens on 127.0.0.1 only; a dead host among several A records).
        """
        candidates = addresses[:_MAX_ADDRESSES_PER_ATTEMPT]
        for index, address in enumerate(candidates):
            try:
                return self._send(_prepare(target, address, method, headers, body))
            except _AttemptFailed as failure:
                if not failure.nothing_sent or index + 1 == len(candidates):
                    raise
        raise refused()  # pragma: no cover (resolve_checked never returns no address)

    def _send(self, prepared: _PinnedRequest) -> requests.Response:
        try:
            return self._adapter.send(
                prepared, stream=True, timeout=self._timeout, verify=self._verify, proxies={}
            )
        except requests.exceptions.RequestException as exc:
            error = _send_failure(exc)
        # Raised outside the handler, so the library's error (which quotes the URL and its
        # query) is not even kept as __context__.
        raise error

    def _read_body(self, response: requests.Response) -> bytes:
        declared = response.headers.get("Content-Length", "").strip()
        # Refused before reading any of it. More than 18 digits is too large whatever the cap
        # (and int() refuses over 4,300 digits).
        if (
            declared.isascii()
            and declared.isdigit()
            and (len(declared) > 18 or int(declared) > self._max_response_bytes)
        ):
            raise ResponseTooLarge("response too large")
        chunks: list[bytes] = []
        received = 0
        stream = response.raw.stream(_READ_CHUNK_BYTES, decode_content=True)
        while True:
            try:
                # Decoded bytes are counted, so a small gzip body cannot inflate past the cap.
                chunk = next(stream, None)
            except urllib3.exceptions.ReadTimeoutError:
                error: Exception = _AttemptFailed("timeout", nothing_sent=False)
                break
            except urllib3.exceptions.DecodeError:
                error = MalformedResponse("response body could not be decoded")
                break
            except (urllib3.exceptions.HTTPError, OSError):
                error = _AttemptFailed("connection", nothing_sent=False)
                break
            if chunk is None:
                return b"".join(chunks)
            received += len(chunk)
            if received > self._max_response_bytes:
                raise ResponseTooLarge("response too large")
            chunks.append(chunk)
        raise error  # outside the handler: no library error kept as __context__


def _send_failure(exc: requests.exceptions.RequestException) -> Exception:
    """What a failed send means: retryable (_AttemptFailed) or final (OutboundError)."""
    kind: Literal["timeout", "connection"] = "connection"
    nothing_sent = False
    if isinstance(exc, requests.exceptions.SSLError):
        if _has_cause(exc, ssl.SSLCertVerificationError):
            return CertificateRejected("provider certificate rejected")
        nothing_sent = True  # the handshake failed before the request was written
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        kind, nothing_sent = "timeout", True
    elif isinstance(exc, requests.exceptions.Timeout):
        kind = "timeout"
    elif isinstance(exc, requests.exceptions.InvalidHeader | requests.exceptions.InvalidURL):
        return MalformedOutboundRequest("request could not be sent")
    elif isinstance(exc, requests.exceptions.ConnectionError):
        nothing_sent = _has_cause(exc, urllib3.exceptions.NewConnectionError)
    return _AttemptFailed(kind, nothing_sent=nothing_sent)


def _prepare(
    target: Target,
    address: IPAddress,
    method: str,
    headers: Mapping[str, str],
    body: bytes | None,
) -> _PinnedRequest:
    prepared = _PinnedRequest(address, target.host, target.port)
    try:
        prepared.prepare(
            method=method, url=target.url, headers={**_DEFAULT_HEADERS, **headers}, data=body
        )
    except (requests.exceptions.RequestException, ValueError, UnicodeError):
        raise MalformedOutboundRequest("request could not be prepared") from None
    # requests re-parses the URL; what it will send must still be what was checked.
    if prepared.url is None or parse_target(prepared.url).origin != target.origin:
        raise refused()
    prepared.headers["Host"] = target.authority
    return prepared


def _checked_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise MalformedOutboundRequest("header names and values must be strings")
        if not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise MalformedOutboundRequest("header name or value not allowed")
        if name.lower() in _CLIENT_HEADERS:
            raise MalformedOutboundRequest("header is set by the client")
        checked[name] = value
    return checked


def _encode_body(
    data: bytes | Mapping[str, str] | None, json: Any, headers: dict[str, str]
) -> bytes | None:
    """The body as bytes; sets Content-Type in `headers` unless the caller did."""
    has_type = any(name.lower() == "content-type" for name in headers)
    if data is not None and json is not None:
        raise MalformedOutboundRequest("pass data or json, not both")
    if json is not None:
        try:
            encoded = jsonlib.dumps(json, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError):
            raise MalformedOutboundRequest("body is not serialisable as JSON") from None
        if not has_type:
            headers["Content-Type"] = "application/json"
        return encoded
    if isinstance(data, Mapping):
        if not has_type:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(data).encode("ascii")
    if data is not None and not isinstance(data, bytes):
        raise MalformedOutboundRequest("data must be bytes or a mapping")
    return data


def _with_params(target: Target, params: Mapping[str, str]) -> Target:
    path, question, query = target.path.partition("?")
    extra = urllib.parse.urlencode(params)
    new_query = f"{query}&{extra}" if question and query else extra
    return parse_target(f"{target.scheme}://{target.authority}{path}?{new_query}")


def _redirect_target(current: Target, location: str) -> Target:
    # Refused before joining: urljoin silently strips tabs and newlines, changing the URL.
    if not location or any(char <= " " or char == "\x7f" for char in location):
        raise refused()
    return parse_target(urllib.parse.urljoin(current.url, location))


def _redirect_drops_body(status: int, method: str) -> bool:
    # As browsers do (Fetch standard): 303 turns anything but GET/HEAD into GET, 301/302 turn
    # POST into GET; 307/308 keep the method and body.
    if status == 303:
        return method not in ("GET", "HEAD")
    return status in (301, 302) and method == "POST"


def _has_cause(exc: BaseException, wanted: type[BaseException]) -> bool:
    """True if `wanted` is anywhere in `exc`'s chain (causes, contexts, wrapped reasons)."""
    seen: set[int] = set()
    pending: list[object] = [exc]
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, wanted):
            return True
        pending.extend(current.args)
        pending.extend((current.__cause__, current.__context__, getattr(current, "reason", None)))
    return False
