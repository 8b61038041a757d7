"""Which IP addresses an outbound request may connect to.

A pure function of the address, so the same rule holds at configuration time and at every hop.
The IPv4 rule is a deny-list of the IANA special-purpose ranges, spelled out rather than taken
from `ipaddress.is_global`, whose answers differ between Python versions. The IPv6 rule is an
allow-list: global unicast 2000::/3 minus its special ranges, plus the IPv4-mapped and NAT64
forms of an allowed IPv4 address (Lambda in an IPv6-only subnet reaches IPv4 through DNS64).
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_FORBIDDEN_V4 = tuple(
    ipaddress.IPv4Network(network)
    for network in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",  # RFC 1918
        "100.64.0.0/10",  # CGNAT shared address space
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, including the instance metadata service
        "172.16.0.0/12",  # RFC 1918
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",  # RFC 1918
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, including the limited broadcast 255.255.255.255
    )
)

_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")
_FORBIDDEN_GLOBAL_V6 = tuple(
    ipaddress.IPv6Network(network)
    for network in (
        # IETF protocol assignments: Teredo 2001::/32 (tunnels to an embedded IPv4 address),
        # benchmarking 2001:2::/48, ORCHID. No provider is reached through these.
        "2001::/23",
        "2001:db8::/32",  # documentation
        # 6to4 tunnels to the IPv4 address it embeds; deprecated (RFC 7526), refused whole.
        "2002::/16",
        "3fff::/20",  # documentation (RFC 9637)
    )
)


def is_forbidden_address(ip: IPAddress | str) -> bool:
    """True unless `ip` is a public unicast address an outbound request may connect to.

    A string that is not an IP address is forbidden (fail closed), as is any scoped IPv6 address.
    """
    if isinstance(ip, str):
        try:
            ip = ipaddress.ip_address(ip)
        except ValueError:
            return True
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_address(embedded)
        return _is_forbidden_ipv6(ip)
    return any(ip in network for network in _FORBIDDEN_V4)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 address reaches, if it is one."""
    if ip.scope_id is not None:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64_V6:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _is_forbidden_ipv6(ip: ipaddress.IPv6Address) -> bool:
    if ip.scope_id is not None:
        return True
    # Everything outside 2000::/3 is refused: unspecified ::, loopback ::1, IPv4-compatible
    # ::a.b.c.d, ULA fc00::/7, link-local fe80::/10, site-local fec0::/10, multicast ff00::/8,
    # discard 100::/64, local-use NAT64 64:ff9b:1::/48 and everything still unassigned.
    if ip not in _GLOBAL_UNICAST_V6:
        return True
    return any(ip in network for network in _FORBIDDEN_GLOBAL_V6)
