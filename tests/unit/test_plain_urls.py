"""Plain URLs: accepted only where every parser reads the same host and port."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import urllib3.util

from strongroom.plain_urls import (
    is_loopback_host,
    is_loopback_http_url,
    loopback_host_port,
    split_authority,
    split_plain_url,
)

PLAIN = [
    ("https://api.strongroom.example/oauth/callback", "api.strongroom.example", None),
    ("https://API.Strongroom.example:8443/cb?a=1&b=%2F", "api.strongroom.example", 8443),
    ("http://127.0.0.1:3000/dev/oauth/callback", "127.0.0.1", 3000),
    ("http://localhost:3000", "localhost", 3000),
    ("http://[::1]:3000/dev/health", "::1", 3000),
    ("https://203.0.113.5/cb", "203.0.113.5", None),
    ("https://example.com:/cb", "example.com", None),
    ("https://a_b-c.example./cb", "a_b-c.example.", None),
]


@pytest.mark.parametrize(("url", "host", "port"), PLAIN)
def test_a_plain_url_is_split_as_urlsplit_and_urllib3_split_it(
    url: str, host: str, port: int | None
) -> None:
    parts = split_plain_url(url)
    assert (parts.host, parts.port) == (host, port)
    assert (urlsplit(url).hostname, urlsplit(url).port) == (host, port)
    parsed = urllib3.util.parse_url(url)
    assert ((parsed.host or "").strip("[]").lower(), parsed.port) == (host, port)


@pytest.mark.parametrize(
    "url",
    [
        # urlsplit: 127.0.0.1; a browser and urllib3: evil.example.
        "http://evil.example\\@127.0.0.1/",
        "http://127.0.0.1\\@evil.example/",
        "http://evil.example\\.127.0.0.1/",
        "http://someone@127.0.0.1/",
        # Numbers a browser reads as 127.0.0.1, names to urlsplit.
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://127.0.0.01/",
        "http://127.0.0.1./",
        # Percent-encoding in the host: decoded by a browser, not by urlsplit.
        "http://%31%32%37.0.0.1/",
        "http://[::1%25lo]:3000/",
        "http://[127.0.0.1]:3000/",
        "http://[v1.x]/",
        "http://[::1/",
        "http://::1:3000/",
        "http://127.0.0.1:65536/",
        "http://127.0.0.1:3000:4000/",
        "http://127.0.0.1:http/",
        # Outside RFC 3986's characters: what a browser, requests and urlsplit send differs.
        "http://127.0.0.1/a b",
        "http://127.0.0.1/a\tb",
        "http://127.0.0.1/\x00",
        "https://api.strongroom.example/é",
        "https://api.strongroom.example/{x}",
        "https://api.strongroom.example/a|b",
        "https://api.strongroom.example/%zz",
        "https://ex\u0430mple.com/",
        "https:///cb",
        "https:/api.strongroom.example/cb",
        "//api.strongroom.example/cb",
        "api.strongroom.example",
    ],
)
def test_a_url_parsers_may_read_differently_is_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each refusal has its own message
        split_plain_url(url)
    assert not is_loopback_http_url(url)


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:4000", True),
        ("http://127.8.9.10:4000/x", True),
        ("http://[::1]:4000", True),
        ("http://[0:0::1]:4000", True),
        ("HTTP://LOCALHOST:4000", True),
        ("https://127.0.0.1:4000", False),
        ("http://[::ffff:127.0.0.1]:4000", False),
        ("http://127.0.0.1.example.net", False),
        ("http://10.0.0.1", False),
        ("http://localhost.:4000", False),
        (None, False),
        (4000, False),
    ],
)
def test_loopback_http_urls(url: object, loopback: bool) -> None:
    assert is_loopback_http_url(url) is loopback


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("127.0.0.1:8443", ("127.0.0.1", 8443)),
        ("LOCALHOST:9000", ("localhost", 9000)),
        ("[::1]:9001", ("::1", 9001)),
        ("[0:0:0::1]:9001", ("::1", 9001)),
        ("127.0.0.2:1", ("127.0.0.2", 1)),
        ("127.0.0.1:0080", ("127.0.0.1", 80)),
    ],
)
def test_loopback_host_port_entries(entry: str, expected: tuple[str, int]) -> None:
    assert loopback_host_port(entry) == expected


@pytest.mark.parametrize(
    "entry",
    [
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:\u0668\u0660",  # Arabic-Indic 80: str.isdigit() says yes
        "::1:8080",  # unbracketed: host ::1 and port 8080, or the address ::1:8080?
        "[127.0.0.1]:80",
        "[::1%25lo]:80",
        "[::1%lo]:80",
        "[::ffff:127.0.0.1]:80",  # loopback to Python 3.13's ipaddress, not to 3.11's
        "127.1:80",
        "evil.example@127.0.0.1:80",
        "evil.example\\@127.0.0.1:80",
        "example.com:443",
        "[fd00::1]:80",
    ],
)
def test_loopback_host_port_refuses_anything_else(entry: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each refusal has its own message
        loopback_host_port(entry)


def test_the_loopback_hosts() -> None:
    assert is_loopback_host("localhost")
    assert is_loopback_host("127.255.255.254")
    assert is_loopback_host("::1")
    assert not is_loopback_host("::1%lo")
    assert not is_loopback_host("[::1]")
    assert not is_loopback_host("localhost.")
    assert not is_loopback_host("128.0.0.1")


def test_an_authority_is_a_host_and_a_port_only() -> None:
    assert split_authority("Example.COM:8080") == ("example.com", 8080)
    assert split_authority("[2001:DB8::1]") == ("2001:db8::1", None)
    with pytest.raises(ValueError, match="IPv6 address in brackets"):
        split_authority("[::1]x")
