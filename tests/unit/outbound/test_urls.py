"""Strict URL parsing: the host normalised as a resolver would see it, odd shapes refused."""

from __future__ import annotations

import ipaddress
import unicodedata

import pytest

from strongroom.outbound.exceptions import DestinationRefused
from strongroom.outbound.urls import ipv4_from_inet_aton, parse_target

FULLWIDTH_EXAMPLE_COM = "\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25\uff0e\uff23\uff2f\uff2d"


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x7f.0x0.0x0.0x1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0", "0.0.0.0"),  # noqa: S104
        ("0x", "0.0.0.0"),  # noqa: S104
        ("1.2.3", "1.2.0.3"),
        ("10.16777215", "10.255.255.255"),
        ("169.254.43518", "169.254.169.254"),
        ("0251.0376.0251.0376", "169.254.169.254"),
        ("4294967295", "255.255.255.255"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_inet_aton_reads_what_a_c_resolver_reads(text: str, address: str) -> None:
    assert ipv4_from_inet_aton(text) == ipaddress.IPv4Address(address)


@pytest.mark.parametrize(
    "text",
    [
        "4294967296",
        "256.1",
        "1.16777216",
        "1.2.3.256",
        "08",
        "0x1g",
        "1..2",
        "1.2.3.4.5",
        "",
        "+1",
        "1_0",
        " 1",
        "a.b",
    ],
)
def test_inet_aton_refuses_what_a_c_resolver_refuses(text: str) -> None:
    assert ipv4_from_inet_aton(text) is None


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://Login.Example-IdP.com./a?b=c#d", "login.example-idp.com", 443, "/a?b=c"),
        ("HTTPS://EXAMPLE.COM", "example.com", 443, "/"),
        ("https://example.com?x=1", "example.com", 443, "/?x=1"),
        ("https://example.com:8443", "example.com", 8443, "/"),
        ("http://example.com/", "example.com", 80, "/"),
        ("https://bücher.example/", "xn--bcher-kva.example", 443, "/"),
        (
            "https://\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25\uff0e\uff23\uff2f\uff2d/",
            "example.com",
            443,
            "/",
        ),
        ("https://[2606:4700:0::1111]:8443/x", "2606:4700::1111", 8443, "/x"),
        ("https://93.184.215.14/", "93.184.215.14", 443, "/"),
    ],
)
def test_normalisation(url: str, host: str, port: int, path: str) -> None:
    target = parse_target(url)
    assert (target.host, target.port, target.path) == (host, port, path)


def test_ip_literal_carries_its_address_and_a_bracketed_authority() -> None:
    target = parse_target("https://[2606:4700::1111]:8443/x")
    assert target.address == ipaddress.IPv6Address("2606:4700::1111")
    assert target.authority == "[2606:4700::1111]:8443"
    assert target.url == "https://[2606:4700::1111]:8443/x"
    assert parse_target("https://example.com:443/").authority == "example.com"
    assert parse_target("https://example.com/").address is None


@pytest.mark.parametrize(
    "url",
    [
        "https:/example.com/",
        "https//example.com/",
        "example.com",
        "https://",
        "https://:443/",
        "https://.example.com/",
        "https://example..com/",
        "https://example.com../",
        "https://a_b.example.com/",
        "https://-a.example.com/",
        "https://xn--zz.example.com/",
        "https://" + "a" * 64 + ".com/",
        "https://" + ".".join(["abcdefghi"] * 26) + ".com/",
        "https://example.1/",
        "https://example.0x1/",
        "https://1.2.3.256/",
        "https://999.1.1.1/",
        "https://08.0.0.1/",
        # non-canonical numeric forms are refused even when they denote a public address
        "https://1572394766/",
        "https://0x5db8d70e/",
        "https://93.184.55054/",
        "https://0135.0270.0327.016/",
        "https://93.184.215.014/",
        "https://[v1.fe80::1]/",
        "https://[127.0.0.1]/",
        "https://[::1]x/",
        "https://ex ample.com/",
        "https://example.com/\x00",
        "https://example.com/\u202e",
        "https://example.com\u3000/",
        "https://example.com/" + "a" * 9000,
        "https://example.com:\uff18\uff14\uff14\uff13/",  # fullwidth port digits
        "https://€xample.com/",
    ],
)
def test_odd_shapes_are_refused(url: str) -> None:
    with pytest.raises(DestinationRefused):
        parse_target(url)


def test_non_string_is_refused() -> None:
    with pytest.raises(DestinationRefused):
        parse_target(b"https://example.com/")  # type: ignore[arg-type]


def test_every_ascii_character_is_judged_by_the_unicode_rule() -> None:
    # ASCII URLs are checked by a regex (fast path): it must refuse exactly what the
    # per-character rule refuses (controls, space, DEL), and a backslash as ever.
    for code in range(128):
        char = chr(code)
        invisible = char <= " " or unicodedata.category(char)[0] in "CZ"
        url = f"https://example.com/a{char}b"
        if invisible or char == "\\":
            with pytest.raises(DestinationRefused):
                parse_target(url)
        else:
            assert parse_target(url).host == "example.com", repr(char)


def test_a_refused_host_is_refused_every_time() -> None:
    # Host normalisation is cached; refusals are not, so a second try is refused as well.
    for _ in range(2):
        with pytest.raises(DestinationRefused):
            parse_target("https://0x7f.1/")
    assert parse_target("https://EXAMPLE.com./").host == "example.com"
    assert parse_target("https://example.com/").host == "example.com"
