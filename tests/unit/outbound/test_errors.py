"""Errors and responses never carry a URL's query or userinfo, a header value or a body."""

from __future__ import annotations

import traceback
from collections.abc import Callable

import pytest

from strongroom.errors import StrongroomError
from strongroom.outbound import OutboundClient, OutboundResponse, ResponseHeaders
from strongroom.outbound import exceptions as outbound_exceptions
from strongroom.outbound.exceptions import (
    DestinationRefused,
    MalformedOutboundRequest,
    MalformedResponse,
    OutboundError,
    ProviderTimeout,
    ProviderUnavailable,
)
from tests.unit.outbound.conftest import NetworkLog, Reply, Server, replies

SECRET = "s3cr3t-Q9vX2"


def _everything_said_about(exc: BaseException) -> str:
    """The text a logger would print for `exc`: message, repr and the whole chained traceback."""
    return f"{exc!s} {exc!r} " + "".join(traceback.format_exception(exc))


def test_every_error_is_an_outbound_error_with_a_docstring() -> None:
    classes = [
        value
        for value in vars(outbound_exceptions).values()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == outbound_exceptions.__name__
    ]
    assert OutboundError in classes
    assert issubclass(OutboundError, StrongroomError)
    for cls in classes:
        assert issubclass(cls, OutboundError)
        assert cls.__doc__
        if cls is not OutboundError:
            assert cls.__bases__ == (OutboundError,)
            assert set(vars(cls)) <= {
                "__module__",
                "__doc__",
                "__qualname__",
                "__firstlineno__",
                "__static_attributes__",
            }


def test_refusal_never_echoes_userinfo_or_query(
    make_client: Callable[..., OutboundClient],
) -> None:
    client = make_client()
    with pytest.raises(DestinationRefused) as caught:
        client.get(f"https://admin:{SECRET}@169.254.169.254/x?token={SECRET}")
    assert SECRET not in _everything_said_about(caught.value)


def test_connection_failure_never_echoes_the_query(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    # requests' own error quotes the URL (query included); it must not be chained.
    network.refuse_all = True
    client = make_client(allow_hosts={("127.0.0.1", 9)})
    with pytest.raises(ProviderUnavailable) as caught:
        client.get(f"http://127.0.0.1:9/callback?code={SECRET}&state={SECRET}")
    text = _everything_said_about(caught.value)
    assert SECRET not in text
    assert "urllib3" not in text  # no chained library error
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_timeout_never_echoes_the_query(
    silent_port: int, make_client: Callable[..., OutboundClient]
) -> None:
    client = make_client(allow_hosts={("127.0.0.1", silent_port)}, read_timeout=0.1)
    with pytest.raises(ProviderTimeout) as caught:
        client.post(f"http://127.0.0.1:{silent_port}/token?client_secret={SECRET}")
    assert SECRET not in _everything_said_about(caught.value)
    assert caught.value.__context__ is None


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}\r\nX-Injected: 1"},
        {"Authorization": f"SSWS {SECRET}\n"},
        {"X-Key": f"{SECRET}\x00"},
        {f"Bad Name {SECRET}": "v"},
        {"Host": "metadata.google.internal"},
        {"Content-Length": "0"},
        {"Transfer-Encoding": "chunked"},
    ],
)
def test_unsendable_header_is_refused_without_echoing_it(
    headers: dict[str, str],
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
) -> None:
    server = serve(replies(Reply()))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(MalformedOutboundRequest) as caught:
        client.get(server.url(), headers=headers)
    assert SECRET not in _everything_said_about(caught.value)
    assert "metadata" not in str(caught.value)
    assert server.requests == []


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("GET\r\n", {}),
        ("G ET", {}),
        ("POST", {"data": b"x", "json": {"a": 1}}),
        ("POST", {"json": {"a": object()}}),
        ("POST", {"json": {"a": float("nan")}}),
        ("POST", {"data": "text, not bytes"}),
    ],
)
def test_malformed_request_is_refused(
    method: str,
    options: dict[str, object],
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
) -> None:
    server = serve(replies(Reply()))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(MalformedOutboundRequest):
        client.request(method, server.url(), **options)  # type: ignore[arg-type]
    assert server.requests == []


def test_request_body_forms_and_params(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply()))
    client = make_client(allow_hosts={server.allow})
    client.post(server.url("/token"), data={"grant_type": "client_credentials", "scope": "a b"})
    client.post(server.url("/json"), json={"k": [1, 2]}, headers={"Content-Type": "application/x"})
    client.get(server.url("/users?limit=2"), params={"after": "00u1&x"})
    form, js, query = server.requests
    assert form.body == b"grant_type=client_credentials&scope=a+b"
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert js.body == b'{"k":[1,2]}'
    assert js.headers["content-type"] == "application/x"
    assert query.path == "/users?limit=2&after=00u1%26x"
    assert form.headers["user-agent"] == "strongroom-outbound/1"


def test_response_is_immutable_and_quiet(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(
        replies(
            Reply(
                headers=(("Set-Cookie", f"sid={SECRET}"), ("Link", "<a>"), ("Link", "<b>")),
                body=f'{{"access_token": "{SECRET}"}}'.encode(),
            )
        )
    )
    client = make_client(allow_hosts={server.allow})
    response = client.get(server.url(f"/cb?code={SECRET}"))
    assert isinstance(response, OutboundResponse)
    assert response.json() == {"access_token": SECRET}
    assert response.text == f'{{"access_token": "{SECRET}"}}'
    assert response.headers.get_all("link") == ("<a>", "<b>")
    assert response.headers["LINK"] == "<a>, <b>"
    assert "link" in response.headers
    assert "nope" not in response.headers
    assert response.url == server.url(f"/cb?code={SECRET}")
    assert SECRET not in repr(response)
    assert SECRET not in repr(response.headers)
    with pytest.raises(AttributeError):
        response.status = 500  # type: ignore[misc]


@pytest.mark.parametrize("body", [b"{not json " + SECRET.encode(), b"\xff\xfe", b"[" * 100_000])
def test_json_error_never_echoes_the_body(body: bytes) -> None:
    response = OutboundResponse(status=200, headers=ResponseHeaders(), body=body, url="x")
    with pytest.raises(MalformedResponse) as caught:
        response.json()
    assert SECRET not in _everything_said_about(caught.value)
