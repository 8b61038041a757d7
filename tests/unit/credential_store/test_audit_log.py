"""GET /orgs/{org_id}/audit through the handler: admins and owners read the org's events newest
first, a page at a time; a gap shows in `missing`; an audit store outage answers no page."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.audit import GENESIS_HASH, event_key
from strongroom.audit.events import AuditEntry, canonical_json, event_hash, seal_event
from strongroom.settings import Settings
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import Call, Invoke

ROUTE = "/orgs/{org_id}/audit"
SHOWN_FIELDS = {
    "seq",
    "occurred_at",
    "actor",
    "action",
    "target_kind",
    "target_id",
    "outcome",
    "request_id",
    "details",
    "prev_hash",
    "hash",
}


def _create(call: Call, sub: str = "alice") -> str:
    status, body = call("POST", "/orgs", sub=sub, body={"name": "Acme"})
    assert status == 201, body
    return str(body["org_id"])


def _put(call: Call, org: str, user: str, role: str) -> None:
    status, body = call(
        "PUT",
        f"/orgs/{org}/members/{user}",
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
        body={"role": role},
    )
    assert status == 200, body


def _list(
    invoke: Invoke, org: str, sub: str = "alice", route: str = ROUTE, **query: object
) -> tuple[int, Any]:
    event = http_event(
        "GET", route.format(org_id=org), sub=sub, route=route, path_parameters={"org_id": org}
    )
    if query:
        event["queryStringParameters"] = {name: str(value) for name, value in query.items()}
    return invoke(event)


def _audit_bucket(app_module: Any) -> str:
    return str(app_module.services().settings.audit_bucket)


def test_admins_and_owners_read_the_events_newest_first_as_stored(
    call: Call, invoke: Invoke, app_module: Any
) -> None:
    org = _create(call)
    _put(call, org, "bob", "admin")
    _put(call, org, "carol", "member")
    s3 = boto3.client("s3")
    for sub in ("alice", "bob"):
        status, body = _list(invoke, org, sub=sub)
        assert status == 200, body
        assert set(body) == {"events", "next_cursor", "missing", "tampered"}
        assert (body["next_cursor"], body["missing"], body["tampered"]) == (None, [], [])
        events = body["events"]
        assert [(e["seq"], e["action"], e["target_id"]) for e in events] == [
            (3, "member.add", "carol"),
            (2, "member.add", "bob"),
            (1, "org.create", org),
        ]
        assert events[1]["details"] == {"role": "admin"}
        assert {(e["actor"], e["outcome"]) for e in events} == {("alice", "success")}
        # Each event links to the one before it, and shows only fields the stored event holds,
        # with the values it holds.
        assert [e["prev_hash"] for e in events] == [e["hash"] for e in events[1:]] + [GENESIS_HASH]
        for shown in events:
            stored = json.loads(
                s3.get_object(Bucket=_audit_bucket(app_module), Key=event_key(org, shown["seq"]))[
                    "Body"
                ].read()
            )
            assert set(shown) == SHOWN_FIELDS
            assert shown == {name: stored.get(name) for name in SHOWN_FIELDS}


def test_members_are_forbidden_and_outsiders_see_no_org(call: Call, invoke: Invoke) -> None:
    org = _create(call)
    _put(call, org, "carol", "member")
    status, body = _list(invoke, org, sub="carol")
    assert status == 403
    assert body["error"]["code"] == "forbidden"

    missing = "org_" + "a" * 26
    answers = [_list(invoke, org, sub="mallory"), _list(invoke, missing, sub="alice")]
    assert [status for status, _ in answers] == [404, 404]
    assert answers[0][1] == answers[1][1]
    assert answers[0][1]["error"]["code"] == "not_found"
    # Even a bad cursor tells an outsider nothing.
    assert _list(invoke, org, sub="mallory", cursor="not-a-cursor") == answers[0]


def test_pages_follow_the_cursor_newest_first_with_no_event_twice_or_left_out(
    call: Call, invoke: Invoke
) -> None:
    org = _create(call)
    for n in range(11):
        _put(call, org, f"user{n}", "member")
    seen: list[int] = []
    pages = []
    query: dict[str, object] = {"limit": 5}
    while True:
        status, body = _list(invoke, org, **query)
        assert status == 200, body
        assert body["missing"] == []
        pages.append(len(body["events"]))
        seen += [event["seq"] for event in body["events"]]
        if body["next_cursor"] is None:
            break
        query = {"limit": 5, "cursor": body["next_cursor"]}
    assert pages == [5, 5, 2]
    assert seen == list(range(12, 0, -1))
    # The default page holds them all.
    status, body = _list(invoke, org)
    assert [event["seq"] for event in body["events"]] == seen
    assert body["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["eyJ4IjoxfQ", "not-a-cursor", "A" * 300, "A" * 1000])
def test_a_forged_cursor_answers_as_on_every_other_listing(
    call: Call, invoke: Invoke, cursor: str
) -> None:
    org = _create(call)
    status, body = _list(invoke, org, cursor=cursor)
    assert status == 422, body
    assert body["error"]["code"] == "invalid_cursor"
    assert (status, body) == _list(invoke, org, route="/orgs/{org_id}/members", cursor=cursor)


def test_another_orgs_cursor_is_refused(call: Call, invoke: Invoke) -> None:
    org, other = _create(call), _create(call)
    for n in range(3):
        _put(call, other, f"user{n}", "member")
    status, body = _list(invoke, other, limit=2)
    assert status == 200
    foreign = body["next_cursor"]
    assert foreign is not None
    status, body = _list(invoke, org, cursor=foreign)
    assert status == 422
    assert body["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("limit", [0, 101, "many"])
def test_a_limit_out_of_range_is_an_invalid_field(
    call: Call, invoke: Invoke, limit: object
) -> None:
    org = _create(call)
    status, body = _list(invoke, org, limit=limit)
    assert status == 422
    assert body["error"]["code"] == "invalid_field"


@pytest.mark.parametrize(
    "damage",
    ["junk", "not an event", "deleted"],
)
def test_an_unreadable_event_is_listed_as_missing(
    call: Call, invoke: Invoke, app_module: Any, damage: str
) -> None:
    org = _create(call)
    _put(call, org, "bob", "admin")
    _put(call, org, "carol", "member")
    s3 = boto3.client("s3")
    bucket, key = _audit_bucket(app_module), event_key(org, 2)
    # Object Lock keeps the original version; these make another one current, as a writer with
    # s3:PutObject (or s3:DeleteObject) could.
    if damage == "deleted":
        s3.delete_object(Bucket=bucket, Key=key)
    else:
        stored = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        body = b"\x00junk" if damage == "junk" else json.dumps({**stored, "seq": "two"}).encode()
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    status, page = _list(invoke, org, limit=2)
    assert status == 200, page
    assert [event["seq"] for event in page["events"]] == [3]
    assert page["missing"] == [2]
    status, page = _list(invoke, org, cursor=page["next_cursor"])
    assert ([event["seq"] for event in page["events"]], page["missing"]) == ([1], [])


def _rewrite(app_module: Any, org: str, seq: int, **changes: Any) -> dict[str, Any]:
    """Make an edited copy of event `seq` the current version (Object Lock keeps the original),
    as a writer with s3:PutObject could; `rehash` recomputes its hash, as a careful one would."""
    s3 = boto3.client("s3")
    bucket, key = _audit_bucket(app_module), event_key(org, seq)
    document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    rehash = changes.pop("rehash", False)
    document.update(changes)
    if rehash:
        document["hash"] = event_hash(document)
    s3.put_object(Bucket=bucket, Key=key, Body=canonical_json(document))
    return document


def _five_events(call: Call) -> str:
    org = _create(call)
    for user, role in (("bob", "admin"), ("carol", "member"), ("dave", "member"), ("bob", "owner")):
        _put(call, org, user, role)
    return org


@pytest.mark.parametrize(
    ("seq", "changes", "flagged"),
    [
        # An edit that leaves the stored hash: the event itself does not hash to it.
        (3, {"actor": "mallory"}, [3]),
        # The hash recomputed too: the event after it names another hash.
        (3, {"actor": "mallory", "rehash": True}, [3]),
        # The chain's newest, rehashed: the head no longer names it.
        (5, {"details": {"role": "member"}, "rehash": True}, [5]),
        # The first event, re-rooted and rehashed: it no longer starts from genesis (nor has the
        # hash the event after it names).
        (1, {"prev_hash": "f" * 64, "rehash": True}, [1]),
    ],
)
def test_an_edited_event_is_listed_as_tampered(
    call: Call,
    invoke: Invoke,
    app_module: Any,
    *,
    seq: int,
    changes: dict[str, Any],
    flagged: list[int],
) -> None:
    org = _five_events(call)
    _rewrite(app_module, org, seq, **changes)
    status, page = _list(invoke, org)
    assert status == 200, page
    assert ([e["seq"] for e in page["events"]], page["missing"]) == ([5, 4, 3, 2, 1], [])
    assert page["tampered"] == flagged


def test_links_are_checked_across_pages(call: Call, invoke: Invoke, app_module: Any) -> None:
    org = _five_events(call)
    # Event 3 rehashed: the break is between it (the newest of the second page) and event 4 (on
    # the first): the second page reads event 4 to learn what event 3 must be.
    _rewrite(app_module, org, 3, actor="mallory", rehash=True)
    status, first = _list(invoke, org, limit=2)
    assert status == 200
    assert ([e["seq"] for e in first["events"]], first["tampered"]) == ([5, 4], [])
    status, second = _list(invoke, org, limit=2, cursor=first["next_cursor"])
    assert status == 200
    assert ([e["seq"] for e in second["events"]], second["tampered"]) == ([3, 2], [3])


def test_an_event_failing_its_own_hash_casts_no_doubt_on_the_one_below(
    call: Call, invoke: Invoke, app_module: Any
) -> None:
    org = _five_events(call)
    _rewrite(app_module, org, 3, prev_hash="f" * 64)  # its stored hash left as it was
    status, page = _list(invoke, org)
    assert (status, page["tampered"]) == (200, [3])


def _put_event(app_module: Any, org: str, seq: int, prev_hash: str) -> None:
    """An event object at `seq` whose writer did not get to move the head."""
    entry = AuditEntry(actor="alice", action="member.add", request_id="r1", outcome="success")
    event = seal_event(
        entry, org_id=org, seq=seq, prev_hash=prev_hash, occurred_at=datetime.now(UTC), details={}
    )
    boto3.client("s3").put_object(
        Bucket=_audit_bucket(app_module),
        Key=event_key(org, seq),
        Body=canonical_json(event.document()),
    )


@pytest.mark.parametrize("links", [True, False])
def test_an_event_above_the_head_must_follow_the_head(
    call: Call, invoke: Invoke, app_module: Any, *, links: bool
) -> None:
    org = _five_events(call)
    head = app_module.services().audit.read_head(org, now=datetime.now(UTC))
    assert head.seq == 5
    _put_event(app_module, org, 6, head.hash if links else "e" * 64)
    status, page = _list(invoke, org)
    assert status == 200
    assert [e["seq"] for e in page["events"]] == [6, 5, 4, 3, 2, 1]
    # Event 5 is what the head names whatever event 6 claims; event 6 must follow it.
    assert page["tampered"] == ([] if links else [6])


def test_an_event_whose_time_cannot_be_read_is_missing_not_an_error(
    call: Call, invoke: Invoke, app_module: Any
) -> None:
    org = _five_events(call)
    # A valid-looking time with no UTC equivalent (before year 1 once moved to UTC).
    _rewrite(app_module, org, 3, occurred_at="0001-01-01T00:00:00+01:00", rehash=True)
    status, page = _list(invoke, org)
    assert (status, page["missing"]) == (200, [3])
    report = app_module.services().audit.verify_chain(org, now=datetime.now(UTC))
    assert not report.ok
    assert 3 in {problem.seq for problem in report.problems}


@dataclass
class S3Reads:
    """The audit bucket's reads: `answered` more succeed, then the endpoint is unreachable."""

    answered: int | None = None

    def __call__(self, **_: Any) -> None:
        if self.answered is None:
            return
        if self.answered == 0:
            raise EndpointConnectionError(endpoint_url="https://s3.invalid")
        self.answered -= 1


@pytest.fixture
def s3_reads(app_module: Any, iam_check: IamCheck, monkeypatch: pytest.MonkeyPatch) -> S3Reads:
    """The handler's services rebuilt on a session whose S3 reads can fail."""
    from credential_store import services as services_module

    reads = S3Reads()
    session = iam_check.session()
    session.events.register("before-call.s3.GetObject", reads)
    built = services_module.build_services(Settings.from_environ(os.environ), session)
    monkeypatch.setattr(services_module, "services", lambda: built)
    monkeypatch.setattr(app_module, "services", lambda: built)
    return reads


@pytest.mark.parametrize("answered", [0, 2])
def test_an_audit_outage_answers_as_a_store_outage_with_no_partial_page(
    call: Call, invoke: Invoke, s3_reads: S3Reads, answered: int
) -> None:
    org = _create(call)
    _put(call, org, "bob", "admin")
    _put(call, org, "carol", "member")
    s3_reads.answered = answered  # the outage begins at the first read, or mid-page
    status, body = _list(invoke, org)
    assert status == 500
    assert body == {
        "error": {
            "code": "internal_error",
            "message": "Something went wrong. The request id is in the logs.",
        }
    }
    s3_reads.answered = None
    status, body = _list(invoke, org)
    assert status == 200
    assert [event["seq"] for event in body["events"]] == [3, 2, 1]
