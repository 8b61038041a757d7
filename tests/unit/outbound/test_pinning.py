"""One lookup per hop, every answer checked, and the connection made to the checked address.

TLS keeps the original name: SNI, the Host header and certificate verification all use it while
the socket goes to the IP that was checked. To run that against a loopback server, these tests
widen the address rule explicitly (the `is_forbidden` seam) to admit exactly 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from strongroom.outbound import OutboundClient, RetryPolicy, is_forbidden_address
from strongroom.outbound.addresses import IPAddress
from strongroom.outbound.exceptions import (
    CertificateRejected,
    DestinationRefused,
    ProviderUnavailable,
)
from tests.unit.outbound.conftest import (
    PUBLIC_V4,
    FakeClock,
    FakeResolver,
    NetworkLog,
    Pki,
    Reply,
    Server,
    replies,
)

IDP_NAME = "login.acme-idp-test.com"
ONCE = RetryPolicy(max_attempts=1)


def admits_test_loopback(ip: IPAddress) -> bool:
    """The production rule, widened to let 127.0.0.1 (only) stand in for a public address."""
    return ip != ipaddress.IPv4Address("127.0.0.1") and is_forbidden_address(ip)


def test_dns_rebinding_cannot_move_the_connection(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    # First answer public, every later answer the metadata service. The client must look the
    # name up once for the hop and connect to that checked answer; no second lookup happens
    # anywhere (urllib3 is only ever handed the IP).
    network.refuse_all = True  # the public address is refused locally: no traffic leaves
    resolver = FakeResolver()
    resolver.add_turns(IDP_NAME, [PUBLIC_V4], ["169.254.169.254"])
    client = make_client(resolver=resolver, retry=ONCE)
    with pytest.raises(ProviderUnavailable):
        client.get(f"https://{IDP_NAME}/api/v1/users")
    assert resolver.calls == [(IDP_NAME, 443)]
    assert network.connects == [(PUBLIC_V4, 443)]
    assert IDP_NAME not in network.lookups
    assert network.names_looked_up() == []


def test_each_retry_looks_up_again_and_checks_the_new_answer(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    network.refuse_all = True
    resolver = FakeResolver()
    resolver.add_turns(IDP_NAME, [PUBLIC_V4], ["169.254.169.254"])
    client = make_client(resolver=resolver, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(DestinationRefused):
        client.get(f"https://{IDP_NAME}/api/v1/users")
    assert resolver.calls == [(IDP_NAME, 443), (IDP_NAME, 443)]
    assert network.connects == [(PUBLIC_V4, 443)]


def test_tls_goes_to_the_checked_ip_with_the_original_name(
    pki: Pki,
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
) -> None:
    server = serve(replies(Reply(body=b'{"id": "00u1"}')), tls=pki.server_context(IDP_NAME))
    resolver = FakeResolver()
    # Rebinding again: the second answer (never asked for) would be a private address.
    resolver.add_turns(IDP_NAME, ["127.0.0.1"], ["10.0.0.1"])
    client = make_client(
        resolver=resolver, is_forbidden=admits_test_loopback, ca_bundle=str(pki.ca_file)
    )
    response = client.get(f"https://{IDP_NAME}:{server.port}/api/v1/users/me")
    assert response.status == 200
    assert response.json() == {"id": "00u1"}
    assert response.url == f"https://{IDP_NAME}:{server.port}/api/v1/users/me"
    assert server.sni_names == [IDP_NAME]
    assert server.requests[0].headers["host"] == f"{IDP_NAME}:{server.port}"
    assert resolver.calls == [(IDP_NAME, server.port)]
    assert network.connects == [("127.0.0.1", server.port)]
    assert network.names_looked_up() == []


def test_tls_certificate_for_another_name_is_rejected(
    pki: Pki, serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(body=b"{}")), tls=pki.server_context("other.acme-idp-test.com"))
    client = make_client(
        resolver=FakeResolver({IDP_NAME: ["127.0.0.1"]}),
        is_forbidden=admits_test_loopback,
        ca_bundle=str(pki.ca_file),
    )
    with pytest.raises(CertificateRejected) as caught:
        client.get(f"https://{IDP_NAME}:{server.port}/?state=opaque-state")
    assert server.requests == []
    assert caught.value.__context__ is None  # requests' error quotes the URL: not kept


def test_tls_certificate_from_an_untrusted_ca_is_rejected(
    pki: Pki, serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    server = serve(replies(Reply(body=b"{}")), tls=pki.server_context(IDP_NAME))
    client = make_client(  # no ca_bundle: the default trust store, which lacks the test CA
        resolver=FakeResolver({IDP_NAME: ["127.0.0.1"]}), is_forbidden=admits_test_loopback
    )
    with pytest.raises(CertificateRejected):
        client.get(f"https://{IDP_NAME}:{server.port}/")
    assert server.requests == []


def test_widened_rule_still_refuses_everything_else(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    client = make_client(
        resolver=FakeResolver({IDP_NAME: ["127.0.0.2"]}), is_forbidden=admits_test_loopback
    )
    with pytest.raises(DestinationRefused):
        client.get(f"https://{IDP_NAME}/")
    assert network.connects == []


def test_connections_are_reused_only_for_the_same_name_and_address(
    pki: Pki,
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
) -> None:
    server = serve(
        replies(Reply(body=b"1")), tls=pki.server_context(IDP_NAME, "alt.acme-idp-test.com")
    )
    client = make_client(
        resolver=FakeResolver({IDP_NAME: ["127.0.0.1"], "alt.acme-idp-test.com": ["127.0.0.1"]}),
        is_forbidden=admits_test_loopback,
        ca_bundle=str(pki.ca_file),
    )
    for _ in range(3):
        client.get(f"https://{IDP_NAME}:{server.port}/")
    client.get(f"https://alt.acme-idp-test.com:{server.port}/")
    assert len(network.connects) == 2  # one pooled connection per name
    assert server.sni_names == [IDP_NAME, "alt.acme-idp-test.com"]
    assert [r.headers["host"].split(":")[0] for r in server.requests] == [IDP_NAME] * 3 + [
        "alt.acme-idp-test.com"
    ]


def test_ipv6_loopback_allow_list_entry(
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
) -> None:
    try:
        server = serve(replies(Reply(body=b"v6")), host="[::1]")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    client = make_client(allow_hosts={("::1", server.port)})
    response = client.get(f"http://[::1]:{server.port}/x")
    assert response.body == b"v6"
    assert server.requests[0].headers["host"] == f"[::1]:{server.port}"
    assert network.connects == [("::1", server.port)]


def test_next_checked_address_is_tried_when_the_first_refuses(
    serve: Callable[..., Server],
    make_client: Callable[..., OutboundClient],
    network: NetworkLog,
    clock: FakeClock,
) -> None:
    # A dual-stack `localhost` whose server listens on 127.0.0.1 only.
    server = serve(replies(Reply(body=b"ok")))
    network.refuse_next = 1
    resolver = FakeResolver({"localhost": ["::1", "127.0.0.1"]})
    client = make_client(allow_hosts={("localhost", server.port)}, resolver=resolver)
    assert client.get(f"http://localhost:{server.port}/").body == b"ok"
    assert network.connects == [("::1", server.port), ("127.0.0.1", server.port)]
    assert resolver.calls == [("localhost", server.port)]
    assert clock.sleeps == []  # one attempt, two addresses


def test_every_answer_is_checked_before_any_is_tried(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    network.refuse_all = True
    resolver = FakeResolver({IDP_NAME: [PUBLIC_V4, "93.184.215.15", "10.0.0.1"]})
    client = make_client(resolver=resolver)
    with pytest.raises(DestinationRefused):
        client.get(f"https://{IDP_NAME}/")
    assert network.connects == []
