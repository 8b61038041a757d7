"""The address rule: public unicast only, whatever form a forbidden address takes."""

from __future__ import annotations

import ipaddress

import pytest

from strongroom.outbound import is_forbidden_address
from strongroom.plain_urls import is_loopback_address

FORBIDDEN = [
    "0.0.0.0",  # noqa: S104
    "0.255.255.255",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",
    "100.127.255.254",
    "127.0.0.1",
    "127.255.255.254",
    "169.254.169.254",
    "169.254.0.1",
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.0.1",
    "198.18.0.1",
    "198.19.255.255",
    "198.51.100.7",
    "203.0.113.7",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:a9fe:a9fe",
    "::ffff:10.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "::8.8.8.8",  # IPv4-compatible is deprecated: refused whatever it embeds
    "::ffff:0:7f00:1",  # IPv4-translated (SIIT)
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::a00:1",
    "64:ff9b:1::5db8:d70e",  # local-use NAT64
    "2002:7f00:1::",
    "2002:a9fe:a9fe::",
    "2002:5db8:d70e::1",  # 6to4 is refused whole
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo
    "2001:2::1",
    "2001:db8::1",
    "3fff::1",
    "fc00::1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "fec0::1",
    "ff02::1",
    "ff0e::1",
    "100::1",
    "4000::1",
    "not an address",
    "",
    "2130706433",
    "0177.0.0.1",
]

ALLOWED = [
    "93.184.215.14",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above CGNAT
    "172.15.255.255",
    "172.32.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
    "2a00:1450:4001:82b::200e",
    "::ffff:93.184.215.14",  # IPv4-mapped public
    "64:ff9b::5db8:d70e",  # NAT64 of a public address (DNS64 in an IPv6-only subnet)
]


@pytest.mark.parametrize("address", FORBIDDEN)
def test_forbidden(address: str) -> None:
    assert is_forbidden_address(address) is True


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed(address: str) -> None:
    assert is_forbidden_address(address) is False
    assert is_forbidden_address(ipaddress.ip_address(address)) is False


def test_scoped_global_address_is_forbidden() -> None:
    assert is_forbidden_address(ipaddress.IPv6Address("2a00:1450:4001:82b::200e%eth0"))


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("::ffff:127.0.0.1", False),
        ("10.0.0.1", False),
        ("::", False),
    ],
)
def test_loopback_for_allow_listed_entries(address: str, loopback: bool) -> None:
    assert is_loopback_address(ipaddress.ip_address(address)) is loopback
