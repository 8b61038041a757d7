"""Helpers for tests that talk to a sandbox Okta: a client session, a pager, a settable clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests


def okta_session(token: str, scheme: str = "SSWS") -> requests.Session:
    """A session that sends `Authorization: <scheme> <token>` and never uses a proxy."""
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"{scheme} {token}"
    return session


@dataclass
class Walk:
    """Every page of one listing, followed through `rel="next"` exactly as given."""

    items: list[Any] = field(default_factory=list)
    responses: list[requests.Response] = field(default_factory=list)

    @property
    def pages(self) -> int:
        return len(self.responses)

    @property
    def next_urls(self) -> list[str]:
        return [r.links["next"]["url"] for r in self.responses if "next" in r.links]


def walk(session: requests.Session, url: str, *, envelope: str | None = None) -> Walk:
    """GET `url`, then each `next` link until there is none; fail on any non-200."""
    result = Walk()
    target: str | None = url
    while target is not None:
        response = session.get(target, timeout=30)
        assert response.status_code == 200, (target, response.status_code, response.text)
        document = response.json()
        result.items.extend(document[envelope] if envelope else document)
        result.responses.append(response)
        target = response.links.get("next", {}).get("url")
        assert len(result.responses) < 10_000, "pagination does not end"
    return result


class FakeClock:
    """Epoch seconds that only move when a test moves them."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
