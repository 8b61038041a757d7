"""The API listener's HTTP framing, on the wire: a body reaches a function only when its length
is unambiguous and complete, and every answer a function gives reaches the client intact."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator

import pytest

from strongroom_local.http_api import HttpRequest, HttpResponse
from strongroom_local.servers import ApiServer


class FakeGateway:
    """Records what reaches it and answers with `response`."""

    def __init__(self) -> None:
        self.requests: list[HttpRequest] = []
        self.response = HttpResponse(200, [("Content-Type", "text/plain")], b"ok")

    def handle(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(request)
        return self.response


@pytest.fixture
def served() -> Iterator[tuple[ApiServer, FakeGateway]]:
    gateway = FakeGateway()
    server = ApiServer(0, gateway)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server, gateway
    server.shutdown()
    server.server_close()


def exchange(server: ApiServer, data: bytes, *, half_close: bool = False) -> bytes:
    """Send `data` raw and read until the server closes (or stops answering)."""
    with socket.create_connection(server.server_address[:2], timeout=10) as conn:
        conn.sendall(data)
        if half_close:
            conn.shutdown(socket.SHUT_WR)
        received = b""
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except TimeoutError:
            pass
        return received


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode("latin-1") + b"\r\n" + body


def statuses(received: bytes) -> list[str]:
    """Every status line's code, wherever it is (a body posing as a response counts too)."""
    return [code.decode() for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", received)]


SMUGGLED = request("GET /smuggled HTTP/1.1\nHost: x\nConnection: close\n")


@pytest.mark.parametrize(
    "head",
    [
        # Two lengths: the second request must not be read out of the first one's body.
        f"POST /x HTTP/1.1\nHost: x\nContent-Length: 0\nContent-Length: {len(SMUGGLED)}\n",
        f"POST /x HTTP/1.1\nHost: x\nContent-Length: {len(SMUGGLED)}\n"
        f"Content-Length: {len(SMUGGLED)}\n",
        # A length and a chunked coding.
        f"POST /x HTTP/1.1\nHost: x\nContent-Length: {len(SMUGGLED)}\nTransfer-Encoding: chunked\n",
        "POST /x HTTP/1.1\nHost: x\nTransfer-Encoding: gzip, chunked\n",
        "POST /x HTTP/1.1\nHost: x\nTransfer-Encoding: chunkedx\n",
        "POST /x HTTP/1.1\nHost: x\nContent-Length: \u00b2\n",
        "POST /x HTTP/1.1\nHost: x\nContent-Length: +5\n",
        "POST /x HTTP/1.1\nHost: x\nContent-Length: -1\n",
    ],
)
def test_ambiguous_framing_is_400_and_reaches_no_function(
    served: tuple[ApiServer, FakeGateway], head: str
) -> None:
    server, gateway = served
    received = exchange(server, request(head, SMUGGLED))
    assert statuses(received) == ["400"]
    assert b"Connection: close" in received
    assert gateway.requests == []


@pytest.mark.parametrize("size", [b"-1", b"0x3", b"1_0", b" ", b"1" * 16])
def test_a_malformed_chunk_size_is_400(served: tuple[ApiServer, FakeGateway], size: bytes) -> None:
    server, gateway = served
    head = request("POST /x HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n")
    received = exchange(server, head + size + b"\r\nabc\r\n0\r\n\r\n")
    assert statuses(received) == ["400"]
    assert gateway.requests == []


def test_a_body_cut_short_is_400_and_never_passed_on(
    served: tuple[ApiServer, FakeGateway],
) -> None:
    server, gateway = served
    head = request("POST /x HTTP/1.1\nHost: x\nContent-Length: 100\n")
    received = exchange(server, head + b'{"amount": 1', half_close=True)
    assert statuses(received) == ["400"]
    chunked = request("POST /x HTTP/1.1\nHost: x\nTransfer-Encoding: chunked\n")
    received = exchange(server, chunked + b"10\r\nshort", half_close=True)
    assert statuses(received) == ["400"]
    assert gateway.requests == []


def test_well_framed_bodies_arrive_whole(served: tuple[ApiServer, FakeGateway]) -> None:
    server, gateway = served
    chunked = request("POST /a HTTP/1.1\nHost: x\nTransfer-Encoding: Chunked\n")
    sized = request("POST /b HTTP/1.1\nHost: x\nContent-Length: 5\nConnection: close\n")
    received = exchange(
        server,
        chunked
        + b"3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n"
        + sized
        + b"hello",
    )
    assert statuses(received) == ["200", "200"]
    assert [(r.target, r.body) for r in gateway.requests] == [
        ("/a", b"abc0123456789"),
        ("/b", b"hello"),
    ]


def test_a_status_without_a_reason_phrase_is_still_answered(
    served: tuple[ApiServer, FakeGateway],
) -> None:
    server, gateway = served
    gateway.response = HttpResponse(299, [], b"body")
    received = exchange(server, request("GET /x HTTP/1.1\nHost: x\nConnection: close\n"))
    assert received.startswith(b"HTTP/1.1 299 \r\n")
    assert received.endswith(b"\r\n\r\nbody")


def test_a_header_value_beyond_latin_1_goes_out_as_utf_8(
    served: tuple[ApiServer, FakeGateway],
) -> None:
    server, gateway = served
    gateway.response = HttpResponse(302, [("Location", "https://example.com/caf\u00e9\u2713")])
    received = exchange(server, request("GET /x HTTP/1.1\nHost: x\nConnection: close\n"))
    assert statuses(received) == ["302"]
    assert "Location: https://example.com/caf\u00e9\u2713\r\n".encode() in received


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_is_sent_where_http_forbids_it(
    served: tuple[ApiServer, FakeGateway], status: int
) -> None:
    server, gateway = served
    forged = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
    gateway.response = HttpResponse(status, [], forged)
    pipelined = request("GET /1 HTTP/1.1\nHost: x\n") + request(
        "GET /2 HTTP/1.1\nHost: x\nConnection: close\n"
    )
    received = exchange(server, pipelined)
    # Two answers, each exactly the function's status: the body did not become a response.
    assert statuses(received) == [str(status), str(status)]
    assert b"forged" not in received
    assert b"Content-Length" not in received
