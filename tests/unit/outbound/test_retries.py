"""Bounded retries with full-jitter backoff, honouring the server's waits, on a fake clock."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable

import pytest

from strongroom.outbound import OutboundClient, RetryPolicy
from strongroom.outbound.exceptions import (
    DeadlineReached,
    MalformedOutboundRequest,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from strongroom.outbound.response import ResponseHeaders
from strongroom.outbound.retry import server_asked_wait
from tests.unit.outbound.conftest import START, FakeClock, NetworkLog, Reply, Server, replies

OK = Reply(body=b'{"ok": true}')


def limited(*headers: tuple[str, str]) -> Reply:
    return Reply(status=429, headers=headers, body=b'{"errorCode": "E0000047"}')


def test_429_with_retry_after_seconds_waits_that_long(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(limited(("Retry-After", "7")), OK))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).json() == {"ok": True}
    assert clock.sleeps == [7.0]
    assert len(server.requests) == 2


def test_429_with_retry_after_http_date(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    when = email.utils.formatdate(START + 30, usegmt=True)
    server = serve(replies(limited(("Retry-After", when)), OK))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [30.0]


def test_429_with_okta_rate_limit_reset_waits_until_the_reset(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    reset = str(int(START) + 12)
    server = serve(
        replies(
            limited(
                ("X-Rate-Limit-Limit", "600"),
                ("X-Rate-Limit-Remaining", "0"),
                ("X-Rate-Limit-Reset", reset),
            ),
            OK,
        )
    )
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [12.0]


def test_a_retry_whose_wait_ends_after_the_deadline_is_not_made(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(limited(("Retry-After", "30")), OK))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(DeadlineReached) as raised:
        client.get(server.url(), deadline=START + 29)
    assert raised.value.__cause__ is None
    assert clock.sleeps == []
    assert len(server.requests) == 1
    # A wait that ends by the deadline is made.
    server = serve(replies(limited(("Retry-After", "30")), OK))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url(), deadline=START + 30).status == 200
    assert clock.sleeps == [30.0]


@pytest.mark.parametrize(
    ("header", "value", "expected"),
    [
        ("RateLimit-Reset", "5", 5.0),  # IETF draft: delta seconds
        ("X-RateLimit-Reset", "9", 9.0),
        ("X-RateLimit-Reset", str(int(START) + 20), 20.0),  # GitHub style: epoch seconds
    ],
)
def test_429_with_other_reset_headers(
    *,
    header: str,
    value: str,
    expected: float,
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    clock: FakeClock,
) -> None:
    server = serve(replies(limited((header, value)), OK))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [expected]


def test_a_long_server_wait_is_capped(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(limited(("Retry-After", "86400")), OK))
    client = make_client(
        allow_hosts={server.allow}, retry=RetryPolicy(max_attempts=2, max_wait=45.0)
    )
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [45.0]


def test_429_on_every_attempt_is_rate_limited(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(limited(("Retry-After", "2"))))
    client = make_client(allow_hosts={server.allow}, retry=RetryPolicy(max_attempts=4))
    with pytest.raises(ProviderRateLimited):
        client.get(server.url())
    assert len(server.requests) == 4
    assert clock.sleeps == [2.0, 2.0, 2.0]


def test_max_attempts_lowers_the_policy_for_one_request(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(limited(("Retry-After", "2"))))
    client = make_client(allow_hosts={server.allow}, retry=RetryPolicy(max_attempts=4))
    # One attempt: not even a 429, whose request did not count, is sent again.
    with pytest.raises(ProviderRateLimited):
        client.post(server.url(), data=b"x", max_attempts=1)
    assert len(server.requests) == 1
    assert clock.sleeps == []
    # Never more than the policy's.
    with pytest.raises(ProviderRateLimited):
        client.get(server.url(), max_attempts=10)
    assert len(server.requests) == 5
    for bad in (0, -1, True):
        with pytest.raises(MalformedOutboundRequest):
            client.get(server.url(), max_attempts=bad)
    assert len(server.requests) == 5


def test_503_then_200_backs_off_with_jitter(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(Reply(status=503), OK))
    client = make_client(
        allow_hosts={server.allow},
        random=lambda: 0.25,
        retry=RetryPolicy(max_attempts=3, base_delay=2.0),
    )
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [0.5]  # 0.25 of the first ceiling, base_delay


def test_5xx_ignores_rate_limit_reset_but_honours_retry_after(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    reset = ("X-Rate-Limit-Reset", str(int(START) + 50))
    server = serve(
        replies(
            Reply(status=500, headers=(reset,)),
            Reply(status=503, headers=(("Retry-After", "3"),)),
            OK,
        )
    )
    client = make_client(allow_hosts={server.allow}, random=lambda: 0.5)
    assert client.get(server.url()).status == 200
    assert clock.sleeps == [0.5, 3.0]


def test_5xx_on_every_attempt_is_unavailable_after_exponential_backoff(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(Reply(status=502)))
    client = make_client(
        allow_hosts={server.allow},
        random=lambda: 1.0,
        retry=RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=5.0),
    )
    with pytest.raises(ProviderUnavailable):
        client.get(server.url())
    assert len(server.requests) == 6
    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_stays_within_its_bounds(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(Reply(status=503)))
    policy = RetryPolicy(max_attempts=9, base_delay=0.5, max_delay=10.0)
    client = make_client(
        allow_hosts={server.allow},
        random=random.Random(20261123).random,  # noqa: S311
        retry=policy,
    )
    with pytest.raises(ProviderUnavailable):
        client.get(server.url())
    assert len(clock.sleeps) == 8
    for retry_number, slept in enumerate(clock.sleeps):
        assert 0.0 <= slept <= min(10.0, 0.5 * 2**retry_number)
    assert len(set(clock.sleeps)) == len(clock.sleeps)  # jittered, not a fixed schedule


def test_post_is_not_retried_on_5xx_unless_marked_retryable(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    server = serve(replies(Reply(status=503), OK))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(ProviderUnavailable):
        client.post(server.url("/token"), data={"grant_type": "client_credentials"})
    assert len(server.requests) == 1
    assert clock.sleeps == []
    response = client.post(server.url("/token"), data={"a": "b"}, retryable=True)
    assert response.status == 200
    assert len(server.requests) == 2  # the 503 reply was used up above; this one got OK


def test_get_marked_not_retryable_is_tried_once(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(status=500)))
    client = make_client(allow_hosts={server.allow})
    with pytest.raises(ProviderUnavailable):
        client.get(server.url(), retryable=False)
    assert len(server.requests) == 1


def test_4xx_is_returned_not_retried(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(status=404, body=b'{"errorCode": "E0000007"}')))
    client = make_client(allow_hosts={server.allow})
    response = client.get(server.url())
    assert response.status == 404
    assert not response.ok
    assert len(server.requests) == 1


def test_connection_refused_then_200(
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
    clock: FakeClock,
) -> None:
    server = serve(replies(OK))
    network.refuse_next = 1
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url()).status == 200
    assert network.connects == [("127.0.0.1", server.port)] * 2
    assert len(clock.sleeps) == 1


def test_refused_connection_is_retried_even_for_post(
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
) -> None:
    # Nothing reached the provider, so repeating a non-idempotent request is safe.
    server = serve(replies(OK))
    network.refuse_next = 2
    client = make_client(allow_hosts={server.allow})
    assert client.post(server.url(), json={"a": 1}).status == 200
    assert len(server.requests) == 1


def test_connection_refused_on_every_attempt_is_unavailable(
    make_client: Callable[..., OutboundClient], network: NetworkLog, clock: FakeClock
) -> None:
    network.refuse_all = True
    client = make_client(allow_hosts={("127.0.0.1", 9)}, retry=RetryPolicy(max_attempts=5))
    with pytest.raises(ProviderUnavailable):
        client.get("http://127.0.0.1:9/")
    assert len(network.connects) == 5
    assert len(clock.sleeps) == 4


def test_connect_timeout_is_retried_then_reported(
    make_client: Callable[..., OutboundClient], network: NetworkLog, clock: FakeClock
) -> None:
    network.time_out_next = 3
    client = make_client(allow_hosts={("127.0.0.1", 9)}, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderTimeout):
        client.post("http://127.0.0.1:9/token", data=b"x")
    assert len(network.connects) == 3


def test_name_that_fails_to_resolve_is_retried(
    make_client: Callable[..., OutboundClient], clock: FakeClock
) -> None:
    client = make_client()  # the fake resolver knows no names
    with pytest.raises(ProviderUnavailable):
        client.get("https://unknown.example-idp.com/")
    assert len(clock.sleeps) == 2


def test_attempts_are_shared_across_redirect_hops(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    def script(received):  # type: ignore[no-untyped-def]
        if received.path == "/start":
            return Reply(status=302, headers=(("Location", "/next"),))
        return Reply(status=503)

    server = serve(script)
    client = make_client(allow_hosts={server.allow}, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(ProviderUnavailable):
        client.get(server.url("/start"))
    assert [r.path for r in server.requests] == ["/start", "/next", "/next"]


@pytest.mark.parametrize(
    ("headers", "rate_limited", "expected"),
    [
        ({"Retry-After": "120"}, False, 120.0),
        ({"retry-after": " 3 "}, True, 3.0),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, True, 1445412480.0 - START),
        ({"Retry-After": "soon"}, False, None),
        ({"Retry-After": "-5"}, False, None),
        ({"X-Rate-Limit-Reset": str(int(START) + 60)}, True, 60.0),
        ({"X-Rate-Limit-Reset": str(int(START) + 60)}, False, None),
        ({"X-Rate-Limit-Reset": "nan"}, True, None),
        ({"X-Rate-Limit-Reset": "inf"}, True, None),
        ({"X-Rate-Limit-Reset": "later", "RateLimit-Reset": "4"}, True, 4.0),
        ({}, True, None),
    ],
)
def test_server_asked_wait(
    headers: dict[str, str], rate_limited: bool, expected: float | None
) -> None:
    asked = server_asked_wait(ResponseHeaders(headers.items()), START, rate_limited=rate_limited)
    assert asked == expected


def test_a_reset_in_the_past_falls_back_to_backoff() -> None:
    policy = RetryPolicy(base_delay=1.0)
    headers = ResponseHeaders([("X-Rate-Limit-Reset", str(int(START) - 30))])
    wait = policy.wait_before_retry(
        0, headers=headers, rate_limited=True, now=START, random=lambda: 0.5
    )
    assert wait == 0.5


@pytest.mark.parametrize("retry_number", range(12))
def test_backoff_ceiling_grows_exponentially_up_to_max_delay(retry_number: int) -> None:
    policy = RetryPolicy(base_delay=0.25, max_delay=30.0)
    ceiling = min(30.0, 0.25 * 2**retry_number)
    assert policy.backoff(retry_number, lambda: 0.0) == 0.0
    assert policy.backoff(retry_number, lambda: 1.0) == ceiling
    assert 0.0 <= policy.backoff(retry_number, random.Random(retry_number).random) <= ceiling  # noqa: S311


@pytest.mark.parametrize(
    "options",
    [{"max_attempts": 0}, {"base_delay": -1.0}, {"max_delay": -1.0}, {"max_wait": -1.0}],
)
def test_retry_policy_refuses_nonsense(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**options)  # type: ignore[arg-type]
