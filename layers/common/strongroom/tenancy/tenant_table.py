"""The repository of tenant items: every call names its org, and keys are built from it.

    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    table.create(org_id, "MEMBER", user_id, attributes={"role": "owner"}, now=now)
    member = table.get(org_id, "MEMBER", user_id, now=now)
    table.update(org_id, "ORG", changes={"name": "Acme", "version": 3}, expect={"version": 2},
                 now=now)
    page = table.query(org_id, "CONN", limit=50, cursor=request_cursor, now=now)

Callers never pass a pk or sk. There is no Scan: every read is a GetItem or a Query within
the org's partition (or the org's own gsi1 partitions).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from strongroom.tenancy.cursors import decode_cursor, encode_cursor
from strongroom.tenancy.exceptions import InvalidCursor, ItemNotFound
from strongroom.tenancy.items import (
    IndexKey,
    Item,
    Page,
    epoch_seconds,
    expiry_of,
    item_from_raw,
)
from strongroom.tenancy.keys import (
    tenant_index_partition,
    tenant_kind_prefix,
    tenant_sort_key,
    validate_index_value,
    validate_org_id,
)
from strongroom.tenancy.store import (
    Expression,
    Store,
    Write,
    prepare_check,
    prepare_delete,
    prepare_increment,
    prepare_put,
    prepare_update,
    transaction_items,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

GSI1 = "gsi1"
_EMPTY: Mapping[str, Any] = MappingProxyType({})
_BASE_KEY = frozenset({"pk", "sk"})
_INDEX_KEY = frozenset({"pk", "sk", "gsi1pk", "gsi1sk"})


@dataclass(frozen=True, slots=True)
class Create:
    """Create an item; fails with ItemExists if a live one is there."""

    kind: str
    item_id: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ttl: timedelta | None = None
    index: IndexKey | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """Set/remove attributes of a live item holding `expect`; ItemNotFound or ConditionFailed.

    `ttl` moves the item's expiry to `now + ttl` (a lease its holder keeps alive).
    """

    kind: str
    item_id: str | None = None
    changes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    remove: Collection[str] = ()
    expect: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ttl: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete an item; with `expect` (even empty) it must be live and hold those values."""

    kind: str
    item_id: str | None = None
    expect: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Increment:
    """Add `by` to a counter attribute (absent counts as 0); LimitReached past `ceiling` or 0.

    `ttl` gives an item the increment creates an expiry of `now + ttl` (a counter per period).
    `expect`, as Update's (None: absent), must hold too (ConditionFailed): a transaction touches
    each item once, so a counter's item is guarded by its increment, not by a Check beside it.
    """

    kind: str
    item_id: str | None = None
    attribute: str = "count"
    by: int = 1
    ceiling: int | None = None
    ttl: timedelta | None = None
    expect: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)


@dataclass(frozen=True, slots=True)
class Check:
    """Write nothing, but only if the live item holds `expect` and, for each attribute of
    `one_of`, one of its values (ItemNotFound or ConditionFailed): a transaction's guard on an
    item it does not change."""

    kind: str
    item_id: str | None = None
    expect: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    one_of: Mapping[str, Collection[Any]] = field(default_factory=lambda: _EMPTY)


Operation = Create | Update | Delete | Increment | Check


class TenantTable:
    """Tenant items of the one table, always scoped by a required org id."""

    def __init__(self, *, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._store = Store(dynamodb=dynamodb, table_name=table_name)

    # ---- single items ---------------------------------------------------------------------

    def get(self, org_id: str, kind: str, item_id: str | None = None, *, now: datetime) -> Item:
        """The live item; ItemNotFound if it is absent or expired."""
        sk = tenant_sort_key(kind, item_id)
        raw = self._store.get(_key(org_id, sk), now_epoch=epoch_seconds(now))
        if raw is None:
            raise ItemNotFound("no such item")
        return item_from_raw(raw, sort_key=sk)

    def create(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        attributes: Mapping[str, Any],
        now: datetime,
        ttl: timedelta | None = None,
        index: IndexKey | None = None,
    ) -> Item:
        """Create the item (an expired one counts as absent); ItemExists if a live one is there.

        With `ttl`, `expires_at` is `now + ttl` and reads treat the item as absent from then on.
        """
        operation = Create(kind, item_id, attributes, ttl, index)
        write = self._prepare(org_id, operation, now)
        self._store.write(write, now_epoch=epoch_seconds(now))
        return item_from_raw(write.params["Item"], sort_key=write.key[1])

    def put(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        attributes: Mapping[str, Any],
        now: datetime,
        ttl: timedelta | None = None,
        index: IndexKey | None = None,
    ) -> Item:
        """Create or wholly replace the item, unconditionally."""
        sk = tenant_sort_key(kind, item_id)
        write = prepare_put(
            self._store.table,
            _key(org_id, sk),
            attributes,
            now_epoch=epoch_seconds(now),
            expires_at=expiry_of(now, ttl) if ttl is not None else None,
            index=_index(org_id, index),
            only_if_absent=False,
        )
        self._store.write(write, now_epoch=epoch_seconds(now))
        return item_from_raw(write.params["Item"], sort_key=sk)

    def update(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        now: datetime,
        changes: Mapping[str, Any] = _EMPTY,
        remove: Collection[str] = (),
        expect: Mapping[str, Any] = _EMPTY,
        ttl: timedelta | None = None,
    ) -> Item:
        """Set `changes` and drop `remove` on the live item if it holds `expect` (None: absent);
        with `ttl`, its expiry moves to `now + ttl`.

        ItemNotFound if the item is absent or expired, ConditionFailed if an expectation does
        not hold (for optimistic locking: expect={"version": read_version}).
        """
        operation = Update(kind, item_id, changes, remove, expect, ttl)
        write = self._prepare(org_id, operation, now)
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="ALL_NEW")
        return item_from_raw(raw or {}, sort_key=write.key[1])

    def delete(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        now: datetime,
        expect: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete the item. Without `expect` a missing item is fine; with it (even `{}`), the
        item must be live (else ItemNotFound) and hold those values (else ConditionFailed)."""
        write = self._prepare(org_id, Delete(kind, item_id, expect), now)
        self._store.write(write, now_epoch=epoch_seconds(now))

    def consume(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        now: datetime,
        expect: Mapping[str, Any] = _EMPTY,
    ) -> Item:
        """Delete the live item and return it, once: a second consume gets ItemNotFound.

        With `expect`, only an item holding those values is consumed (else ConditionFailed, and
        the item stays).
        """
        write = self._prepare(org_id, Delete(kind, item_id, expect=dict(expect)), now)
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="ALL_OLD")
        return item_from_raw(raw or {}, sort_key=write.key[1])

    def increment(
        self,
        org_id: str,
        kind: str,
        item_id: str | None = None,
        *,
        attribute: str,
        now: datetime,
        by: int = 1,
        ceiling: int | None = None,
        ttl: timedelta | None = None,
    ) -> int:
        """Add `by` to a counter and return its new value; LimitReached past `ceiling` or below 0.

        A missing item is created holding the counter. Counters usually live on items without a
        TTL; with `ttl`, a created item expires at `now + ttl` (a counter of one period, whose
        key names the period, so that the next period starts a new item).
        """
        operation = Increment(kind, item_id, attribute, by, ceiling, ttl)
        write = self._prepare(org_id, operation, now)
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="UPDATED_NEW")
        return int((raw or {})[attribute]["N"])

    def transact(self, org_id: str, operations: Sequence[Operation], *, now: datetime) -> None:
        """Apply all operations or none (at most 100, each item once), within one org.

        The first operation whose condition fails decides the error, as its single form would:
        ItemExists, ItemNotFound, ConditionFailed or LimitReached.
        """
        writes = [self._prepare(org_id, operation, now) for operation in operations]
        self._store.transact(writes, now_epoch=epoch_seconds(now))

    def transaction_items(
        self, org_id: str, operations: Sequence[Operation], *, now: datetime
    ) -> list[Any]:
        """The raw TransactItems of `operations` within the org, for a transaction another
        repository sends (a DEK rotation with its audit entry): the same keys and conditions
        as `transact` would send, but a failed condition there is that repository's to read."""
        return transaction_items(
            [self._prepare(org_id, operation, now) for operation in operations]
        )

    # ---- listings -------------------------------------------------------------------------

    def query(
        self,
        org_id: str,
        kind: str,
        *,
        now: datetime,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page:
        """Live items of `kind` in the org, by sort key (item id); `newest_first` reverses it.

        Item ids that sort by time (ULID-like) make sort-key order creation order; otherwise list
        through gsi1 with a timestamp sort value. Singletons of the kind are not listed.
        """
        prefix = tenant_kind_prefix(kind)
        listing = _listing("kind", kind, "desc" if newest_first else "asc")
        return self._query_partition(
            org_id,
            listing,
            sk_prefix=prefix,
            now=now,
            limit=limit,
            cursor=cursor,
            newest_first=newest_first,
        )

    def query_partition(
        self, org_id: str, *, now: datetime, limit: int = 100, cursor: str | None = None
    ) -> Page:
        """Live items of every kind in the org's partition, by sort key, singletons and the
        kinds strongroom.crypto owns included: what an org's deletion must remove."""
        return self._query_partition(
            org_id, _listing("partition"), sk_prefix=None, now=now, limit=limit, cursor=cursor
        )

    def _query_partition(
        self,
        org_id: str,
        listing: str,
        *,
        sk_prefix: str | None,
        now: datetime,
        limit: int,
        cursor: str | None,
        newest_first: bool = False,
    ) -> Page:
        """A page of the org's partition (sort keys starting with `sk_prefix`, or all); a cursor
        must be this listing's, of this org, within that prefix."""
        org_id = validate_org_id(org_id)
        start = None
        if cursor is not None:
            key = decode_cursor(cursor, org_id=org_id, listing=listing, key_names=_BASE_KEY)
            if key["pk"] != org_id or not key["sk"].startswith(sk_prefix or ""):
                raise InvalidCursor("the cursor belongs to another listing")
            start = {name: {"S": value} for name, value in key.items()}
        expression = Expression()
        key_condition = f"{expression.name('pk')} = {expression.value(org_id)}"
        if sk_prefix is not None:
            sk_name = expression.name("sk")
            key_condition += f" AND begins_with({sk_name}, {expression.value(sk_prefix)})"
        raws, last = self._store.query(
            key_condition=key_condition,
            expression=expression,
            now_epoch=epoch_seconds(now),
            limit=limit,
            start_key=start,
            newest_first=newest_first,
        )
        return _page(org_id, listing, raws, last)

    def query_index(
        self,
        org_id: str,
        partition: str,
        *,
        now: datetime,
        limit: int = 50,
        cursor: str | None = None,
        newest_first: bool = False,
        sort_prefix: str | None = None,
    ) -> Page:
        """Live items of the org's gsi1 `partition`, by sort value (`newest_first` reverses it).

        gsi1 is eventually consistent: an item written just now may not be listed yet.
        """
        index_pk = tenant_index_partition(org_id, partition)
        listing = _listing("gsi1", partition, sort_prefix or "", "desc" if newest_first else "asc")
        start = None
        if cursor is not None:
            key = decode_cursor(cursor, org_id=org_id, listing=listing, key_names=_INDEX_KEY)
            if key["pk"] != org_id or key["gsi1pk"] != index_pk:
                raise InvalidCursor("the cursor belongs to another listing")
            start = {name: {"S": value} for name, value in key.items()}
        expression = Expression()
        key_condition = f"{expression.name('gsi1pk')} = {expression.value(index_pk)}"
        if sort_prefix is not None:
            prefix = validate_index_value(sort_prefix)
            sk_name = expression.name("gsi1sk")
            key_condition += f" AND begins_with({sk_name}, {expression.value(prefix)})"
        raws, last = self._store.query(
            key_condition=key_condition,
            expression=expression,
            now_epoch=epoch_seconds(now),
            limit=limit,
            start_key=start,
            newest_first=newest_first,
            index_name=GSI1,
        )
        # gsi1pk already starts with the org id; checking pk too keeps the scope explicit.
        own = [raw for raw in raws if raw.get("pk", {}).get("S") == org_id]
        return _page(org_id, listing, own, last)

    # ---- preparation ----------------------------------------------------------------------

    def _prepare(self, org_id: str, operation: Operation, now: datetime) -> Write:
        key = _key(org_id, tenant_sort_key(operation.kind, operation.item_id))
        now_epoch = epoch_seconds(now)
        table = self._store.table
        if isinstance(operation, Create):
            ttl = operation.ttl
            return prepare_put(
                table,
                key,
                operation.attributes,
                now_epoch=now_epoch,
                expires_at=expiry_of(now, ttl) if ttl is not None else None,
                index=_index(org_id, operation.index),
                only_if_absent=True,
            )
        if isinstance(operation, Update):
            return prepare_update(
                table,
                key,
                changes=operation.changes,
                remove=operation.remove,
                expect=operation.expect,
                now_epoch=now_epoch,
                expires_at=expiry_of(now, operation.ttl) if operation.ttl is not None else None,
            )
        if isinstance(operation, Delete):
            return prepare_delete(table, key, expect=operation.expect, now_epoch=now_epoch)
        if isinstance(operation, Increment):
            return prepare_increment(
                table,
                key,
                attribute=operation.attribute,
                by=operation.by,
                ceiling=operation.ceiling,
                expires_at=expiry_of(now, operation.ttl) if operation.ttl is not None else None,
                expect=operation.expect,
            )
        if isinstance(operation, Check):
            return prepare_check(
                table, key, expect=operation.expect, one_of=operation.one_of, now_epoch=now_epoch
            )
        raise TypeError("operations are Create, Update, Delete, Increment or Check")


def _key(org_id: str, sk: str) -> dict[str, str]:
    return {"pk": validate_org_id(org_id), "sk": sk}


def _index(org_id: str, index: IndexKey | None) -> tuple[str, str] | None:
    if index is None:
        return None
    return tenant_index_partition(org_id, index.partition), validate_index_value(index.sort)


def _listing(*parts: str) -> str:
    # Kinds and index values are visible ASCII, so a space separates them unambiguously.
    return " ".join(parts)


def _page(
    org_id: str, listing: str, raws: list[dict[str, Any]], last: dict[str, Any] | None
) -> Page:
    items = tuple(item_from_raw(raw, sort_key=raw["sk"]["S"]) for raw in raws)
    cursor = encode_cursor(org_id=org_id, listing=listing, key=last) if last else None
    return Page(items=items, cursor=cursor)
