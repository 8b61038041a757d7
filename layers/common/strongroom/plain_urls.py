"""URLs every parser reads alike, and which hosts are this machine's own (loopback).

A URL from the settings goes to browsers, to providers and to urllib3, and plain HTTP is allowed
on loopback only: where it points must not depend on who reads it. Parsers disagree on odd URLs:
urlsplit takes the host after the last '@' where a browser (WHATWG: in http and https a
backslash is a path separator) and urllib3 end it at a backslash; `127.1` and `2130706433` are
127.0.0.1 to a browser but names to urlsplit; a browser percent-encodes what RFC 3986 does not
allow where urlsplit keeps it. So a plain URL holds RFC 3986's characters only, and its
authority is a host and a port, nothing more: userinfo, percent-encoding in the host, an IPv6
zone, and a numeric host other than a dotted quad are refused, never read one way and used
another.

The loopback rule has its one home here too: the settings, the outbound guard and the local
stack (which imports this module; nothing here imports it) all ask these functions.
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple

LOCALHOST = "localhost"

# RFC 3986's characters: unreserved, gen-delims, sub-delims, and '%' only as a percent-encoding.
_RFC3986_TEXT = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
# A reg-name without percent-encoding (WHATWG decodes it, urlsplit does not): unreserved and
# sub-delims only.
_REG_NAME = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_PORT = re.compile(r"[0-9]{0,5}")
# A last label WHATWG reads as a number, and so the whole host as an IPv4 address (`127.1`,
# `0x7f.0.0.1`, `2130706433`), which urlsplit and urllib3 read as a name.
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_LOOPBACK_V4 = ipaddress.IPv4Network("127.0.0.0/8")
_LOOPBACK_V6 = ipaddress.IPv6Address("::1")


class PlainUrl(NamedTuple):
    """An absolute URL as every parser splits it."""

    scheme: str  # lower-case
    # Lower-case; an IP literal in its canonical text, without brackets.
    host: str
    port: int | None
    # The path and query as written ("" or from "/" or "?" on).
    path: str
    fragment: str


def split_plain_url(url: str) -> PlainUrl:
    """`url` split; ValueError unless it is `scheme://host[:port]...` in RFC 3986's characters
    with an authority every parser reads alike (see split_authority)."""
    if not _RFC3986_TEXT.fullmatch(url):
        raise ValueError("a URL holds RFC 3986's characters only")
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        raise ValueError("an absolute URL with a host is needed")
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    host, port = split_authority(rest[:end])
    path, _, fragment = rest[end:].partition("#")
    return PlainUrl(scheme.lower(), host, port, path, fragment)


def split_authority(authority: str) -> tuple[str, int | None]:
    """(host, port or None) of a plain authority; ValueError for anything parsers may read
    differently: userinfo, characters outside RFC 3986's reg-name, percent-encoding, an IPv6
    zone, brackets around anything but an IPv6 address, or a numeric host other than a dotted
    quad. The host comes back lower-case, an IP literal canonical and without brackets."""
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket or "%" in literal or (after and not after.startswith(":")):
            raise ValueError("an IP literal is an IPv6 address in brackets")
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise ValueError("an IP literal is an IPv6 address in brackets") from None
        port_text = after[1:] if after else None
    else:
        name, colon, port_text_or_empty = authority.partition(":")
        if not _REG_NAME.fullmatch(name):
            raise ValueError("a host is a name, an IPv4 address or an IPv6 one in brackets")
        host = name.lower()
        labels = host.removesuffix(".").split(".")
        if _NUMERIC_LABEL.fullmatch(labels[-1]):
            try:
                host = str(ipaddress.IPv4Address(host))
            except ValueError:
                raise ValueError("a numeric host is a dotted-quad IPv4 address") from None
        port_text = port_text_or_empty if colon else None
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or (port_text and int(port_text) > 65535):
        raise ValueError("a port is a number up to 65535")
    # An empty port is the scheme's default to every parser, as RFC 3986 has it.
    return host, int(port_text) if port_text else None


def is_loopback_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for 127.0.0.0/8 and ::1 only."""
    # Spelled out: `is_loopback` of an IPv4-mapped address changed in Python 3.13.
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _LOOPBACK_V4
    return ip == _LOOPBACK_V6


def is_loopback_host(host: str) -> bool:
    """Whether `host`, as split_authority gives it, is this machine: localhost, 127.0.0.0/8 or
    ::1."""
    if host == LOCALHOST:
        return True
    try:
        return is_loopback_address(ipaddress.ip_address(host))
    except ValueError:
        return False


def loopback_host_port(entry: str) -> tuple[str, int]:
    """(host, port) of a `host:port` entry on loopback (`[::1]:8080` for IPv6), the host as
    split_authority gives it; ValueError for anything else."""
    try:
        host, port = split_authority(entry)
    except ValueError:
        raise ValueError("each entry must be host:port") from None
    if port is None:
        raise ValueError("each entry must be host:port")
    if port == 0:
        raise ValueError("port out of range")
    if not is_loopback_host(host):
        raise ValueError("host must be localhost or a loopback address")
    return host, port


def is_loopback_http_url(url: object) -> bool:
    """Whether `url` is a plain http:// URL on loopback (localhost, 127.0.0.0/8, ::1)."""
    if not isinstance(url, str):
        return False
    try:
        parts = split_plain_url(url)
    except ValueError:
        return False
    return parts.scheme == "http" and is_loopback_host(parts.host)
