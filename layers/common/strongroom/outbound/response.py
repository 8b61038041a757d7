"""The client's response: small, immutable, fully read, and quiet in logs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from strongroom.outbound.exceptions import MalformedResponse


class ResponseHeaders(Mapping[str, str]):
    """Case-insensitive, read-only response headers.

    A repeated header (Okta sends one `Link` per relation) reads as its values joined by ", ",
    as HTTP allows; `get_all` gives them one by one. The repr names no value.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        grouped: dict[str, tuple[str, list[str]]] = {}
        for name, value in fields:
            grouped.setdefault(name.lower(), (name, []))[1].append(value)
        self._fields = {key: (name, tuple(values)) for key, (name, values) in grouped.items()}

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._fields[name.lower()][1])

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._fields.values())

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._fields

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of `name`, in the order received; empty if absent."""
        entry = self._fields.get(name.lower())
        return entry[1] if entry else ()

    def __repr__(self) -> str:
        return f"ResponseHeaders({sorted(self._fields)})"


@dataclass(frozen=True, repr=False)
class OutboundResponse:
    """A provider's final response (after redirects). The repr shows only the status."""

    status: int
    headers: ResponseHeaders
    body: bytes
    # The URL that answered, after redirects. It may hold a query with secrets: do not log it.
    url: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (invalid bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; MalformedResponse if it is not (never echoing the body)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, RecursionError):
            raise MalformedResponse("response body is not valid JSON") from None

    def __repr__(self) -> str:
        return f"OutboundResponse(status={self.status})"
