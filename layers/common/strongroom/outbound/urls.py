"""Strict parsing of outbound URLs into a normalised target.

Parsers disagree on odd URLs (userinfo, backslashes, numeric hosts, Unicode dots), and SSRF
lives in those disagreements. So this parser accepts a narrow grammar, normalises the host the
way a resolver would see it, and refuses everything else with one opaque error.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from dataclasses import dataclass

import idna

from strongroom.outbound.addresses import IPAddress
from strongroom.outbound.exceptions import DestinationRefused

MAX_URL_LENGTH = 8192
DEFAULT_PORTS = {"https": 443, "http": 80}

_REFUSED = "outbound destination refused"
_PORT = re.compile(r"[0-9]{1,5}")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# A label a C resolver would read as a number: decimal, octal (leading 0) or hex (0x).
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")
_HEX_PART = re.compile(r"0x[0-9a-f]*")
_OCTAL_PART = re.compile(r"0[0-7]*")
_DECIMAL_PART = re.compile(r"[1-9][0-9]*")
_ASCII_INVISIBLE = re.compile(r"[\x00-\x20\x7f]")


def refused() -> DestinationRefused:
    """The one refusal error: it never names the URL, whose query or userinfo may be secret."""
    return DestinationRefused(_REFUSED)


@dataclass(frozen=True)
class Target:
    """A parsed, normalised URL: what the guard checks and the client connects to."""

    scheme: str
    # Lowercase ASCII name (A-labels), or the canonical text of an IP literal without brackets.
    host: str
    port: int
    # Path and query, starting with "/"; the fragment is dropped (it is never sent).
    path: str
    address: IPAddress | None

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port

    @property
    def authority(self) -> str:
        """The Host header value: the host (bracketed if IPv6) and any non-default port."""
        host = f"[{self.host}]" if isinstance(self.address, ipaddress.IPv6Address) else self.host
        if self.port == DEFAULT_PORTS[self.scheme]:
            return host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


def parse_target(url: str) -> Target:
    """Parse `url` strictly; raise DestinationRefused for anything outside the grammar.

    Only the shape is checked here: whether the scheme, name and addresses are allowed is the
    guard's decision.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise refused()
    if "\\" in url or _has_invisible(url):
        raise refused()
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise refused()
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, remainder = rest[:end], rest[end:]
    if not authority or "@" in authority or "%" in authority:
        # Userinfo is refused outright (`https://good.com@127.0.0.1/`), and so is percent-
        # encoding in the host (IPv6 zone ids, `%31%32%37.0.0.1`).
        raise refused()
    host_text, port_text = _split_authority(authority)
    port = DEFAULT_PORTS[scheme]
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
            raise refused()
        port = int(port_text)
    host, address = _normalise_host(host_text)
    path = remainder.partition("#")[0]
    if not path.startswith("/"):
        path = "/" + path
    return Target(scheme=scheme, host=host, port=port, path=path, address=address)


def _has_invisible(url: str) -> bool:
    if url.isascii():
        # The same rule as `_is_invisible`, at C speed: ASCII's only invisible characters
        # are the controls, space and DEL (every URL of every request is checked, twice).
        return _ASCII_INVISIBLE.search(url) is not None
    return any(_is_invisible(char) for char in url)


def _is_invisible(char: str) -> bool:
    # Whitespace, control, format (zero-width, bidi) and unassigned characters: a URL that
    # holds one means different things to different parsers.
    return char <= " " or unicodedata.category(char)[0] in "CZ"


def _split_authority(authority: str) -> tuple[str, str | None]:
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise refused()
        host_text, after = authority[: close + 1], authority[close + 1 :]
        if not after:
            return host_text, None
        if not after.startswith(":"):
            raise refused()
        return host_text, after[1:]
    if authority.count(":") > 1:
        raise refused()
    host_text, colon, port_text = authority.partition(":")
    return host_text, port_text if colon else None


@functools.lru_cache(maxsize=256)
def _normalise_host(host_text: str) -> tuple[str, IPAddress | None]:
    # Cached: a pure function of its text (the IDNA tables are fixed), and a backup asks for
    # the same host thousands of times. Refusals raise, and are never cached.
    if host_text.startswith("["):
        try:
            ipv6 = ipaddress.IPv6Address(host_text[1:-1])
        except ValueError:
            raise refused() from None
        return str(ipv6), ipv6
    try:
        # UTS 46 mapping first: it folds case and turns fullwidth digits and ideographic dots
        # into ASCII, so numeric forms are caught whatever script they were written in.
        mapped = idna.uts46_remap(host_text, std3_rules=True, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise refused() from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    labels = mapped.split(".")
    if not mapped or len(mapped) > 253:
        raise refused()
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # No DNS name ends in a numeric label; a C resolver reads the whole host as IPv4.
        ipv4 = ipv4_from_inet_aton(mapped)
        if ipv4 is None or str(ipv4) != mapped:
            # Non-canonical numeric forms (2130706433, 0177.0.0.1, 0x7f.1, 127.1) exist only
            # to slip past filters: refused whatever address they denote.
            raise refused()
        return mapped, ipv4
    try:
        ascii_host = idna.encode(mapped, uts46=False, std3_rules=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise refused() from None
    if not all(_LDH_LABEL.fullmatch(label) for label in ascii_host.split(".")):
        raise refused()
    return ascii_host, None


def ipv4_from_inet_aton(text: str) -> ipaddress.IPv4Address | None:
    """The address a C resolver's inet_aton() reads from `text`, or None if it reads none.

    One to four parts, each decimal, octal (leading 0) or hex (0x); the last part fills the
    remaining bytes: `127.1` is 127.0.0.1 and `2130706433` is 127.0.0.1 too.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values: list[int] = []
    for part in parts:
        value = _inet_aton_part(part)
        if value is None:
            return None
        values.append(value)
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (4 - len(leading))):
        return None
    number = last
    for index, value in enumerate(leading):
        number |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _inet_aton_part(part: str) -> int | None:
    # Regexes, not int() alone: int() also takes signs, spaces and underscores.
    lowered = part.lower()
    if _HEX_PART.fullmatch(lowered):
        return int(lowered[2:] or "0", 16)
    if _OCTAL_PART.fullmatch(lowered):
        return int(lowered, 8)
    if _DECIMAL_PART.fullmatch(lowered):
        return int(lowered, 10)
    return None
