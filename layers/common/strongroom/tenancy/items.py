"""What the repositories hand back: items and pages, and the attribute codec behind them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from strongroom.tenancy.keys import KEY_ATTRIBUTES, split_sort_key, validate_attribute_name


@dataclass(frozen=True, slots=True)
class IndexKey:
    """Where an item appears in gsi1 within its org: a partition name and a sort value.

    The stored gsi1pk is `<org_id>#<partition>`, so an org's index partitions never meet
    another org's. Sort values order the listing (ISO-8601 timestamps sort by time).
    """

    partition: str
    sort: str


@dataclass(frozen=True, slots=True)
class Item:
    """One stored item: its kind and id (None for a singleton), its attributes, its expiry."""

    kind: str
    item_id: str | None
    attributes: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; `cursor` continues it (None: nothing more)."""

    items: tuple[Item, ...]
    cursor: str | None


def every_item(page: Callable[[str | None], Page]) -> Iterator[Item]:
    """Every item of a paged listing, one page at a time: `page(cursor)` reads a page (the
    first with cursor None), until one comes back without a cursor."""
    cursor: str | None = None
    while True:
        current = page(cursor)
        yield from current.items
        cursor = current.cursor
        if cursor is None:
            return


class _Deserializer(TypeDeserializer):
    # Numbers come back as int when integral: every number we write is an int or a Decimal.
    def _deserialize_n(self, value: str) -> int | Decimal:
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else number

    # Binary comes back as bytes, not boto3's Binary wrapper: sealed values open only from
    # exactly `bytes` (strongroom.crypto), and bytes is what was written.
    def _deserialize_b(self, value: bytes) -> bytes:
        return bytes(value)


_SERIALIZER = TypeSerializer()
_DESERIALIZER = _Deserializer()


def epoch_seconds(now: datetime) -> int:
    """`now` as whole epoch seconds; naive datetimes are refused (their zone is a guess)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def expiry_of(now: datetime, ttl: timedelta) -> int:
    """The `expires_at` of an item written at `now` that lives for `ttl`."""
    if ttl <= timedelta(0):
        raise ValueError("ttl must be positive")
    return epoch_seconds(now + ttl)


def serialize_value(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB AttributeValue (floats are refused: use int or Decimal)."""
    return dict(_SERIALIZER.serialize(value))


def serialize_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Caller attributes as an AttributeValue map; key attribute names are refused."""
    return {validate_attribute_name(name): serialize_value(v) for name, v in attributes.items()}


def deserialize_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An AttributeValue map as plain Python values."""
    return {name: _DESERIALIZER.deserialize(value) for name, value in raw.items()}


def is_expired(raw: Mapping[str, Any], now_epoch: int) -> bool:
    """Whether a raw item is past its `expires_at` (TTL deletion lags by up to days)."""
    expires = raw.get("expires_at")
    if expires is None or "N" not in expires:
        return False
    return int(Decimal(expires["N"])) <= now_epoch


def item_from_raw(raw: Mapping[str, Any], *, sort_key: str) -> Item:
    """An `Item` from a raw item whose sort key (tenant sk or platform kind#id) is `sort_key`."""
    values = deserialize_item(raw)
    expires = values.get("expires_at")
    attributes = {name: v for name, v in values.items() if name not in KEY_ATTRIBUTES}
    kind, item_id = split_sort_key(sort_key)
    return Item(
        kind=kind,
        item_id=item_id,
        attributes=MappingProxyType(attributes),
        expires_at=int(expires) if expires is not None else None,
    )
