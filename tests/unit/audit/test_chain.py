"""One chain under concurrency, crashes and outages: no fork, no gap, head never ahead."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.audit import AuditEvent, AuditLog, AuditUnavailable, event_key
from strongroom.settings import Settings
from tests.unit.audit.conftest import NOW, SimulatedCrash, entry, event_keys, fail_on, head_item


def _no_connection() -> EndpointConnectionError:
    return EndpointConnectionError(endpoint_url="https://aws.invalid")


@pytest.mark.usefixtures("atomic_aws")
def test_twenty_concurrent_appends_make_one_unbroken_chain(
    make_log: Callable[..., AuditLog], s3: Any, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    writers = 20
    # One log with its own pair of clients per thread, made here: creating clients from a
    # session is not thread-safe, using them is.
    logs = [make_log() for _ in range(writers)]
    start = threading.Barrier(writers)

    def append(n: int) -> AuditEvent:
        start.wait()
        return logs[n].append(org_id, entry(request_id=f"req-{n:02d}"), now=NOW)

    with ThreadPoolExecutor(max_workers=writers) as pool:
        events = list(pool.map(append, range(writers)))

    assert sorted(event.seq for event in events) == list(range(1, writers + 1))
    assert sorted(event.request_id for event in events) == [f"req-{n:02d}" for n in range(writers)]
    by_seq = {event.seq: event for event in events}
    for seq in range(2, writers + 1):
        assert by_seq[seq].prev_hash == by_seq[seq - 1].hash
    # No fork: exactly one version was ever written per seq, and the head is at the end.
    versions = s3.list_object_versions(Bucket=settings.audit_bucket, Prefix=f"audit/{org_id}/")
    written = [version["Key"] for version in versions.get("Versions", [])]
    assert sorted(written) == [event_key(org_id, seq) for seq in range(1, writers + 1)]
    assert "DeleteMarkers" not in versions
    assert head_item(dynamodb, settings, org_id) == {"seq": writers, "hash": by_seq[writers].hash}
    report = logs[0].verify_chain(org_id, now=NOW)
    assert report.ok, report.problems
    assert (report.head_seq, report.last_seq, report.checked) == (writers, writers, writers)


@pytest.mark.parametrize(("before", "head_write"), [(0, "PutItem"), (2, "UpdateItem")])
def test_a_crash_between_the_s3_write_and_the_head_move_is_repaired_by_the_next_append(
    *,
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
    before: int,
    head_write: str,
) -> None:
    for n in range(before):
        audit.append(org_id, entry(request_id=f"req-{n}"), now=NOW)
    head_before = head_item(dynamodb, settings, org_id)

    doomed_dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    fail_on(doomed_dynamodb, head_write, SimulatedCrash)
    with pytest.raises(SimulatedCrash):
        make_log(dynamodb=doomed_dynamodb).append(org_id, entry(request_id="crashed"), now=NOW)

    crashed_seq = before + 1
    # The event is stored, the head did not move: the chain is whole, its last event unanchored.
    assert event_keys(s3, settings.audit_bucket, org_id)[-1] == event_key(org_id, crashed_seq)
    assert head_item(dynamodb, settings, org_id) == head_before
    report = audit.verify_chain(org_id, now=NOW)
    assert report.ok, report.problems
    assert report.unanchored == (crashed_seq,)
    assert audit.list_events(org_id, now=NOW).events[0].request_id == "crashed"

    following = audit.append(org_id, entry(request_id="after"), now=NOW)
    crashed = audit.read_event(org_id, crashed_seq)
    assert crashed is not None
    assert crashed.request_id == "crashed"
    assert (following.seq, following.prev_hash) == (crashed_seq + 1, crashed.hash)
    assert head_item(dynamodb, settings, org_id) == {"seq": following.seq, "hash": following.hash}
    report = audit.verify_chain(org_id, now=NOW)
    assert report.ok, report.problems
    assert (report.unanchored, report.checked) == ((), crashed_seq + 1)


def test_outages_raise_the_outage_error_and_leave_the_head_alone(
    *,
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    audit.append(org_id, entry(), now=NOW)
    head_before = head_item(dynamodb, settings, org_id)
    keys_before = event_keys(s3, settings.audit_bucket, org_id)

    for service, operation in [
        ("s3", "PutObject"),
        ("dynamodb", "GetItem"),
    ]:
        client = boto3.client(service, region_name="us-east-1")
        fail_on(client, operation, _no_connection)
        log = make_log(**{service: client})
        with pytest.raises(AuditUnavailable, match=f"{operation} failed"):
            log.append(org_id, entry(request_id="lost"), now=NOW)
        assert head_item(dynamodb, settings, org_id) == head_before
        assert event_keys(s3, settings.audit_bucket, org_id) == keys_before

    # An S3 error response (here: the bucket is gone) is an outage too, not a finding.
    gone = make_log(settings_=settings.model_copy(update={"audit_bucket": "no-such-bucket"}))
    with pytest.raises(AuditUnavailable, match="NoSuchBucket"):
        gone.append(org_id, entry(), now=NOW)
    with pytest.raises(AuditUnavailable, match="ListObjectVersions failed"):
        gone.verify_chain(org_id, now=NOW)
    unreachable = boto3.client("dynamodb", region_name="us-east-1")
    fail_on(unreachable, "GetItem", _no_connection)
    with pytest.raises(AuditUnavailable):
        make_log(dynamodb=unreachable).verify_chain(org_id, now=NOW)
    assert head_item(dynamodb, settings, org_id) == head_before


def test_an_event_stored_before_the_table_failed_is_kept_and_anchored_later(
    make_log: Callable[..., AuditLog],
    audit: AuditLog,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    audit.append(org_id, entry(), now=NOW)
    flaky = boto3.client("dynamodb", region_name="us-east-1")
    fail_on(flaky, "UpdateItem", _no_connection)
    # The event is durable in S3 and owns seq 2, so the append reports it; the head lags.
    stored = make_log(dynamodb=flaky).append(org_id, entry(request_id="kept"), now=NOW)
    assert stored.seq == 2
    assert head_item(dynamodb, settings, org_id)["seq"] == 1  # type: ignore[index]
    third = audit.append(org_id, entry(), now=NOW)
    assert (third.seq, third.prev_hash) == (3, stored.hash)
    assert audit.verify_chain(org_id, now=NOW).ok
