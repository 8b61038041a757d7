"""The verifier names each kind of tampering by seq; an append never builds on a broken chain.

Two ways of tampering are used. In the real audit bucket (versioned, Object Lock COMPLIANCE)
an attacker with write access can still add a delete marker or a new version of a key, but
cannot remove the locked original (moto refuses that, as S3 does); the verifier sees both the
changed content and the extra versions. To show that the content checks stand on their own, a
copy of the chain is also tampered with in place in a second bucket without versioning or lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from strongroom.audit import (
    AuditChainBroken,
    AuditEvent,
    AuditLog,
    ProblemKind,
    event_key,
)
from strongroom.audit.events import canonical_json, event_hash
from strongroom.settings import Settings
from strongroom.tenancy import new_org_id
from tests.unit.audit.conftest import NOW, entry, head_item, without_list_bucket

P = ProblemKind


@pytest.fixture
def chain(audit: AuditLog, org_id: str) -> list[AuditEvent]:
    return [audit.append(org_id, entry(request_id=f"req-{n}"), now=NOW) for n in range(1, 6)]


def _document(s3: Any, bucket: str, org_id: str, seq: int) -> dict[str, Any]:
    body = s3.get_object(Bucket=bucket, Key=event_key(org_id, seq))["Body"].read()
    return dict(json.loads(body))


def _put(s3: Any, bucket: str, org_id: str, seq: int, document: dict[str, Any]) -> None:
    s3.put_object(Bucket=bucket, Key=event_key(org_id, seq), Body=canonical_json(document))


def _problems(report: Any) -> set[tuple[ProblemKind, int]]:
    return {(problem.kind, problem.seq) for problem in report.problems}


def test_an_untouched_chain_and_an_empty_one_verify(
    audit: AuditLog, chain: list[AuditEvent], org_id: str
) -> None:
    report = audit.verify_chain(org_id, now=NOW)
    assert report.ok
    assert (report.head_seq, report.last_seq, report.checked, report.unanchored) == (5, 5, 5, ())
    empty = audit.verify_chain(new_org_id(), now=NOW)
    assert empty.ok
    assert (empty.head_seq, empty.last_seq, empty.checked) == (0, 0, 0)


def test_a_delete_marker_is_reported_as_deleted_and_missing(
    audit: AuditLog, chain: list[AuditEvent], s3: Any, settings: Settings, org_id: str
) -> None:
    s3.delete_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 3))
    report = audit.verify_chain(org_id, now=NOW)
    assert _problems(report) == {(P.DELETED, 3), (P.MISSING, 3)}
    assert audit.list_events(org_id, now=NOW).missing == (3,)


def test_a_listing_reads_no_missing_key_so_s3_without_list_bucket_answers_it(
    make_log: Callable[..., AuditLog],
    chain: list[AuditEvent],
    s3: Any,
    settings: Settings,
    org_id: str,
) -> None:
    # S3 answers a GET of a missing key with 403 unless the caller may list the bucket there,
    # which a GetObject request's context never shows: the listing must not GET what is absent.
    s3.delete_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 3))
    strict = make_log(s3=without_list_bucket(boto3.client("s3", region_name="us-east-1")))
    first = strict.list_events(org_id, now=NOW, limit=3)
    assert ([e.seq for e in first.events], first.missing) == ([5, 4], (3,))
    rest = strict.list_events(org_id, now=NOW, limit=3, cursor=first.cursor)
    assert ([e.seq for e in rest.events], rest.missing, rest.cursor) == ([2, 1], (), None)


def test_an_event_copied_in_from_another_org_or_seq_is_listed_as_missing(
    audit: AuditLog, chain: list[AuditEvent], s3: Any, settings: Settings, org_id: str
) -> None:
    other = new_org_id()
    audit.append(other, entry(request_id="other-org"), now=NOW)
    theirs = s3.get_object(Bucket=settings.audit_bucket, Key=event_key(other, 1))["Body"].read()
    s3.put_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 2), Body=theirs)
    ours = s3.get_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 4))["Body"].read()
    s3.put_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 3), Body=ours)
    page = audit.list_events(org_id, now=NOW)
    assert page.missing == (3, 2)
    assert [e.seq for e in page.events] == [5, 4, 1]
    assert all(e.org_id == org_id for e in page.events)


def test_an_edited_field_in_a_new_version_is_reported(
    audit: AuditLog, chain: list[AuditEvent], s3: Any, settings: Settings, org_id: str
) -> None:
    naive = _document(s3, settings.audit_bucket, org_id, 2)
    naive["outcome"] = "failure"  # the stored hash no longer matches
    _put(s3, settings.audit_bucket, org_id, 2, naive)
    report = audit.verify_chain(org_id, now=NOW)
    assert _problems(report) == {(P.OVERWRITTEN, 2), (P.EDITED, 2), (P.BROKEN_LINK, 3)}

    careful = _document(s3, settings.audit_bucket, org_id, 4)
    careful["actor"] = "someone-else"
    careful["hash"] = event_hash(careful)  # consistent in itself: only the next link breaks
    _put(s3, settings.audit_bucket, org_id, 4, careful)
    report = audit.verify_chain(org_id, now=NOW)
    assert report.kinds_at(4) == {P.OVERWRITTEN}
    assert report.kinds_at(5) == {P.BROKEN_LINK}


@pytest.fixture
def plain_copy(
    chain: list[AuditEvent],
    s3: Any,
    settings: Settings,
    make_log: Callable[..., AuditLog],
    org_id: str,
) -> tuple[str, AuditLog]:
    """The org's chain copied to a bucket without versioning or lock, and a log reading it."""
    bucket = "audit-copy-without-lock"
    s3.create_bucket(Bucket=bucket)
    for event in chain:
        _put(s3, bucket, org_id, event.seq, event.document())
    log = make_log(settings_=settings.model_copy(update={"audit_bucket": bucket}))
    assert log.verify_chain(org_id, now=NOW).ok
    return bucket, log


def test_content_checks_alone_find_an_edit(
    plain_copy: tuple[str, AuditLog], s3: Any, org_id: str
) -> None:
    bucket, log = plain_copy
    edited = _document(s3, bucket, org_id, 2)
    edited["details"] = {"method": "api_token"}
    _put(s3, bucket, org_id, 2, edited)
    assert _problems(log.verify_chain(org_id, now=NOW)) == {(P.EDITED, 2), (P.BROKEN_LINK, 3)}


def test_content_checks_alone_find_swapped_events(
    plain_copy: tuple[str, AuditLog], s3: Any, org_id: str
) -> None:
    bucket, log = plain_copy
    third, fourth = _document(s3, bucket, org_id, 3), _document(s3, bucket, org_id, 4)
    _put(s3, bucket, org_id, 3, fourth)
    _put(s3, bucket, org_id, 4, third)
    report = log.verify_chain(org_id, now=NOW)
    assert report.kinds_at(3) == {P.REORDERED, P.BROKEN_LINK}
    assert report.kinds_at(4) == {P.REORDERED, P.BROKEN_LINK}
    assert report.kinds_at(5) == {P.BROKEN_LINK}
    assert not report.kinds_at(1) | report.kinds_at(2)


def test_content_checks_alone_find_a_deleted_event_and_garbage(
    plain_copy: tuple[str, AuditLog], s3: Any, org_id: str
) -> None:
    bucket, log = plain_copy
    s3.delete_object(Bucket=bucket, Key=event_key(org_id, 4))
    s3.put_object(Bucket=bucket, Key=event_key(org_id, 2), Body=b"\xff not json")
    s3.put_object(Bucket=bucket, Key=f"audit/{org_id}/readme.txt", Body=b"hello")
    assert _problems(log.verify_chain(org_id, now=NOW)) == {
        (P.UNEXPECTED_OBJECT, 0),
        (P.EDITED, 2),
        (P.MISSING, 4),
    }


def test_a_head_that_does_not_match_the_chain_is_reported(
    audit: AuditLog, chain: list[AuditEvent], dynamodb: Any, settings: Settings, org_id: str
) -> None:
    def set_head(seq: str, digest: str) -> None:
        dynamodb.update_item(
            TableName=settings.table_name,
            Key={"pk": {"S": org_id}, "sk": {"S": "AUDIT#HEAD"}},
            UpdateExpression="SET seq = :s, #h = :h",
            ExpressionAttributeNames={"#h": "hash"},
            ExpressionAttributeValues={":s": {"N": seq}, ":h": {"S": digest}},
        )

    set_head("5", chain[3].hash)
    assert _problems(audit.verify_chain(org_id, now=NOW)) == {(P.HEAD_MISMATCH, 5)}

    set_head("8", chain[4].hash)  # ahead of the chain: events 6-8 should exist and do not
    assert _problems(audit.verify_chain(org_id, now=NOW)) == {
        (P.MISSING, 6),
        (P.MISSING, 7),
        (P.MISSING, 8),
        (P.HEAD_MISMATCH, 8),
    }

    set_head(str(10**11), chain[4].hash)  # far ahead: reported briefly, not counted out
    report = audit.verify_chain(org_id, now=NOW)
    missing = [p for p in report.problems if p.kind is P.MISSING]
    assert [p.seq for p in missing] == list(range(6, 107))
    assert missing[-1].detail.endswith(f"next {10**11 - 106} seqs")
    assert report.kinds_at(10**11) == {P.HEAD_MISMATCH}

    set_head("5", "not-a-hash")
    assert _problems(audit.verify_chain(org_id, now=NOW)) == {(P.HEAD_MISMATCH, 0)}
    with pytest.raises(AuditChainBroken, match="head"):
        audit.append(org_id, entry(), now=NOW)


def test_an_append_refuses_to_build_on_an_event_that_does_not_extend_the_head(
    *,
    audit: AuditLog,
    chain: list[AuditEvent],
    s3: Any,
    dynamodb: Any,
    settings: Settings,
    org_id: str,
) -> None:
    forged = chain[4].document()
    forged.update(seq=6, prev_hash="f" * 64, request_id="forged")
    forged["hash"] = event_hash(forged)
    _put(s3, settings.audit_bucket, org_id, 6, forged)
    with pytest.raises(AuditChainBroken, match="6"):
        audit.append(org_id, entry(), now=NOW)
    assert head_item(dynamodb, settings, org_id) == {"seq": 5, "hash": chain[4].hash}
    assert audit.read_event(org_id, 7) is None
    assert _problems(audit.verify_chain(org_id, now=NOW)) == {(P.BROKEN_LINK, 6)}


def _with(**fields: Any) -> Callable[[dict[str, Any]], bytes]:
    # json.dumps writes what json.loads takes back: a NaN, a lone surrogate's escape.
    return lambda document: json.dumps({**document, **fields}, ensure_ascii=True).encode()


def _nested_deeper_than_json_allows(document: dict[str, Any]) -> bytes:
    body = json.dumps({**document, "details": {"deep": "HERE"}}).encode()
    return body.replace(b'"HERE"', b"[" * 30_000 + b"]" * 30_000)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_with(details={"method": float("nan")}), id="nan"),
        pytest.param(_with(details={"method": "\ud800"}), id="lone-surrogate"),
        pytest.param(_with(hash="\u00e9" * 64), id="non-hex-hash"),
        pytest.param(_with(prev_hash="\u00e9" * 64), id="non-hex-prev-hash"),
        pytest.param(_nested_deeper_than_json_allows, id="deep"),
    ],
)
@pytest.mark.usefixtures("chain")
def test_an_event_json_cannot_hash_is_reported_not_raised(
    audit: AuditLog,
    s3: Any,
    settings: Settings,
    org_id: str,
    tamper: Callable[[dict[str, Any]], bytes],
) -> None:
    body = tamper(_document(s3, settings.audit_bucket, org_id, 2))
    s3.put_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 2), Body=body)
    report = audit.verify_chain(org_id, now=NOW)
    assert not report.ok
    assert report.kinds_at(2) & {P.EDITED, P.BROKEN_LINK}
