"""Redirects come back to the client, and every hop is parsed, resolved and checked again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from strongroom.outbound import OutboundClient
from strongroom.outbound.exceptions import DestinationRefused, TooManyRedirects
from tests.unit.outbound.conftest import (
    FakeResolver,
    NetworkLog,
    Received,
    Reply,
    Server,
    replies,
)


def redirect(status: int, location: str) -> Reply:
    return Reply(status=status, headers=(("Location", location),))


def by_path(routes: dict[str, Reply]) -> Callable[[Received], Reply]:
    def script(received: Received) -> Reply:
        return routes.get(received.path.split("?")[0], Reply(status=404))

    return script


def test_relative_same_origin_redirect_keeps_authorization(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(by_path({"/a/b": redirect(302, "../c?page=2"), "/c": Reply(body=b"done")}))
    client = make_client(allow_hosts={server.allow})
    response = client.get(server.url("/a/b"), headers={"Authorization": "SSWS test-token"})
    assert response.body == b"done"
    assert response.url == server.url("/c?page=2")
    assert [r.path for r in server.requests] == ["/a/b", "/c?page=2"]
    assert server.requests[1].headers["authorization"] == "SSWS test-token"


def test_cross_origin_redirect_drops_authorization_and_secret_headers(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    other = serve(by_path({"/landing": redirect(302, "/final"), "/final": Reply(body=b"x")}))
    first = serve(by_path({"/start": redirect(307, other.url("/landing"))}))
    client = make_client(allow_hosts={first.allow, other.allow})
    client.get(
        first.url("/start"),
        headers={
            "Authorization": "Bearer test-access-token",
            "Cookie": "sid=test",
            "X-Api-Key": "test-api-key",
            "X-Request-Id": "req-1",
        },
        secret_headers={"x-api-key"},
    )
    assert first.requests[0].headers["authorization"] == "Bearer test-access-token"
    assert first.requests[0].headers["x-api-key"] == "test-api-key"
    for received in other.requests:
        assert "authorization" not in received.headers
        assert "cookie" not in received.headers
        assert "x-api-key" not in received.headers
        assert received.headers["x-request-id"] == "req-1"
    assert len(other.requests) == 2


def test_port_change_is_a_cross_origin_redirect(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    other = serve(replies(Reply(body=b"x")))
    first = serve(replies(redirect(301, f"//127.0.0.1:{other.port}/next")))
    client = make_client(allow_hosts={first.allow, other.allow})
    client.get(first.url("/"), headers={"Authorization": "Bearer t"})
    assert "authorization" not in other.requests[0].headers


@pytest.mark.parametrize("status", [307, 308])
def test_a_body_is_never_replayed_to_another_origin(
    status: int, serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    other = serve(replies(Reply(body=b"x")))
    first = serve(by_path({"/token": redirect(status, other.url("/steal"))}))
    client = make_client(allow_hosts={first.allow, other.allow})
    with pytest.raises(DestinationRefused):
        client.post(first.url("/token"), data={"client_secret": "test-secret"}, retryable=False)
    assert other.requests == []


@pytest.mark.parametrize(
    ("status", "method", "expected_method", "keeps_body"),
    [
        (307, "POST", "POST", True),
        (308, "POST", "POST", True),
        (308, "PUT", "PUT", True),
        (303, "POST", "GET", False),
        (303, "PUT", "GET", False),
        (301, "POST", "GET", False),
        (302, "POST", "GET", False),
        (302, "PUT", "PUT", True),
    ],
)
def test_redirect_method_and_body(
    *,
    status: int,
    method: str,
    expected_method: str,
    keeps_body: bool,
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
) -> None:
    server = serve(by_path({"/in": redirect(status, "/out"), "/out": Reply(body=b"ok")}))
    client = make_client(allow_hosts={server.allow})
    client.request(method, server.url("/in"), json={"grant_type": "x"}, retryable=False)
    hop = server.requests[1]
    assert hop.method == expected_method
    if keeps_body:
        assert hop.body == b'{"grant_type":"x"}'
        assert hop.headers["content-type"] == "application/json"
    else:
        assert hop.body == b""
        assert "content-type" not in hop.headers
        assert "content-length" not in hop.headers


@pytest.mark.parametrize(
    "location",
    [
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://2130706433/",
        "https://private.example-idp.com/",
        "https://localhost/",
        "http://public.example-idp.com/",  # downgrade to plain HTTP
        "https://user:pw@public.example-idp.com/",
        "https://public.example-idp.com\\@10.0.0.1/",
        "https://public.exa\tmple-idp.com/",
        "file:///etc/passwd",
        "OTHER_PORT",  # the allow-listed host on a port that is not allow-listed
    ],
)
def test_redirect_to_an_internal_destination_is_refused(
    location: str,
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
) -> None:
    locations: list[str] = []
    server = serve(lambda _: redirect(302, locations[0]))
    locations.append(location.replace("OTHER_PORT", f"http://127.0.0.1:{server.port + 1}/"))
    resolver = FakeResolver(
        {"private.example-idp.com": ["10.9.8.7"], "public.example-idp.com": ["93.184.215.14"]}
    )
    client = make_client(allow_hosts={server.allow}, resolver=resolver)
    with pytest.raises(DestinationRefused) as caught:
        client.get(server.url("/start"))
    assert network.connects == [("127.0.0.1", server.port)]
    assert len(server.requests) == 1
    assert "meta-data" not in str(caught.value)


def test_five_redirects_are_followed(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    routes = {f"/r{n}": redirect(302, f"/r{n + 1}") for n in range(5)}
    routes["/r5"] = Reply(body=b"end")
    server = serve(by_path(routes))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url("/r0")).body == b"end"
    assert len(server.requests) == 6


def test_a_sixth_redirect_is_refused(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(by_path({f"/r{n}": redirect(302, f"/r{n + 1}") for n in range(10)}))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(TooManyRedirects):
        client.get(server.url("/r0"))
    assert len(server.requests) == 6  # the original and five redirects; no seventh request


def test_redirect_loop_is_refused(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(redirect(302, "/")))
    client = make_client(allow_hosts={server.allow}, max_redirects=2)
    with pytest.raises(TooManyRedirects):
        client.get(server.url("/"))
    assert len(server.requests) == 3


def test_redirects_may_be_returned_instead_of_followed(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(status=302, headers=(("Location", "/x"),), body=b"moved")))
    client = make_client(allow_hosts={server.allow})
    response = client.get(server.url("/"), allow_redirects=False)
    assert response.status == 302
    assert response.headers["location"] == "/x"
    assert response.body == b"moved"
    assert len(server.requests) == 1


def test_more_than_five_redirects_cannot_be_configured() -> None:
    with pytest.raises(ValueError, match="max_redirects"):
        OutboundClient(max_redirects=6)


def test_a_redirect_with_two_locations_is_refused(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(status=302, headers=(("Location", "/a"), ("Location", "/b")))))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(DestinationRefused):
        client.get(server.url("/"))
