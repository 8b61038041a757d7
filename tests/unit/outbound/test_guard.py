"""The guard refuses every internal destination before a single connection is attempted."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from strongroom.outbound import OutboundClient, check_url
from strongroom.outbound.exceptions import DestinationRefused, OutboundError
from strongroom.outbound.guard import normalise_allow_hosts
from strongroom.settings import Settings
from tests.unit.outbound.conftest import PUBLIC_V4, PUBLIC_V6, FakeResolver, NetworkLog, Server

# Names the fake resolver knows; anything else does not resolve.
DNS = {
    "public.example-idp.com": [PUBLIC_V4, PUBLIC_V6],
    "private.example-idp.com": ["10.1.2.3"],
    "mixed.example-idp.com": [PUBLIC_V4, "127.0.0.1"],
    "mixed-v6.example-idp.com": [PUBLIC_V6, "fd00::1"],
    "metadata.example-idp.com": ["169.254.169.254"],
    "mapped.example-idp.com": ["::ffff:10.0.0.1"],
    "nat64.example-idp.com": ["64:ff9b::a9fe:a9fe"],
    "loopback-v6.example-idp.com": ["::1"],
    "169.254.169.254.nip.io": ["169.254.169.254"],
    "empty.example-idp.com": [],
    "garbage.example-idp.com": ["not-an-address"],
    "scoped.example-idp.com": ["fe80::1%eth0"],
    # The resolver would happily answer these with a public address: the names are refused.
    "localhost": [PUBLIC_V4],
    "metadata": [PUBLIC_V4],
    "metadata.google.internal": [PUBLIC_V4],
    "printer.local": [PUBLIC_V4],
    "app.localhost": [PUBLIC_V4],
}

FORBIDDEN_TARGETS = [
    # numeric IPv4 forms a C resolver reads as loopback
    "https://2130706433/",
    "https://0177.0.0.1/",
    "https://0x7f000001/",
    "https://127.1/",
    "https://0x7f.1/",
    "https://0x7f.0x0.0x0.0x1/",
    "https://017700000001/",
    "https://127.0.0.1/",
    "https://127.0.0.1:443/",
    "https://127.0.0.1./",
    "https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/",  # fullwidth digits, dots
    # unspecified, this-network, loopback v6 and embedded forms
    "https://0.0.0.0/",
    "https://0/",
    "https://[::]/",
    "https://[::1]/",
    "https://[0:0:0:0:0:0:0:1]/",
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:7f00:1]/",
    "https://[::127.0.0.1]/",  # IPv4-compatible
    "https://[64:ff9b::7f00:1]/",  # NAT64 of loopback
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64 of the metadata service
    "https://[2002:7f00:1::]/",  # 6to4 of loopback
    "https://[2002:a9fe:a9fe::1]/",  # 6to4 of the metadata service
    "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo (client 127.0.0.1)
    # metadata service, link-local, private, CGNAT
    "https://169.254.169.254/latest/meta-data/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[fd00:ec2::254]/",
    "https://10.0.0.1/",
    "https://172.16.0.1/",
    "https://172.31.255.255/",
    "https://192.168.1.1/",
    "https://100.64.0.1/",
    "https://100.100.100.200/",  # a cloud metadata address inside CGNAT
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",  # zone id
    "https://[fc00::1]/",
    "https://[fec0::1]/",  # site-local
    # multicast, broadcast, reserved, benchmarking, documentation
    "https://224.0.0.1/",
    "https://[ff02::1]/",
    "https://255.255.255.255/",
    "https://240.0.0.1/",
    "https://198.18.0.1/",
    "https://192.0.2.1/",
    "https://[2001:db8::1]/",
    "https://[2001:2::1]/",
    # names that are never public, whatever they resolve to
    "https://localhost/",
    "https://LOCALHOST./",
    "https://app.localhost/",
    "https://metadata/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://printer.local/",
    # names that resolve to forbidden addresses
    "https://private.example-idp.com/",
    "https://mixed.example-idp.com/",
    "https://mixed-v6.example-idp.com/",
    "https://metadata.example-idp.com/",
    "https://mapped.example-idp.com/",
    "https://nat64.example-idp.com/",
    "https://loopback-v6.example-idp.com/",
    "https://169.254.169.254.nip.io/",
    "https://empty.example-idp.com/",
    "https://garbage.example-idp.com/",
    "https://scoped.example-idp.com/",
    # userinfo, backslashes, whitespace, control characters, percent-encoded hosts
    "https://public.example-idp.com@127.0.0.1/",
    "https://user:pass@public.example-idp.com/",
    "https://public.example-idp.com\\@127.0.0.1/",
    "https:\\\\127.0.0.1/",
    "https://public.example-idp.com /",
    "https://public.exa\tmple-idp.com/",
    "https://127.0.0.1\n.public.example-idp.com/",
    "https://public.example\u200b-idp.com/",
    "https://%31%32%37.0.0.1/",
    # schemes and plain HTTP
    "http://93.184.215.14/",
    "http://public.example-idp.com/",
    "ftp://public.example-idp.com/",
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "//public.example-idp.com/",
    # ports and malformed authorities
    "https://public.example-idp.com:0/",
    "https://public.example-idp.com:65536/",
    "https://public.example-idp.com:99999/",
    "https://public.example-idp.com:/",
    "https://public.example-idp.com:+443/",
    "https://[::1/",
    "https://a:b:c/",
    "https://",
]


def _refused_without_traffic(
    client: OutboundClient, url: str, network: NetworkLog, resolver: FakeResolver
) -> None:
    network.refuse_all = True  # a broken guard must still never reach the network
    with pytest.raises(DestinationRefused) as caught:
        client.get(url)
    assert network.connects == []
    assert network.names_looked_up() == []
    assert str(caught.value) == "outbound destination refused"
    # A name is looked up at most once before the refusal; a literal never is.
    assert len(resolver.calls) <= 1


def test_table_is_large_enough() -> None:
    assert len(FORBIDDEN_TARGETS) >= 40
    assert len(set(FORBIDDEN_TARGETS)) == len(FORBIDDEN_TARGETS)


@pytest.mark.parametrize("url", FORBIDDEN_TARGETS)
def test_forbidden_target_is_refused_before_any_connection(
    url: str, make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    resolver = FakeResolver(DNS)
    client = make_client(resolver=resolver)
    _refused_without_traffic(client, url, network, resolver)


@pytest.mark.parametrize("url", FORBIDDEN_TARGETS)
def test_forbidden_target_is_refused_at_configuration_time(url: str, network: NetworkLog) -> None:
    network.refuse_all = True
    with pytest.raises(DestinationRefused):
        check_url(url, resolver=FakeResolver(DNS))
    assert network.connects == []
    assert network.lookups == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://localhost/",
        "https://private.example-idp.com/",
        "https://metadata.google.internal/",
    ],
)
def test_literal_and_special_names_are_refused_without_a_lookup(
    url: str, make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    resolver = FakeResolver(DNS)
    client = make_client(resolver=resolver)
    with pytest.raises(DestinationRefused):
        client.get(url)
    expected_calls = 1 if "example-idp" in url else 0
    assert len(resolver.calls) == expected_calls
    assert network.connects == []


def test_public_destination_passes_the_guard(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    # The control for the table: the same client reaches a public name's checked address
    # (the connect is refused locally, so nothing leaves the machine).
    network.refuse_all = True
    resolver = FakeResolver(DNS)
    client = make_client(resolver=resolver)
    with pytest.raises(OutboundError) as caught:
        client.get("https://Public.Example-IdP.com./v1/users?limit=2")
    assert not isinstance(caught.value, DestinationRefused)
    assert resolver.calls[0] == ("public.example-idp.com", 443)
    assert network.connects[0] == (PUBLIC_V4, 443)
    assert network.names_looked_up() == []


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://Public.Example-IdP.com./v1?x=1#frag", "https://public.example-idp.com/v1?x=1"),
        ("HTTPS://public.example-idp.com:443", "https://public.example-idp.com/"),
        ("https://public.example-idp.com:8443/t", "https://public.example-idp.com:8443/t"),
        ("https://93.184.215.14/token", "https://93.184.215.14/token"),
        (f"https://[{PUBLIC_V6.upper()}]/t", f"https://[{PUBLIC_V6}]/t"),
        ("https://[64:ff9b::5db8:d70e]/", "https://[64:ff9b::5db8:d70e]/"),  # NAT64 of public
    ],
)
def test_check_url_returns_the_normalised_url(url: str, normalised: str) -> None:
    assert check_url(url, resolver=FakeResolver(DNS)) == normalised


def test_check_url_resolves_now_and_refuses_a_name_that_does_not_resolve() -> None:
    resolver = FakeResolver(DNS)
    with pytest.raises(DestinationRefused):
        check_url("https://unknown.example-idp.com/oauth/token", resolver=resolver)
    assert resolver.calls == [("unknown.example-idp.com", 443)]


def test_check_url_error_never_echoes_userinfo_or_query() -> None:
    with pytest.raises(DestinationRefused) as caught:
        check_url("https://admin:hunter2@10.0.0.1/cb?code=SplxlOBeZQQYbYS6WxSbIA")
    text = f"{caught.value!s} {caught.value!r}"
    assert "hunter2" not in text
    assert "SplxlOBeZQQYbYS6WxSbIA" not in text
    assert "10.0.0.1" not in text


def test_allow_listed_entry_may_use_plain_http_on_exactly_its_port(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    from tests.unit.outbound.conftest import Reply, replies

    server = serve(replies(Reply(body=b"ok")))
    client = make_client(allow_hosts={server.allow})
    assert client.get(server.url("/ping")).body == b"ok"
    assert check_url(server.url("/x"), {server.allow}) == server.url("/x")
    for url in (
        f"http://127.0.0.1:{server.port + 1}/",  # another port
        f"http://localhost:{server.port}/",  # another name for the same address
        f"http://127.0.0.2:{server.port}/",
    ):
        with pytest.raises(DestinationRefused):
            client.get(url)
        with pytest.raises(DestinationRefused):
            check_url(url, {server.allow})
    assert len(server.requests) == 1


def test_allow_listed_name_must_resolve_to_loopback(
    make_client: Callable[..., OutboundClient], network: NetworkLog
) -> None:
    network.refuse_all = True
    resolver = FakeResolver({"localhost": ["127.0.0.1", "10.0.0.7"]})
    client = make_client(allow_hosts={("localhost", 8080)}, resolver=resolver)
    with pytest.raises(DestinationRefused):
        client.get("http://localhost:8080/")
    assert network.connects == []


def test_allow_list_from_settings_reaches_the_local_server(
    serve: Callable[..., Server], make_client: Callable[..., OutboundClient]
) -> None:
    from tests.unit.outbound.conftest import Reply, replies
    from tests.unit.test_settings import REQUIRED

    server = serve(replies(Reply(body=b"{}")))
    settings = Settings.from_environ(
        {**REQUIRED, "STRONGROOM_DEV_ALLOW_HOSTS": f"127.0.0.1:{server.port}, localhost:1"}
    )
    client = make_client(allow_hosts=settings.dev_allow_hosts)
    assert client.get(server.url()).status == 200


@pytest.mark.parametrize(
    "entry",
    [("public.example-idp.com", 443), ("10.0.0.1", 80), ("localhost", 0), ("::2", 80)],
)
def test_allow_list_accepts_only_loopback_entries(entry: tuple[str, int]) -> None:
    with pytest.raises(ValueError, match="allow-list"):
        normalise_allow_hosts([entry])


def test_allow_list_entries_are_normalised() -> None:
    assert normalise_allow_hosts([("[0:0::1]", 8080), ("LocalHost", 1)]) == {
        ("::1", 8080),
        ("localhost", 1),
    }
