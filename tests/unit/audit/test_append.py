"""Appending: the stored object, its Object Lock retention, the chain link, redaction, reading."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from pydantic import ValidationError

from strongroom.audit import (
    GENESIS_HASH,
    AuditLog,
    InvalidAuditCursor,
    InvalidAuditEvent,
    event_key,
)
from strongroom.audit.events import canonical_json, event_hash
from strongroom.aws_limits import PROMPT_CALLS
from strongroom.settings import Settings
from strongroom.tenancy import new_org_id
from tests.unit.audit.conftest import NOW, entry, head_item


def test_an_event_is_stored_under_compliance_retention_and_chained(
    make_log: Callable[..., AuditLog], s3: Any, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    # A retention unlike the bucket default (365 days from the real clock) shows that the
    # explicit per-object date, computed from the injected now, is what S3 keeps.
    settings_ = settings.model_copy(update={"audit_retention_days": 17})
    audit = make_log(settings_=settings_)

    first = audit.append(org_id, entry(request_id="req-1"), now=NOW)
    assert (first.seq, first.prev_hash, first.org_id) == (1, GENESIS_HASH, org_id)
    assert first.occurred_at == NOW

    stored = s3.get_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 1))
    body = stored["Body"].read()
    assert body == canonical_json(first.document())
    document = json.loads(body)
    assert document["hash"] == event_hash(document) == first.hash
    assert document["occurred_at"] == "2096-01-02T03:04:05.678901Z"
    assert stored["ObjectLockMode"] == "COMPLIANCE"
    assert stored["ObjectLockRetainUntilDate"] == (NOW + timedelta(days=17)).replace(microsecond=0)
    head = s3.head_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 1))
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] == (NOW + timedelta(days=17)).replace(microsecond=0)
    assert head_item(dynamodb, settings, org_id) == {"seq": 1, "hash": first.hash}

    later = NOW + timedelta(minutes=5)
    second = audit.append(org_id, entry(request_id="req-2"), now=later)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert head_item(dynamodb, settings, org_id) == {"seq": 2, "hash": second.hash}
    retained = s3.head_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 2))
    assert retained["ObjectLockRetainUntilDate"] == (later + timedelta(days=17)).replace(
        microsecond=0
    )
    # The locked version cannot be deleted.
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(
            Bucket=settings.audit_bucket, Key=event_key(org_id, 1), VersionId=stored["VersionId"]
        )


def test_orgs_have_separate_chains(audit: AuditLog, org_id: str) -> None:
    other = new_org_id()
    audit.append(org_id, entry(), now=NOW)
    theirs = audit.append(other, entry(), now=NOW)
    ours = audit.append(org_id, entry(), now=NOW)
    assert (theirs.seq, theirs.prev_hash) == (1, GENESIS_HASH)
    assert ours.seq == 2


def test_details_are_redacted_before_they_are_stored(
    audit: AuditLog, s3: Any, dynamodb: Any, settings: Settings, org_id: str
) -> None:
    secret = "cs-" + secrets.token_urlsafe(12)
    okta_token = "00" + secrets.token_urlsafe(30)
    event = audit.append(
        org_id,
        entry(
            details={
                "client_secret": secret,
                "token_endpoint": "https://acme.okta.com/oauth2/v1/token",
                "auth": {"method": "api_token", "token": f"SSWS {okta_token}"},
            }
        ),
        now=NOW,
    )
    body = s3.get_object(Bucket=settings.audit_bucket, Key=event_key(org_id, 1))["Body"].read()
    assert secret.encode() not in body
    assert okta_token.encode() not in body
    assert event.details["client_secret"] == "[REDACTED]"
    assert event.details["auth"]["method"] == "api_token"
    assert event.details["token_endpoint"] == "https://acme.okta.com/oauth2/v1/token"

    # The redactor is a seam: an injected one is the one used.
    audit = AuditLog(
        s3=s3, dynamodb=dynamodb, settings=settings, redact=lambda details: {"kept": len(details)}
    )
    assert audit.append(org_id, entry(details={"a": 1, "b": 2}), now=NOW).details == {"kept": 2}
    # A redactor that returns something that is not JSON details is refused, nothing is stored.
    broken = AuditLog(s3=s3, dynamodb=dynamodb, settings=settings, redact=lambda _: {"x": 1.5})
    with pytest.raises(InvalidAuditEvent, match="details"):
        broken.append(org_id, entry(), now=NOW)
    assert audit.read_head(org_id, now=NOW).seq == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("details", {"ratio": 0.5}),
        ("details", {"blob": b"\x00"}),
        ("details", {"deep": {"a": {"b": {"c": {"d": 1}}}}}),
        ("details", {"big": "x" * 9000}),
        ("details", {"n": 2**60}),
        ("action", "Credential Write"),
        ("action", "credential"),
        ("actor", "alice\nadmin"),
        ("actor", ""),
        ("request_id", "req 1"),
        ("outcome", "maybe"),
        ("target_kind", "CONN#x"),
        ("unknown_field", "x"),
    ],
)
def test_invalid_entries_are_refused_without_echoing_the_input(field: str, value: Any) -> None:
    marker = {"client_secret": "do-not-echo-7f3a"}
    fields = {"details": {**marker, **value}} if field == "details" else {field: value}
    fields.setdefault("details", marker)
    with pytest.raises(ValidationError) as caught:
        entry(**fields)
    assert "do-not-echo-7f3a" not in str(caught.value)
    assert field in str(caught.value)


def test_events_are_listed_newest_first_page_by_page(audit: AuditLog, org_id: str) -> None:
    for n in range(1, 8):
        audit.append(org_id, entry(request_id=f"req-{n}"), now=NOW + timedelta(seconds=n))
    pages = []
    cursor = None
    while True:
        page = audit.list_events(org_id, now=NOW, limit=3, cursor=cursor)
        assert page.missing == ()
        pages.append([event.seq for event in page.events])
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == [[7, 6, 5], [4, 3, 2], [1]]
    first = audit.list_events(org_id, now=NOW, limit=1)
    assert first.events[0].request_id == "req-7"
    assert first.cursor is not None

    other = new_org_id()
    with pytest.raises(InvalidAuditCursor, match="another org"):
        audit.list_events(other, now=NOW, cursor=first.cursor)
    with pytest.raises(InvalidAuditCursor, match="malformed"):
        audit.list_events(org_id, now=NOW, cursor="!!")
    assert audit.list_events(other, now=NOW).events == ()


def test_an_append_whose_stored_put_lost_its_answer_is_in_the_chain_once(
    make_log: Callable[..., AuditLog], audit: AuditLog, settings: Settings, org_id: str
) -> None:
    # S3 stores the first put but its answer never comes back (a read timeout): botocore's
    # retry sends the same conditional put, which finds the key taken (412).
    s3 = boto3.client("s3", region_name="us-east-1", config=PROMPT_CALLS)
    server = boto3.client("s3", region_name="us-east-1")
    sent: list[dict[str, Any]] = []

    def remember(params: dict[str, Any], **_: Any) -> None:
        sent.append(dict(params))

    def lose_the_first_answer(request: Any, **_: Any) -> None:
        if len(sent) == 1:
            server.put_object(**sent[0])
            sent.append({})
            raise ReadTimeoutError(endpoint_url=request.url)

    s3.meta.events.register("provide-client-params.s3.PutObject", remember)
    s3.meta.events.register("before-send.s3.PutObject", lose_the_first_answer)
    event = make_log(s3=s3).append(org_id, entry(request_id="decrypt-1"), now=NOW)
    assert len(sent) == 2  # one put, stored; its answer lost; retried
    [stored] = audit.list_events(org_id, now=NOW).events
    assert (stored.request_id, stored.seq, stored.hash) == ("decrypt-1", 1, event.hash)
    assert audit.verify_chain(org_id, now=NOW).ok
    assert head_item(boto3.client("dynamodb", region_name="us-east-1"), settings, org_id) == {
        "seq": 1,
        "hash": event.hash,
    }
