"""Platform items, which belong to no org: OAuth state, webhook event ids, schedules, per-user
counters.

    platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
    platform.create("WEBHOOK_EVENT", event_digest, attributes={}, ttl=timedelta(days=3), now=now)
    state = platform.consume("OAUTH_STATE", state_digest, now=now)      # once only

Keys are pk = "<KIND>#<id>", sk = "<KIND>". Kinds are upper case, so no platform pk ever starts
with `org_` and IAM can tell the two apart with `dynamodb:LeadingKeys` (for example
`OAUTH_STATE#*`). A platform item may also appear in a platform gsi1 partition, whose name
starts with an upper-case kind too (`BACKUP_DUE#3`), never with `org_`: a cross-org index that
is read with a Query, never a Scan. Ids are stored as given: for a bearer value (OAuth state,
a nonce) pass a digest of it, never the value itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.tenancy.exceptions import InvalidKey, ItemNotFound
from strongroom.tenancy.items import IndexKey, Item, epoch_seconds, expiry_of, item_from_raw
from strongroom.tenancy.keys import platform_key, validate_index_value, validate_kind
from strongroom.tenancy.store import (
    Expression,
    Store,
    Write,
    prepare_delete,
    prepare_increment,
    prepare_put,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


class PlatformTable:
    """Items of no org, with the same conditional put, TTL and consume-once primitives."""

    def __init__(self, *, dynamodb: DynamoDBClient, table_name: str) -> None:
        self._store = Store(dynamodb=dynamodb, table_name=table_name)

    def get(self, kind: str, item_id: str, *, now: datetime) -> Item:
        """The live item; ItemNotFound if it is absent or expired."""
        pk, sk = platform_key(kind, item_id)
        raw = self._store.get({"pk": pk, "sk": sk}, now_epoch=epoch_seconds(now))
        if raw is None:
            raise ItemNotFound("no such item")
        return item_from_raw(raw, sort_key=pk)

    def create(
        self,
        kind: str,
        item_id: str,
        *,
        attributes: Mapping[str, Any],
        now: datetime,
        ttl: timedelta | None = None,
    ) -> Item:
        """Create the item; ItemExists if a live one is there (a replayed webhook id, say)."""
        return self._put(kind, item_id, attributes, now=now, ttl=ttl, only_if_absent=True)

    def put(
        self,
        kind: str,
        item_id: str,
        *,
        attributes: Mapping[str, Any],
        now: datetime,
        ttl: timedelta | None = None,
        index: IndexKey | None = None,
        expect: Mapping[str, Any] | None = None,
    ) -> Item:
        """Create or wholly replace the item; with `index`, list it in that platform partition.

        With `expect`, only a live item holding those values is replaced (ItemNotFound or
        ConditionFailed otherwise): a compare-and-swap for items whose index entry moves.
        """
        return self._put(
            kind,
            item_id,
            attributes,
            now=now,
            ttl=ttl,
            only_if_absent=False,
            index=index,
            expect=expect,
        )

    def query_index(
        self,
        partition: str,
        *,
        now: datetime,
        sort_at_most: str,
        limit: int = 100,
        start: Mapping[str, str] | None = None,
    ) -> tuple[tuple[Item, ...], dict[str, str] | None]:
        """Live items of a platform gsi1 partition whose sort value is <= `sort_at_most`,
        in sort order, and the key to continue from (None: nothing more).

        gsi1 is eventually consistent: callers re-read an item before acting on it.
        """
        partition = _platform_partition(partition)
        expression = Expression()
        key_condition = (
            f"{expression.name('gsi1pk')} = {expression.value(partition)}"
            f" AND {expression.name('gsi1sk')} <= "
            f"{expression.value(validate_index_value(sort_at_most))}"
        )
        raws, last = self._store.query(
            key_condition=key_condition,
            expression=expression,
            now_epoch=epoch_seconds(now),
            limit=limit,
            start_key={name: {"S": value} for name, value in start.items()} if start else None,
            newest_first=False,
            index_name="gsi1",
        )
        items = tuple(item_from_raw(raw, sort_key=raw["pk"]["S"]) for raw in raws)
        cursor = {name: value["S"] for name, value in last.items()} if last else None
        return items, cursor

    def increment(
        self,
        kind: str,
        item_id: str,
        *,
        attribute: str,
        now: datetime,
        by: int = 1,
        ceiling: int | None = None,
    ) -> int:
        """Add `by` to a counter and return its new value; LimitReached past `ceiling` or
        below 0. A missing item is created holding the counter (a per-user allowance, say)."""
        pk, sk = platform_key(kind, item_id)
        write = prepare_increment(
            self._store.table, {"pk": pk, "sk": sk}, attribute=attribute, by=by, ceiling=ceiling
        )
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="UPDATED_NEW")
        return int((raw or {})[attribute]["N"])

    def consume(self, kind: str, item_id: str, *, now: datetime) -> Item:
        """Delete the live item and return it, once: a second consume gets ItemNotFound."""
        write = self._delete(kind, item_id, now=now, must_exist=True)
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="ALL_OLD")
        return item_from_raw(raw or {}, sort_key=write.key[0])

    def delete(
        self,
        kind: str,
        item_id: str,
        *,
        now: datetime,
        expect: Mapping[str, Any] | None = None,
    ) -> None:
        """Delete the item if it is there; with `expect`, only a live item holding those values
        (ItemNotFound or ConditionFailed otherwise)."""
        pk, sk = platform_key(kind, item_id)
        write = prepare_delete(
            self._store.table, {"pk": pk, "sk": sk}, expect=expect, now_epoch=epoch_seconds(now)
        )
        self._store.write(write, now_epoch=epoch_seconds(now))

    def _put(
        self,
        kind: str,
        item_id: str,
        attributes: Mapping[str, Any],
        *,
        now: datetime,
        ttl: timedelta | None,
        only_if_absent: bool,
        index: IndexKey | None = None,
        expect: Mapping[str, Any] | None = None,
    ) -> Item:
        pk, sk = platform_key(kind, item_id)
        now_epoch = epoch_seconds(now)
        write = prepare_put(
            self._store.table,
            {"pk": pk, "sk": sk},
            attributes,
            now_epoch=now_epoch,
            expires_at=expiry_of(now, ttl) if ttl is not None else None,
            index=(
                (_platform_partition(index.partition), validate_index_value(index.sort))
                if index is not None
                else None
            ),
            only_if_absent=only_if_absent,
        )
        if expect is not None:
            expression = Expression()
            condition = [expression.exists_live(now_epoch), *expression.expected(expect)]
            params = dict(write.params)
            params["ConditionExpression"] = " AND ".join(condition)
            params.update(expression.params())
            write = replace(write, params=params, failure="absent_or_mismatch")
        self._store.write(write, now_epoch=now_epoch)
        return item_from_raw(write.params["Item"], sort_key=pk)

    def _delete(self, kind: str, item_id: str, *, now: datetime, must_exist: bool) -> Write:
        pk, sk = platform_key(kind, item_id)
        return prepare_delete(
            self._store.table,
            {"pk": pk, "sk": sk},
            expect={} if must_exist else None,
            now_epoch=epoch_seconds(now),
        )


def _platform_partition(partition: str) -> str:
    """A platform gsi1 partition: `<KIND>#<name>`, so it can never read as an org's partition."""
    kind, separator, name = validate_index_value(partition).partition("#")
    if not separator or not name:
        raise InvalidKey("platform index partitions are <KIND>#<name>")
    validate_kind(kind, tenant=False)
    return partition
