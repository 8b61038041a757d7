"""Response size caps and timeouts, against loopback servers that misbehave on purpose."""

from __future__ import annotations

import contextlib
import gzip
import itertools
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from strongroom.outbound import OutboundClient, RetryPolicy
from strongroom.outbound.exceptions import (
    MalformedResponse,
    ProviderTimeout,
    ResponseTooLarge,
)
from tests.unit.outbound.conftest import FakeClock, Reply, Server, replies

CAP = 64 * 1024
ONCE = RetryPolicy(max_attempts=1)
STREAM_LIMIT = 64 * 1024 * 1024


def test_body_at_the_cap_is_read_whole(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(body=b"a" * CAP)))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    assert client.get(server.url()).body == b"a" * CAP


def test_chunked_body_at_the_cap_is_read_whole(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(chunks=[b"b" * 1024] * 64)))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    assert client.get(server.url()).body == b"b" * CAP


@pytest.mark.parametrize("declared", [str(1 << 30), "9" * 5000], ids=["1GiB", "5000-digits"])
def test_too_large_content_length_is_refused_before_reading(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], declared: str
) -> None:
    # The server announces 1 GiB, sends one byte and holds the connection: a client that tried
    # to read the body would sit in its read timeout instead of refusing at once. A length of
    # 5,000 digits (past what int() reads) is too large too, not a ValueError.
    server = serve(
        replies(Reply(headers=(("Content-Length", declared),), body=b"x", hold_open=True))
    )
    client = make_client(
        allow_hosts={server.allow}, max_response_bytes=CAP, read_timeout=3.0, retry=ONCE
    )
    with pytest.raises(ResponseTooLarge):
        client.get(server.url())


def test_body_one_byte_over_the_cap_is_refused(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(chunks=[b"c" * CAP, b"c"])))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    with pytest.raises(ResponseTooLarge):
        client.get(server.url())


def test_endless_chunked_body_is_cut_off_without_reading_it_all(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    def endless() -> Iterator[bytes]:
        for _ in range(STREAM_LIMIT // (64 * 1024)):
            yield b"d" * (64 * 1024)

    server = serve(replies(Reply(chunks=endless())))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    with pytest.raises(ResponseTooLarge):
        client.get(server.url())
    assert server.handler_done.wait(10)
    # The client hung up long before the server could stream its 64 MiB.
    assert server.bytes_streamed[-1] < STREAM_LIMIT // 2


def test_small_gzip_body_that_inflates_past_the_cap_is_refused(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    bomb = gzip.compress(b"\0" * (20 * CAP))
    assert len(bomb) < CAP
    server = serve(replies(Reply(headers=(("Content-Encoding", "gzip"),), body=bomb)))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    with pytest.raises(ResponseTooLarge):
        client.get(server.url())


def test_gzip_body_is_decoded(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(
        replies(Reply(headers=(("Content-Encoding", "gzip"),), body=gzip.compress(b'{"a": 1}')))
    )
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).json() == {"a": 1}
    assert server.requests[0].headers["accept-encoding"] == "gzip, deflate"


def test_corrupt_gzip_body_is_malformed(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(headers=(("Content-Encoding", "gzip"),), body=b"not gzip")))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(MalformedResponse):
        client.get(server.url())


def test_server_that_never_answers_times_out(
    silent_port: int, make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    client = make_client(
        allow_hosts={("127.0.0.1", silent_port)},
        read_timeout=0.2,
        retry=RetryPolicy(max_attempts=2),
    )
    with pytest.raises(ProviderTimeout):
        client.get(f"http://127.0.0.1:{silent_port}/")
    assert len(clock.sleeps) == 1  # the GET was tried twice


def test_post_that_timed_out_waiting_for_an_answer_is_not_repeated(
    silent_port: int, make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    client = make_client(allow_hosts={("127.0.0.1", silent_port)}, read_timeout=0.2)
    with pytest.raises(ProviderTimeout):
        client.post(f"http://127.0.0.1:{silent_port}/token", data=b"x")
    assert clock.sleeps == []


def test_body_dripping_past_the_total_timeout_times_out(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(chunks=[b"e" * 20_000] * 10)))
    ticking = itertools.count(1_700_000_000.0, 50.0)  # each look at the clock: 50 s later
    client = make_client(
        allow_hosts={server.allow},
        clock=lambda: next(ticking),
        total_timeout=120.0,
        retry=ONCE,
    )
    with pytest.raises(ProviderTimeout):
        client.get(server.url())


# --- a raw server that trickles its answer ---------------------------------------------------


class Trickle:
    """Loopback servers that read one request and answer it by hand, as slowly as they like."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.listeners: list[socket.socket] = []

    def start(self, answer: Callable[[socket.socket], None]) -> int:
        """A port whose server runs `answer` on the connection once the request is read."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.listeners.append(listener)

        def serve() -> None:
            connection, _ = listener.accept()
            with connection, contextlib.suppress(OSError):  # the client gave up: the point
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(4096)
                answer(connection)

        threading.Thread(target=serve, daemon=True).start()
        return int(listener.getsockname()[1])

    def drip(self, connection: socket.socket, data: bytes, every: float) -> None:
        """Send `data` a byte at a time, one every `every` seconds."""
        for byte in data:
            if self.stop.wait(every):
                return
            connection.sendall(bytes([byte]))


@pytest.fixture
def trickle() -> Iterator[Trickle]:
    servers = Trickle()
    yield servers
    servers.stop.set()
    for listener in servers.listeners:
        listener.close()


def timed_get(client: OutboundClient, port: int) -> tuple[type[Exception] | None, float]:
    began = time.monotonic()
    try:
        client.get(f"http://127.0.0.1:{port}/")
    except Exception as exc:  # noqa: BLE001 - the test compares the type
        return type(exc), time.monotonic() - began
    return None, time.monotonic() - began


def test_status_line_and_headers_trickling_in_stop_at_the_total_timeout(
    trickle: Trickle, make_client: Callable[..., OutboundClient]
) -> None:
    # Each byte comes well within the read timeout; only the attempt's deadline stops it.
    head = b"HTTP/1.1 200 OK\r\nX-Padding: " + b"p" * 200 + b"\r\nContent-Length: 0\r\n\r\n"
    port = trickle.start(lambda connection: trickle.drip(connection, head, 0.05))
    client = make_client(
        allow_hosts={("127.0.0.1", port)},
        clock=time.time,
        read_timeout=2.0,
        total_timeout=0.5,
        retry=ONCE,
    )
    failure, took = timed_get(client, port)
    assert failure is ProviderTimeout
    assert took < 2.0  # the headers alone would take 12 s


def test_body_of_declared_length_trickling_in_stops_at_the_total_timeout(
    trickle: Trickle, make_client: Callable[..., OutboundClient]
) -> None:
    # One 64 KiB read of a declared body used to wait for all of it, a byte at a time.
    def answer(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 200\r\n\r\n")
        trickle.drip(connection, b"b" * 200, 0.05)

    port = trickle.start(answer)
    client = make_client(
        allow_hosts={("127.0.0.1", port)},
        clock=time.time,
        read_timeout=2.0,
        total_timeout=0.5,
        retry=ONCE,
    )
    failure, took = timed_get(client, port)
    assert failure is ProviderTimeout
    assert took < 2.0  # the body alone would take 10 s


def test_gzip_stream_that_decodes_to_nothing_is_cut_off_by_its_raw_size(
    trickle: Trickle, make_client: Callable[..., OutboundClient]
) -> None:
    # Empty deflate blocks decode to no bytes at all, so no decoded chunk ever comes back to be
    # counted: the raw bytes are counted instead.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    gzip_header = compressor.compress(b"") + compressor.flush(zlib.Z_SYNC_FLUSH)
    empty_blocks = compressor.flush(zlib.Z_FULL_FLUSH) * 20_000
    sent = [0]

    def answer(connection: socket.socket) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nConnection: close\r\n\r\n" + gzip_header
        )
        while sent[0] < STREAM_LIMIT:
            connection.sendall(empty_blocks)
            sent[0] += len(empty_blocks)

    port = trickle.start(answer)
    client = make_client(
        allow_hosts={("127.0.0.1", port)},
        clock=time.time,
        max_response_bytes=CAP,
        total_timeout=30.0,
        retry=ONCE,
    )
    failure, _ = timed_get(client, port)
    assert failure is ResponseTooLarge
    assert sent[0] < STREAM_LIMIT


def test_head_ignores_content_length(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(headers=(("Content-Length", str(1 << 30)),))))
    client = make_client(allow_hosts={server.allow}, max_response_bytes=CAP)
    response = client.request("HEAD", server.url())
    assert response.status == 200
    assert response.body == b""


@pytest.mark.parametrize(
    "options",
    [
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"total_timeout": 0},
        {"max_response_bytes": -1},
        {"max_redirects": -1},
    ],
)
def test_client_refuses_nonsense_limits(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        OutboundClient(**options)  # type: ignore[arg-type]
