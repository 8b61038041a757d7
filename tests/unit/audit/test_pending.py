"""Entries recorded with their change: appended exactly once, after crashes, outages, races,
and by the sweep when the request that recorded them never flushed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.audit import AuditLog, AuditUnavailable, InvalidAuditEvent
from strongroom.audit.pending import (
    PENDING_KIND,
    SWEEP_GRACE,
    SWEEP_KIND,
    SWEEP_RETRY,
    _shard_of,
)
from strongroom.settings import Settings
from strongroom.tenancy import Create, ItemExists, PlatformTable, TenantTable, new_org_id
from tests.unit.audit.conftest import (
    NOW,
    SimulatedCrash,
    entry,
    fail_on,
    head_item,
    without_list_bucket,
)


def _no_connection() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url="https://aws.invalid")


@pytest.fixture
def table(dynamodb: Any, settings: Settings) -> TenantTable:
    return TenantTable(dynamodb=dynamodb, table_name=settings.table_name)


def _record(audit: AuditLog, table: TenantTable, org_id: str, request_id: str, **kw: Any) -> str:
    """Record an entry with a change (here: a marker item) in one transaction; its entry id."""
    [pending] = audit.prepare(org_id, entry(request_id=request_id, **kw), now=NOW)
    table.transact(org_id, [Create("CHANGE", request_id), pending], now=NOW)
    assert pending.item_id is not None
    return pending.item_id


def _pending_ids(table: TenantTable, org_id: str) -> list[str]:
    return [str(item.item_id) for item in table.query(org_id, PENDING_KIND, now=NOW).items]


def _chain(audit: AuditLog, org_id: str) -> list[tuple[str, str | None]]:
    """(request id, entry id) of every event, oldest first; the chain verified."""
    report = audit.verify_chain(org_id, now=NOW)
    assert report.ok, report.problems
    events = audit.list_events(org_id, now=NOW, limit=100).events
    return [(event.request_id, event.entry_id) for event in reversed(events)]


def _mark(dynamodb: Any, settings: Settings, org_id: str) -> dict[str, Any] | None:
    platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
    try:
        return dict(platform.get(SWEEP_KIND, org_id, now=NOW).attributes)
    except Exception:  # noqa: BLE001 (absent)
        return None


def test_an_entry_recorded_with_its_change_is_appended_once_with_its_id_and_time(
    audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    entry_id = _record(audit, table, org_id, "req-1")
    assert _chain(audit, org_id) == []  # recorded, not yet in the chain

    assert audit.flush(org_id, now=NOW + timedelta(seconds=5)) == 1
    assert audit.flush(org_id, now=NOW + timedelta(seconds=6)) == 0

    assert _chain(audit, org_id) == [("req-1", entry_id)]
    [event] = audit.list_events(org_id, now=NOW).events
    assert event.occurred_at == NOW  # the change's time, not the flush's
    assert _pending_ids(table, org_id) == []


def test_directly_appended_events_carry_an_entry_id_of_their_own(
    audit: AuditLog, s3: Any, settings: Settings, org_id: str
) -> None:
    first = audit.append(org_id, entry(), now=NOW)
    second = audit.append(org_id, entry(), now=NOW)
    body = s3.get_object(Bucket=settings.audit_bucket, Key=f"audit/{org_id}/{1:012d}.json")
    assert json.loads(body["Body"].read())["entry_id"] == first.entry_id
    assert first.entry_id is not None
    assert second.entry_id not in (None, first.entry_id)


def test_the_table_holds_the_redacted_details_only(
    audit: AuditLog, table: TenantTable, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    secret = "CANARYsecret-0123456789abcdef"
    _record(audit, table, org_id, "req-1", details={"client_secret": secret, "method": "x"})
    raw = dynamodb.query(
        TableName=settings.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": org_id}},
    )
    assert raw["Items"]
    assert secret not in json.dumps(raw["Items"])


def test_an_invalid_entry_is_refused_before_anything_is_written(
    audit: AuditLog, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    invalid = entry().model_copy(update={"details": {"ratio": 0.5}})  # floats are not canonical
    with pytest.raises(InvalidAuditEvent):
        audit.prepare(org_id, invalid, now=NOW)
    assert _mark(dynamodb, settings, org_id) is None


def test_a_change_that_does_not_commit_leaves_nothing_to_append(
    audit: AuditLog, table: TenantTable, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    table.create(org_id, "CHANGE", "req-1", attributes={}, now=NOW)
    pending = audit.prepare(org_id, entry(request_id="req-1"), now=NOW)
    with pytest.raises(ItemExists):
        table.transact(org_id, [Create("CHANGE", "req-1"), *pending], now=NOW)
    assert _pending_ids(table, org_id) == []
    # The mark was written first; the sweep finds nothing and drops it.
    assert _mark(dynamodb, settings, org_id) is not None
    report = audit.sweep(now=NOW + SWEEP_GRACE)
    assert (report.appended, report.failed) == (0, 0)
    assert _mark(dynamodb, settings, org_id) is None
    assert _chain(audit, org_id) == []


def test_a_failed_flush_leaves_the_entry_for_the_next_one(
    make_log: Callable[..., AuditLog], audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    entry_id = _record(audit, table, org_id, "req-1")
    s3_down = boto3.client("s3", region_name="us-east-1")
    fail_on(s3_down, "PutObject", _no_connection)
    with pytest.raises(AuditUnavailable):
        make_log(s3=s3_down).flush(org_id, now=NOW)
    assert _pending_ids(table, org_id) == [entry_id]

    assert audit.flush(org_id, now=NOW) == 1
    assert _chain(audit, org_id) == [("req-1", entry_id)]


@pytest.mark.parametrize(
    ("crash_on", "direct_append_between"),
    [
        ("PutItem", True),  # the head's first write, after the event was stored
        ("PutItem", False),
        ("DeleteItem", True),  # the pending item's delete, after the head moved
        ("DeleteItem", False),
    ],
)
def test_a_flush_that_dies_after_storing_the_event_is_not_appended_twice(
    *,
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    table: TenantTable,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
    crash_on: str,
    direct_append_between: bool,
) -> None:
    entry_id = _record(audit, table, org_id, "req-1")
    doomed = boto3.client("dynamodb", region_name="us-east-1")
    fail_on(doomed, crash_on, SimulatedCrash)
    with pytest.raises(SimulatedCrash):
        make_log(dynamodb=doomed).flush(org_id, now=NOW)
    assert _pending_ids(table, org_id) == [entry_id]  # not known to be done

    expected = [("req-1", entry_id)]
    if direct_append_between:  # it anchors the stored event and goes after it
        direct = audit.append(org_id, entry(request_id="direct"), now=NOW)
        expected.append(("direct", direct.entry_id))
    s3 = without_list_bucket(boto3.client("s3", region_name="us-east-1"))
    assert make_log(s3=s3).flush(org_id, now=NOW) == 0  # found in the chain, not written again

    assert _chain(audit, org_id) == expected
    assert _pending_ids(table, org_id) == []
    assert head_item(dynamodb, settings, org_id)["seq"] == len(expected)  # type: ignore[index]


def test_a_claimed_seq_taken_by_another_event_moves_the_entry_further_on(
    make_log: Callable[..., AuditLog], audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    entry_id = _record(audit, table, org_id, "req-1")
    # The flush claims seq 1 for the entry, then dies before writing the event.
    doomed = boto3.client("s3", region_name="us-east-1")
    fail_on(doomed, "PutObject", SimulatedCrash)
    with pytest.raises(SimulatedCrash):
        make_log(s3=doomed).flush(org_id, now=NOW)
    [item] = table.query(org_id, PENDING_KIND, now=NOW).items
    assert item.attributes["claim_seq"] == 1
    direct = audit.append(org_id, entry(request_id="direct"), now=NOW)  # takes seq 1

    s3 = without_list_bucket(boto3.client("s3", region_name="us-east-1"))
    assert make_log(s3=s3).flush(org_id, now=NOW) == 1
    assert _chain(audit, org_id) == [("direct", direct.entry_id), ("req-1", entry_id)]


@pytest.mark.usefixtures("atomic_aws")
def test_concurrent_flushes_and_appends_write_each_entry_exactly_once(
    make_log: Callable[..., AuditLog], audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    recorded = [_record(audit, table, org_id, f"rec-{n}") for n in range(6)]
    workers = 8
    logs = [make_log() for _ in range(workers)]
    start = threading.Barrier(workers)

    def work(n: int) -> None:
        start.wait()
        if n % 2:
            logs[n].append(org_id, entry(request_id=f"direct-{n}"), now=NOW)
        logs[n].flush(org_id, now=NOW)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, range(workers)))

    chain = _chain(audit, org_id)
    entry_ids = Counter(entry_id for request, entry_id in chain if request.startswith("rec-"))
    assert entry_ids == Counter(recorded)  # each once
    directs = [request for request, _ in chain if request.startswith("direct-")]
    assert sorted(directs) == [f"direct-{n}" for n in (1, 3, 5, 7)]
    assert len({entry_id for _, entry_id in chain}) == len(chain)
    assert _pending_ids(table, org_id) == []


def test_the_sweep_appends_what_no_request_flushed_once_the_grace_has_passed(
    audit: AuditLog, table: TenantTable, dynamodb: Any, settings: Settings
) -> None:
    orgs = [new_org_id() for _ in range(3)]
    for org in orgs:
        _record(audit, table, org, f"req-{org[-4:]}")

    early = audit.sweep(now=NOW + SWEEP_GRACE - timedelta(seconds=1))
    assert (early.orgs, early.appended) == (0, 0)  # its request may still be running

    report = audit.sweep(now=NOW + SWEEP_GRACE)
    assert (report.orgs, report.appended, report.failed) == (3, 3, 0)
    for org in orgs:
        assert len(_chain(audit, org)) == 1
        assert _mark(dynamodb, settings, org) is None


def test_a_mark_written_again_during_the_sweep_stays(
    *,
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    table: TenantTable,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    _record(audit, table, org_id, "req-1")
    sweeping = boto3.client("dynamodb", region_name="us-east-1")
    requests: list[str] = []
    listings: list[dict[str, Any]] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        listings.append(params)

    def another_request_records(**_: Any) -> None:
        # Right after the sweep lists the org's pending entries (not the marks' index): a new
        # change marks the org and records its entry.
        if not requests and "IndexName" not in listings[-1]:
            requests.append(_record(audit, table, org_id, "req-2"))

    sweeping.meta.events.register("before-parameter-build.dynamodb.Query", remember)
    sweeping.meta.events.register("after-call.dynamodb.Query", another_request_records)
    report = make_log(dynamodb=sweeping).sweep(now=NOW + SWEEP_GRACE)
    assert (report.appended, requests != []) == (1, True)
    assert _mark(dynamodb, settings, org_id) is not None  # req-2 is still to be appended
    assert _pending_ids(table, org_id) == requests


def test_an_org_the_sweep_cannot_flush_keeps_its_mark_and_the_others_go_on(
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    table: TenantTable,
    dynamodb: Any,
    settings: Settings,
) -> None:
    orgs = [new_org_id() for _ in range(2)]
    for org in orgs:
        _record(audit, table, org, "req-1")
    s3_down = boto3.client("s3", region_name="us-east-1")
    fail_on(s3_down, "PutObject", _no_connection)
    report = make_log(s3=s3_down).sweep(now=NOW + SWEEP_GRACE)
    assert (report.orgs, report.appended, report.failed) == (2, 0, 2)
    for org in orgs:
        assert _mark(dynamodb, settings, org) is not None
    # Put back behind the marks due now, and swept once that time has come.
    assert audit.sweep(now=NOW + SWEEP_GRACE).orgs == 0
    assert audit.sweep(now=NOW + SWEEP_GRACE + SWEEP_RETRY).appended == 2


def test_marks_that_keep_failing_do_not_starve_the_others(
    make_log: Callable[..., AuditLog], audit: AuditLog, table: TenantTable
) -> None:
    failing = [new_org_id() for _ in range(3)]
    for org in failing:
        _record(audit, table, org, "req-1")
    later = NOW + timedelta(seconds=1)
    healthy = [new_org_id() for _ in range(3)]
    for org in healthy:
        [write] = audit.prepare(org, entry(request_id="req-2"), now=later)
        table.transact(org, [write], now=later)
    broken_s3 = boto3.client("s3", region_name="us-east-1")
    fail_on(broken_s3, "PutObject", _no_connection)
    sweeping = make_log(s3=broken_s3)
    # Only the failing orgs are due first: each fails and is put back.
    assert sweeping.sweep(now=NOW + SWEEP_GRACE, max_orgs=3).failed == 3
    report = audit.sweep(now=later + SWEEP_GRACE)
    assert (report.orgs, report.appended) == (3, 3)
    for org in healthy:
        assert len(_chain(audit, org)) == 1


def test_the_sweep_stops_when_its_time_runs_out(audit: AuditLog, table: TenantTable) -> None:
    for _ in range(3):
        _record(audit, table, new_org_id(), "req-1")
    left = iter([60.0, 60.0, 60.0, 5.0])
    report = audit.sweep(now=NOW + SWEEP_GRACE, time_left=lambda: next(left, 0.0))
    assert report.orgs < 3
    assert audit.sweep(now=NOW + SWEEP_GRACE).orgs == 3 - report.orgs


def test_entries_recorded_with_one_change_are_appended_in_their_order(
    audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    entries = [entry(request_id="req-1", action=f"thing.step_{n}") for n in "abcdefgh"]
    writes = audit.prepare(org_id, *entries, now=NOW)
    table.transact(org_id, writes, now=NOW)
    assert audit.flush(org_id, now=NOW) == len(entries)
    events = audit.list_events(org_id, now=NOW).events
    assert [event.action for event in reversed(events)] == [e.action for e in entries]


def test_a_claim_on_a_seq_never_written_needs_no_read_of_a_missing_event(
    make_log: Callable[..., AuditLog], audit: AuditLog, table: TenantTable, org_id: str
) -> None:
    entry_id = _record(audit, table, org_id, "req-1")
    doomed = boto3.client("s3", region_name="us-east-1")
    fail_on(doomed, "PutObject", SimulatedCrash)
    with pytest.raises(SimulatedCrash):
        make_log(s3=doomed).flush(org_id, now=NOW)  # claims seq 1, writes nothing
    s3 = without_list_bucket(boto3.client("s3", region_name="us-east-1"))
    assert make_log(s3=s3).flush(org_id, now=NOW) == 1
    assert _chain(audit, org_id) == [("req-1", entry_id)]


def test_a_sweep_meeting_a_crafted_event_puts_that_org_back_and_goes_on(
    audit: AuditLog, table: TenantTable, s3: Any, settings: Settings
) -> None:
    poisoned, healthy = new_org_id(), new_org_id()
    while _shard_of(healthy) != _shard_of(poisoned):
        healthy = new_org_id()
    for org, at in ((poisoned, NOW), (healthy, NOW + timedelta(seconds=1))):
        [write] = audit.prepare(org, entry(request_id="req-1"), now=at)
        table.transact(org, [write], now=at)
    # Where the poisoned org's first event goes: a hash no hex digest is, and a NaN.
    crafted = {"seq": 1, "org_id": poisoned, "hash": "\u00e9" * 64, "n": float("nan")}
    s3.put_object(
        Bucket=settings.audit_bucket,
        Key=f"audit/{poisoned}/{1:012d}.json",
        Body=json.dumps(crafted).encode(),
    )
    report = audit.sweep(now=NOW + SWEEP_GRACE + timedelta(seconds=1))
    assert (report.orgs, report.appended, report.failed) == (2, 1, 1)
    assert len(_chain(audit, healthy)) == 1


def test_a_flush_after_commit_meeting_a_crafted_event_leaves_the_change_done(
    audit: AuditLog, table: TenantTable, s3: Any, settings: Settings, org_id: str
) -> None:
    audit.append(org_id, entry(request_id="req-0"), now=NOW)
    entry_id = _record(audit, table, org_id, "req-1")
    forged = {"seq": 2, "org_id": org_id, "hash": "\u00e9" * 64, "prev_hash": "0" * 64}
    s3.put_object(
        Bucket=settings.audit_bucket,
        Key=f"audit/{org_id}/{2:012d}.json",
        Body=json.dumps(forged).encode(),
    )
    audit.flush_after_commit(org_id, now=NOW)  # logged, not raised
    assert _pending_ids(table, org_id) == [entry_id]
