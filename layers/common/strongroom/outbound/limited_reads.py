"""Every byte an attempt reads from a provider, under the attempt's deadline and byte limit.

A socket timeout bounds one read, not a response: a server that sends a byte just before each
read timeout keeps a 64 KiB read (or a status line, or a header) waiting for days, and a gzip
stream of empty blocks never hands a decoded chunk back to be counted. So the connections of the
client's pools read through `LimitedReader`, which before each receive checks the attempt's
deadline (and waits at most the time left), and counts the raw bytes (headers, chunk framing
and compressed body alike) against a limit. The connect and the TLS handshake stay bounded by
the connect timeout (CPython's handshake timeout is a total one since 3.5).
"""

from __future__ import annotations

import contextlib
import contextvars
import http.client
import io
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from strongroom.outbound.exceptions import ResponseTooLarge


@dataclass
class AttemptLimits:
    """One attempt's end (`deadline`, on `clock`), the longest wait for any one read, and how
    many raw bytes it may receive."""

    deadline: float
    read_timeout: float
    max_bytes: int
    clock: Callable[[], float]
    received: int = 0

    def before_read(self, sock: socket.socket) -> None:
        left = self.deadline - self.clock()
        if left <= 0:
            # What a socket raises on its own timeout: urllib3 and requests report it as one.
            raise TimeoutError("the attempt's time is up")
        sock.settimeout(min(self.read_timeout, left))

    def count(self, received: int) -> None:
        self.received += received
        if self.received > self.max_bytes:
            raise ResponseTooLarge("response too large")


_CURRENT: contextvars.ContextVar[AttemptLimits] = contextvars.ContextVar("attempt_limits")


@contextlib.contextmanager
def reading_under(limits: AttemptLimits) -> Iterator[None]:
    """Responses received within the block (on this thread) read under `limits`."""
    token = _CURRENT.set(limits)
    try:
        yield
    finally:
        _CURRENT.reset(token)


class LimitedReader(io.RawIOBase):
    """A socket's incoming bytes, each receive under `limits`. It reads through the socket's
    own raw file, which holds the socket open as http.client expects (a response to
    `Connection: close` is read after its connection has let go of the socket)."""

    def __init__(self, sock: socket.socket, limits: AttemptLimits) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._limits = limits

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._limits.before_read(self._sock)
        received = self._raw.readinto(buffer) or 0
        self._limits.count(received)
        return received

    def close(self) -> None:
        self._raw.close()
        super().close()


class _LimitedSocket:
    """What http.client's response needs of its socket: `makefile`, here through the limits.

    A response made outside `reading_under` raises LookupError: nothing reads unbounded."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._limits = _CURRENT.get()

    def makefile(self, mode: str) -> io.BufferedReader:
        if mode != "rb":
            raise ValueError("a response only reads")
        return io.BufferedReader(LimitedReader(self._sock, self._limits))


class _LimitedResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        super().__init__(_LimitedSocket(sock), *args, **kwargs)  # type: ignore[arg-type]


class _LimitedHTTPConnection(HTTPConnection):
    response_class = _LimitedResponse


class _LimitedHTTPSConnection(HTTPSConnection):
    response_class = _LimitedResponse


class LimitedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _LimitedHTTPConnection


class LimitedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _LimitedHTTPSConnection


POOL_CLASSES_BY_SCHEME = {"http": LimitedHTTPConnectionPool, "https": LimitedHTTPSConnectionPool}
