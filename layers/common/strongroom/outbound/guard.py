"""The destination guard: which URLs may be requested and which addresses connected to.

Every hop of every request goes through `admit` (scheme, host and port) and `resolve_checked`
(one lookup, every answer checked, one address chosen to connect to). `check_url` runs both at
configuration time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias

from strongroom.outbound.addresses import IPAddress, is_forbidden_address
from strongroom.outbound.urls import Target, parse_target, refused
from strongroom.plain_urls import is_loopback_address

Resolver: TypeAlias = Callable[[str, int], Sequence[str]]
"""`(host, port) -> addresses`: the one name lookup of a hop. Raises OSError if it fails."""

AddressCheck: TypeAlias = Callable[[IPAddress], bool]
"""`ip -> forbidden?`; `is_forbidden_address` unless a test widens it explicitly."""

AllowHosts: TypeAlias = frozenset[tuple[str, int]]

# Names that never denote a public host: RFC 6761/6762 special-use, ICANN's private-use
# .internal (cloud metadata lives there), and common private search domains.
_PRIVATE_SUFFIXES = ("localhost", "local", "internal", "localdomain", "home.arpa", "invalid")


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve `host` with the system resolver (getaddrinfo), TCP answers only, in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def normalise_allow_hosts(entries: Iterable[tuple[str, int]]) -> AllowHosts:
    """Validate dev allow-list entries (`localhost` or a loopback literal, and a port).

    Raises ValueError for anything else: the allow-list exists for the local stack and tests,
    and a non-loopback entry would be a hole in the guard.
    """
    normalised: set[tuple[str, int]] = set()
    for host, port in entries:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError("allow-list port out of range")
        name = host.strip("[]").lower().rstrip(".")
        if name != "localhost":
            try:
                address = ipaddress.ip_address(name)
            except ValueError:
                raise ValueError(
                    "allow-list host must be localhost or a loopback address"
                ) from None
            if not is_loopback_address(address):
                raise ValueError("allow-list host must be a loopback address")
            name = str(address)
        normalised.add((name, port))
    return frozenset(normalised)


def is_allow_listed(target: Target, allow_hosts: AllowHosts) -> bool:
    """True if `target` names a dev allow-list entry exactly (host and port)."""
    return (target.host, target.port) in allow_hosts


def admit(target: Target, allow_hosts: AllowHosts) -> None:
    """Refuse a target by its scheme, name and literal address (before any lookup)."""
    if is_allow_listed(target, allow_hosts):
        return
    if target.scheme != "https":
        raise refused()
    if target.address is not None:
        return  # checked with the resolved addresses, by the same rule
    # A single-label name is completed by the resolver's search domains (`metadata`,
    # `instance-data`), and special-use names never denote a public host.
    if "." not in target.host:
        raise refused()
    if any(
        target.host == suffix or target.host.endswith("." + suffix) for suffix in _PRIVATE_SUFFIXES
    ):
        raise refused()


def resolve_checked(
    target: Target,
    *,
    allow_hosts: AllowHosts,
    resolver: Resolver,
    is_forbidden: AddressCheck,
) -> tuple[IPAddress, ...]:
    """Look `target` up once, check every answer, and return the addresses to connect to.

    An IP literal is not looked up. Every answer must pass (one forbidden answer refuses the
    lot: it says the name is not what it claims). OSError from the resolver propagates; a
    refusal raises DestinationRefused.
    """
    admit(target, allow_hosts)
    if target.address is not None:
        answers: Sequence[str | IPAddress] = [target.address]
    else:
        answers = resolver(target.host, target.port)
    if not answers:
        raise refused()
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            address = answer if not isinstance(answer, str) else ipaddress.ip_address(answer)
        except ValueError:
            raise refused() from None
        addresses.append(address)
    if is_allow_listed(target, allow_hosts):
        if not all(is_loopback_address(address) for address in addresses):
            raise refused()
    elif any(is_forbidden(address) for address in addresses):
        raise refused()
    return tuple(addresses)


def check_url(
    url: str,
    allow_hosts: Iterable[tuple[str, int]] = frozenset(),
    *,
    resolver: Resolver = system_resolver,
    is_forbidden: AddressCheck = is_forbidden_address,
) -> str:
    """Check `url` now, as the client would, and return its normalised form.

    For configuration time (an `oauth2` connection's endpoint URLs): the client checks again at
    every use, since DNS answers change. A name that does not resolve is refused too.
    Raises DestinationRefused.
    """
    target = parse_target(url)
    try:
        resolve_checked(
            target,
            allow_hosts=normalise_allow_hosts(allow_hosts),
            resolver=resolver,
            is_forbidden=is_forbidden,
        )
    except OSError:
        raise refused() from None
    return target.url
