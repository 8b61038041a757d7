"""The one place that speaks DynamoDB for tenancy: expressions, conditions, calls, error mapping.

Repositories build keys and hand plain-string keys to these helpers; nothing here knows about
orgs. Every condition treats an item past its `expires_at` as absent, because DynamoDB's TTL
sweeper deletes expired items only eventually (typically within days).

The low-level client is used, not the resource: it is the client the rest of the layer injects
(crypto uses it too), it carries TransactWriteItems and ReturnValuesOnConditionCheckFailure, and
boto3's resource interface receives no new features.
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from strongroom.tenancy.exceptions import (
    ConditionFailed,
    ItemExists,
    ItemNotFound,
    LimitReached,
    StoreUnavailable,
    TenancyError,
    WriteConflict,
)
from strongroom.tenancy.items import (
    deserialize_item,
    is_expired,
    serialize_attributes,
    serialize_value,
)
from strongroom.tenancy.keys import validate_attribute_name

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

# A page whose items are mostly expired (not yet swept) takes a few reads to fill; past this
# many it is returned short, with a cursor, rather than reading on without bound.
_MAX_QUERY_ROUNDS = 5
_MAX_TRANSACTION_ITEMS = 100
_CONDITION_FAILED = "ConditionalCheckFailedException"
# Of two transactions under way on one item, DynamoDB cancels one this way: nothing of it was
# written, and the other may change what its conditions read. It is run again (its conditions
# checked anew), and WriteConflict if that lasts; another reason beside it (a throttle, a
# validation error) is an outage.
_CONFLICT = "TransactionConflict"
_CONFLICT_CODES = frozenset({_CONFLICT, "ConditionalCheckFailed", "None", None})
# A transaction cancelled for a conflict is run this many times in all, with a pause of at
# most this many seconds, doubling, between runs.
TRANSACTION_RUNS = 3
_CONFLICT_PAUSE_SECONDS = 0.04


def transaction_worst_case_seconds(call_seconds: float) -> float:
    """The longest Store.transact can take when each run's call takes `call_seconds`."""
    pauses = sum(_CONFLICT_PAUSE_SECONDS * 2.0**run for run in range(TRANSACTION_RUNS - 1))
    return TRANSACTION_RUNS * call_seconds + pauses


Failure = Literal["exists", "absent_or_mismatch", "limit"]
PlainKey = Mapping[str, str]


class Expression:
    """Placeholders for attribute names and values: no input is ever spliced into an expression."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        for placeholder, existing in self.names.items():
            if existing == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = serialize_value(value)
        return placeholder

    def live(self, now_epoch: int) -> str:
        expires = self.name("expires_at")
        return f"(attribute_not_exists({expires}) OR {expires} > {self.value(now_epoch)})"

    def exists_live(self, now_epoch: int) -> str:
        return f"attribute_exists({self.name('pk')}) AND {self.live(now_epoch)}"

    def absent_or_expired(self, now_epoch: int) -> str:
        expires = self.name("expires_at")
        return f"(attribute_not_exists({self.name('pk')}) OR {expires} <= {self.value(now_epoch)})"

    def expected(self, expect: Mapping[str, Any]) -> list[str]:
        """`name = value` for each expectation; None means the attribute must be absent."""
        clauses = []
        for attribute, value in expect.items():
            name = self.name(validate_attribute_name(attribute))
            if value is None:
                clauses.append(f"attribute_not_exists({name})")
            else:
                clauses.append(f"{name} = {self.value(value)}")
        return clauses

    def expected_one_of(self, allowed: Mapping[str, Collection[Any]]) -> list[str]:
        """`name IN (values)` for each attribute: it holds one of them."""
        clauses = []
        for attribute, values in allowed.items():
            if not values:
                raise ValueError("one_of needs at least one value per attribute")
            name = self.name(validate_attribute_name(attribute))
            clauses.append(f"{name} IN ({', '.join(self.value(value) for value in values)})")
        return clauses

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.names:
            params["ExpressionAttributeNames"] = dict(self.names)
        if self.values:
            params["ExpressionAttributeValues"] = dict(self.values)
        return params


@dataclass(frozen=True, slots=True)
class Write:
    """One prepared write: the TransactWriteItems action, its parameters, how it can fail."""

    action: Literal["Put", "Update", "Delete", "ConditionCheck"]
    params: dict[str, Any]
    failure: Failure | None
    # An increment's expectations: what tells its failed condition from its ceiling.
    expect: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        source = self.params["Item"] if self.action == "Put" else self.params["Key"]
        return source["pk"]["S"], source["sk"]["S"]


def _key(key: PlainKey) -> dict[str, Any]:
    return {"pk": {"S": key["pk"]}, "sk": {"S": key["sk"]}}


def prepare_put(
    table: str,
    key: PlainKey,
    attributes: Mapping[str, Any],
    *,
    now_epoch: int,
    expires_at: int | None,
    index: tuple[str, str] | None,
    only_if_absent: bool,
) -> Write:
    """A whole-item put; with `only_if_absent`, an existing live item makes it fail."""
    item = serialize_attributes(attributes)
    item.update(_key(key))
    if index is not None:
        item["gsi1pk"], item["gsi1sk"] = {"S": index[0]}, {"S": index[1]}
    if expires_at is not None:
        item["expires_at"] = {"N": str(expires_at)}
    params: dict[str, Any] = {"TableName": table, "Item": item}
    if not only_if_absent:
        return Write("Put", params, None)
    expression = Expression()
    params["ConditionExpression"] = expression.absent_or_expired(now_epoch)
    params.update(expression.params())
    return Write("Put", params, "exists")


def prepare_update(
    table: str,
    key: PlainKey,
    *,
    changes: Mapping[str, Any],
    remove: Collection[str],
    expect: Mapping[str, Any],
    now_epoch: int,
    expires_at: int | None = None,
) -> Write:
    """Set and remove attributes of a live item that holds the `expect`ed values; with
    `expires_at`, the item's expiry moves there (a lease kept alive)."""
    if not changes and not remove and expires_at is None:
        raise ValueError("an update needs at least one change or removal")
    if set(changes) & set(remove):
        raise ValueError("an attribute cannot be both changed and removed")
    expression = Expression()
    actions = []
    assignments = [
        f"{expression.name(validate_attribute_name(name))} = {expression.value(value)}"
        for name, value in changes.items()
    ]
    if expires_at is not None:
        assignments.append(f"{expression.name('expires_at')} = {expression.value(expires_at)}")
    if assignments:
        actions.append("SET " + ", ".join(assignments))
    if remove:
        removals = [expression.name(validate_attribute_name(name)) for name in remove]
        actions.append("REMOVE " + ", ".join(removals))
    condition = [expression.exists_live(now_epoch), *expression.expected(expect)]
    params: dict[str, Any] = {
        "TableName": table,
        "Key": _key(key),
        "UpdateExpression": " ".join(actions),
        "ConditionExpression": " AND ".join(condition),
    }
    params.update(expression.params())
    return Write("Update", params, "absent_or_mismatch")


def prepare_delete(
    table: str, key: PlainKey, *, expect: Mapping[str, Any] | None, now_epoch: int
) -> Write:
    """A delete; with `expect` (even empty) the item must be live and hold those values."""
    params: dict[str, Any] = {"TableName": table, "Key": _key(key)}
    if expect is None:
        return Write("Delete", params, None)
    expression = Expression()
    condition = [expression.exists_live(now_epoch), *expression.expected(expect)]
    params["ConditionExpression"] = " AND ".join(condition)
    params.update(expression.params())
    return Write("Delete", params, "absent_or_mismatch")


def prepare_check(
    table: str,
    key: PlainKey,
    *,
    expect: Mapping[str, Any],
    one_of: Mapping[str, Collection[Any]],
    now_epoch: int,
) -> Write:
    """A condition only (in a transaction): the item is live, holds `expect`, and holds one of
    the values `one_of` lists for each of its attributes."""
    expression = Expression()
    condition = [
        expression.exists_live(now_epoch),
        *expression.expected(expect),
        *expression.expected_one_of(one_of),
    ]
    params: dict[str, Any] = {
        "TableName": table,
        "Key": _key(key),
        "ConditionExpression": " AND ".join(condition),
    }
    params.update(expression.params())
    return Write("ConditionCheck", params, "absent_or_mismatch")


def prepare_increment(
    table: str,
    key: PlainKey,
    *,
    attribute: str,
    by: int,
    ceiling: int | None,
    expires_at: int | None = None,
    expect: Mapping[str, Any] | None = None,
) -> Write:
    """Add `by` to a counter (created at 0); it may not pass `ceiling` nor drop below zero.

    With `expires_at`, an item the increment creates gets that expiry (an existing one keeps
    its own): for counters of one period, whose key names the period. With `expect`, the item
    must hold those values too (None: absent; an absent item holds no value).
    """
    if isinstance(by, bool) or not isinstance(by, int) or by == 0:
        raise ValueError("by must be a non-zero int")
    if ceiling is not None and (isinstance(ceiling, bool) or not isinstance(ceiling, int)):
        raise ValueError("ceiling must be an int")
    expression = Expression()
    counter = expression.name(validate_attribute_name(attribute))
    update = (
        f"SET {counter} = if_not_exists({counter}, {expression.value(0)}) + {expression.value(by)}"
    )
    if expires_at is not None:
        expires = expression.name("expires_at")
        update += f", {expires} = if_not_exists({expires}, {expression.value(expires_at)})"
    params: dict[str, Any] = {
        "TableName": table,
        "Key": _key(key),
        "UpdateExpression": update,
    }
    condition = []
    if by < 0:
        condition.append(f"{counter} >= {expression.value(-by)}")
    elif ceiling is not None:
        if by > ceiling:
            raise LimitReached("the counter would pass its ceiling")
        room = expression.value(ceiling - by)
        condition.append(f"(attribute_not_exists({counter}) OR {counter} <= {room})")
    limited = bool(condition)
    condition += expression.expected(expect or {})
    if condition:
        params["ConditionExpression"] = " AND ".join(condition)
    params.update(expression.params())
    failure: Failure | None = None
    if condition:
        failure = "limit" if limited else "absent_or_mismatch"
    return Write("Update", params, failure, dict(expect or {}))


def condition_error(
    failure: Failure,
    old: Mapping[str, Any] | None,
    now_epoch: int,
    expect: Mapping[str, Any] | None = None,
) -> TenancyError:
    """The error for a failed condition, told apart by the item as it was (ALL_OLD); an
    increment's by its `expect` first (an item not as expected is not a counter at its limit)."""
    if failure == "exists":
        return ItemExists("the item already exists")
    if failure == "limit" and _holds(old, expect or {}):
        return LimitReached("the counter would pass its ceiling or drop below zero")
    if old is None or is_expired(old, now_epoch):
        return ItemNotFound("no such item")
    return ConditionFailed("the item does not hold the expected values")


def _holds(old: Mapping[str, Any] | None, expect: Mapping[str, Any]) -> bool:
    """Whether the item as it was (raw; None: absent) holds `expect` (None: absent)."""
    values = deserialize_item(old) if old is not None else {}
    return all(
        name not in values if value is None else values.get(name) == value
        for name, value in expect.items()
    )


def _error_code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "ClientError")
    return type(exc).__name__


def transaction_items(writes: Sequence[Write]) -> list[Any]:
    """The TransactItems of `writes`, as TransactWriteItems takes them."""
    items: list[Any] = []
    for write in writes:
        params = dict(write.params)
        if write.failure is not None:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        items.append({write.action: params})
    return items


def unavailable(operation: str, exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"DynamoDB {operation} failed ({_error_code(exc)})")


class Store:
    """Runs prepared reads and writes against one table with one low-level client."""

    def __init__(self, *, dynamodb: DynamoDBClient, table_name: str) -> None:
        if not table_name:
            raise ValueError("table_name is required")
        self.client = dynamodb
        self.table = table_name

    def get(self, key: PlainKey, *, now_epoch: int) -> dict[str, Any] | None:
        """The raw item, or None if absent or expired. Reads are strongly consistent."""
        try:
            response = self.client.get_item(
                TableName=self.table, Key=_key(key), ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as exc:
            raise unavailable("GetItem", exc) from exc
        raw = response.get("Item")
        if raw is None or is_expired(raw, now_epoch):
            return None
        return dict(raw)

    def write(
        self, write: Write, *, now_epoch: int, return_values: str = "NONE"
    ) -> dict[str, Any] | None:
        """Run one write; return the attributes `return_values` asks for."""
        extra: dict[str, Any] = {"ReturnValues": return_values}
        if write.failure is not None:
            extra["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            if write.action == "Put":
                response: Mapping[str, Any] = self.client.put_item(**write.params, **extra)
            elif write.action == "Update":
                response = self.client.update_item(**write.params, **extra)
            else:
                response = self.client.delete_item(**write.params, **extra)
        except ClientError as exc:
            error: Mapping[str, Any] = exc.response
            if error.get("Error", {}).get("Code") == _CONDITION_FAILED and write.failure:
                raise condition_error(
                    write.failure, error.get("Item"), now_epoch, write.expect
                ) from None
            raise unavailable(f"{write.action}Item", exc) from exc
        except BotoCoreError as exc:
            raise unavailable(f"{write.action}Item", exc) from exc
        attributes = response.get("Attributes")
        return dict(attributes) if attributes is not None else None

    def transact(self, writes: Sequence[Write], *, now_epoch: int) -> None:
        """Run the writes all or none; the first failed condition decides the error. A conflict
        with another transaction is tried again (nothing was written, and the conditions are
        checked anew, as for a request that came a moment later); WriteConflict if it lasts."""
        if not 1 <= len(writes) <= _MAX_TRANSACTION_ITEMS:
            raise ValueError(f"a transaction holds 1 to {_MAX_TRANSACTION_ITEMS} operations")
        keys = [write.key for write in writes]
        if len(set(keys)) != len(keys):
            raise ValueError("a transaction may touch each item only once")
        items = transaction_items(writes)
        for run in range(TRANSACTION_RUNS):
            try:
                self._transact_once(writes, items, now_epoch=now_epoch)
                return
            except WriteConflict:
                if run == TRANSACTION_RUNS - 1:
                    raise
            # Jittered, so that the two transactions do not meet again.
            pause = random.uniform(0.25, 1) * _CONFLICT_PAUSE_SECONDS * 2**run  # noqa: S311
            time.sleep(pause)

    def _transact_once(self, writes: Sequence[Write], items: list[Any], *, now_epoch: int) -> None:
        try:
            # A token makes botocore's own retries of this call idempotent: a transaction that
            # committed but whose answer was lost is not run again (nor failed on its conditions).
            self.client.transact_write_items(
                TransactItems=items, ClientRequestToken=secrets.token_hex(16)
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                reasons = exc.response.get("CancellationReasons") or []
                for write, reason in zip(writes, reasons, strict=False):
                    if reason.get("Code") == "ConditionalCheckFailed" and write.failure:
                        raise condition_error(
                            write.failure, reason.get("Item"), now_epoch, write.expect
                        ) from None
                codes = {reason.get("Code") for reason in reasons}
                if _CONFLICT in codes and codes <= _CONFLICT_CODES:
                    raise WriteConflict(
                        f"DynamoDB TransactWriteItems cancelled ({_CONFLICT})"
                    ) from None
            raise unavailable("TransactWriteItems", exc) from exc
        except BotoCoreError as exc:
            raise unavailable("TransactWriteItems", exc) from exc

    def query(
        self,
        *,
        key_condition: str,
        expression: Expression,
        now_epoch: int,
        limit: int,
        start_key: dict[str, Any] | None,
        newest_first: bool,
        index_name: str | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Up to `limit` live items and the key to continue from (None: nothing more)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise ValueError("limit must be 1 to 1000")
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": key_condition,
            "FilterExpression": expression.live(now_epoch),
            "ScanIndexForward": not newest_first,
        }
        if index_name is None:
            params["ConsistentRead"] = True
        else:
            params["IndexName"] = index_name
        params.update(expression.params())
        items: list[dict[str, Any]] = []
        for _ in range(_MAX_QUERY_ROUNDS):
            params["Limit"] = limit - len(items)
            if start_key is not None:
                params["ExclusiveStartKey"] = start_key
            try:
                response = self.client.query(**params)
            except (ClientError, BotoCoreError) as exc:
                raise unavailable("Query", exc) from exc
            items.extend(dict(item) for item in response.get("Items", []))
            last = response.get("LastEvaluatedKey")
            start_key = dict(last) if last else None
            if start_key is None or len(items) >= limit:
                break
        return items, start_key
