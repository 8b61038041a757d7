"""Platform items, which belong to no org: OAuth state, webhook event ids, schedules.

    platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
    platform.create("WEBHOOK_EVENT", event_digest, attributes={}, ttl=timedelta(days=3), now=now)
    state = platform.consume("OAUTH_STATE", state_digest, now=now)      # once only

Keys are pk = "<KIND>#<id>", sk = "<KIND>". Kinds are upper case, so no platform pk ever starts
with `org_` and IAM can tell the two apart with `dynamodb:LeadingKeys` (for example
`OAUTH_STATE#*`). Ids are stored as given: for a bearer value (OAuth state, a nonce) pass a
digest of it, never the value itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from strongroom.tenancy.exceptions import ItemNotFound
from strongroom.tenancy.items import Item, epoch_seconds, expiry_of, item_from_raw
from strongroom.tenancy.keys import platform_key
from strongroom.tenancy.store import Store, Write, prepare_delete, prepare_put

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
    ) -> Item:
        """Create or wholly replace the item, unconditionally."""
        return self._put(kind, item_id, attributes, now=now, ttl=ttl, only_if_absent=False)

    def consume(self, kind: str, item_id: str, *, now: datetime) -> Item:
        """Delete the live item and return it, once: a second consume gets ItemNotFound."""
        write = self._delete(kind, item_id, now=now, must_exist=True)
        raw = self._store.write(write, now_epoch=epoch_seconds(now), return_values="ALL_OLD")
        return item_from_raw(raw or {}, sort_key=write.key[0])

    def delete(self, kind: str, item_id: str, *, now: datetime) -> None:
        """Delete the item if it is there."""
        write = self._delete(kind, item_id, now=now, must_exist=False)
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
    ) -> Item:
        pk, sk = platform_key(kind, item_id)
        write = prepare_put(
            self._store.table,
            {"pk": pk, "sk": sk},
            attributes,
            now_epoch=epoch_seconds(now),
            expires_at=expiry_of(now, ttl) if ttl is not None else None,
            index=None,
            only_if_absent=only_if_absent,
        )
        self._store.write(write, now_epoch=epoch_seconds(now))
        return item_from_raw(write.params["Item"], sort_key=pk)

    def _delete(self, kind: str, item_id: str, *, now: datetime, must_exist: bool) -> Write:
        pk, sk = platform_key(kind, item_id)
        return prepare_delete(
            self._store.table,
            {"pk": pk, "sk": sk},
            expect={} if must_exist else None,
            now_epoch=epoch_seconds(now),
        )
