"""The stalled-deletion sweep: an org deletion that stopped midway (for time, by a fault) is carried
on by the function's schedule once its mark is due, whether or not the owner ever asks again."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from credential_store import deletion_marks, org_deletion, revocations

from strongroom.errors import Conflict
from strongroom.tenancy import StoreUnavailable
from strongroom_local.provision import Stack
from tests.support.events import load_event
from tests.support.http import http_event
from tests.unit.credential_store.conftest import Call, LambdaContext
from tests.unit.credential_store.connection_helpers import (
    created,
    kms_throttled,
    new_org,
    okta_body,
)
from tests.unit.credential_store.test_org_deletion import (
    ORG_ROUTE,
    _delete,
    _fresh,
    _get_org,
    _key_state,
    _partition,
)

SWEEP = "system:org_deletion"
DUE = deletion_marks.GRACE + timedelta(seconds=1)


def _sweep(
    app_module: Any,
    *,
    after: timedelta = DUE,
    seconds_left: float = 30.0,
) -> dict[str, int]:
    """Fire the function's schedule (its sample event) as if `after` had passed."""
    later = datetime.now(UTC) + after
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "_now", lambda: later)
        report = app_module.lambda_handler(
            load_event("credential_store/finish_stalled_deletions"),
            LambdaContext(seconds_left=seconds_left),
        )
    assert isinstance(report, dict)
    return dict(report["deletions"])


def _mark(stack: Stack, org: str) -> dict[str, Any] | None:
    return (
        boto3.client("dynamodb")
        .get_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": f"ORG_DELETION#{org}"}, "sk": {"S": "ORG_DELETION"}},
            ConsistentRead=True,
        )
        .get("Item")
    )


def _events(app_module: Any, org: str) -> list[tuple[str, str, str | None]]:
    """(action, actor, target) of the org's audit events, oldest first, all appended."""
    services = app_module.services()
    later = datetime.now(UTC) + DUE
    services.audit.flush(org, now=later)
    page = services.audit.list_events(org, now=later, limit=100)
    assert not page.missing
    return [(e.action, e.actor, e.target_id) for e in reversed(page.events)]


def _stop_for_time(app_module: Any, org: str, owner: str = "alice") -> None:
    """The owner's DELETE, answered 202: the key shredded, the rest left for later."""
    event = http_event(
        "DELETE", f"/orgs/{org}", sub=owner, route=ORG_ROUTE, path_parameters={"org_id": org}
    )
    event["requestContext"]["authorizer"]["jwt"]["claims"].update(_fresh())
    assert app_module.lambda_handler(event, LambdaContext(seconds_left=1))["statusCode"] == 202


def test_a_deletion_left_before_the_shredding_is_shredded_and_finished_by_the_sweep(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())

    monkeypatch.setattr(revocations, "revoke_at_provider", kms_throttled)
    assert _delete(call, org)[0] == 500
    # The owner walks away: the key is still enabled and the org is still there.
    assert _key_state(org)["KeyState"] == "Enabled"
    assert _mark(stack, org) is not None
    # Not before its grace: the request that marked it may still be at work.
    assert _sweep(app_module, after=timedelta(0)) == {"orgs": 0, "deleted": 0, "failed": 0}
    assert _key_state(org)["KeyState"] == "Enabled"

    revoked: list[str] = []

    def revoke(_services: Any, _org: str, item: Any, **__: Any) -> str:
        revoked.append(str(item.item_id))
        return "revoked"

    monkeypatch.setattr(revocations, "revoke_at_provider", revoke)
    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}

    assert revoked == [connection]
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    assert _get_org(call, org, "alice") == 404
    assert _mark(stack, org) is None
    events = _events(app_module, org)
    assert events.count(("org.delete", "alice", org)) == 1
    carried_on = events[[a for a, _, _ in events].index("org.delete") + 1 :]
    # The sweep's own entries name it, not the owner; the owner who asked is removed last.
    assert ("credential.revoke", SWEEP, connection) in carried_on
    assert ("connection.delete", SWEEP, connection) in carried_on
    assert carried_on[-1] == ("member.remove", SWEEP, "alice")
    assert _sweep(app_module) == {"orgs": 0, "deleted": 0, "failed": 0}


def test_a_deletion_answered_deleting_finishes_without_the_owner(
    call: Call, stack: Stack, app_module: Any
) -> None:
    org = new_org(call)
    created(call, org, okta_body())
    _stop_for_time(app_module, org)
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _get_org(call, org, "alice") == 200

    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    assert _mark(stack, org) is None
    # The owner's next DELETE, later, finds nothing left.
    assert _delete(call, org)[0] == 404


def test_a_refused_or_finished_deletion_leaves_no_mark(call: Call, stack: Stack) -> None:
    org = new_org(call)
    assert _delete(call, org, auth_time="1")[0] == 401
    assert _delete(call, org, sub="bob")[0] == 403
    assert _mark(stack, org) is None
    assert _delete(call, org) == (204, None)
    assert _mark(stack, org) is None


def test_a_mark_whose_deletion_never_started_is_dropped_and_the_org_left_alone(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)

    def changed_meanwhile(*_: Any, **__: Any) -> None:
        raise Conflict("The org changed meanwhile; read it again and retry.")

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_mark_deleting", changed_meanwhile)
        assert _delete(call, org)[0] == 409
    assert _mark(stack, org) is not None

    assert _sweep(app_module) == {"orgs": 0, "deleted": 0, "failed": 0}
    assert _mark(stack, org) is None
    assert _get_org(call, org, "bob") == 200
    assert _key_state(org)["KeyState"] == "Enabled"


def test_one_org_failing_stops_no_other_and_is_taken_up_again_later(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing, other = new_org(call), new_org(call, owner="dave")
    _stop_for_time(app_module, failing)
    _stop_for_time(app_module, other, owner="dave")
    original: Callable[..., Any] = org_deletion._carry_on

    def broken_for_one(services: Any, deleter: Any, org_id: str, *args: Any, **kwargs: Any) -> Any:
        if org_id == failing:
            raise RuntimeError("a defect this org's data reaches")
        return original(services, deleter, org_id, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_carry_on", broken_for_one)
        assert _sweep(app_module) == {"orgs": 2, "deleted": 1, "failed": 1}
    assert _partition(stack, other) == {"AUDIT#HEAD"}
    assert _get_org(call, failing, "alice") == 200
    # Put back behind the others: not due again at once, but after the retry delay.
    assert _sweep(app_module) == {"orgs": 0, "deleted": 0, "failed": 0}
    later = DUE + deletion_marks.RETRY
    assert _sweep(app_module, after=later) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _partition(stack, failing) == {"AUDIT#HEAD"}


def test_the_sweep_takes_up_no_org_without_the_time_to_carry_it_on(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shredded, unshredded = new_org(call), new_org(call, owner="dave")
    _stop_for_time(app_module, shredded)

    created(call, unshredded, okta_body(), sub="dave")
    with monkeypatch.context() as patch:
        patch.setattr(revocations, "revoke_at_provider", kms_throttled)
        assert _delete(call, unshredded, sub="dave")[0] == 500
    short = org_deletion.SWEEP_RESERVE_SECONDS - 1
    assert _sweep(app_module, seconds_left=short) == {"orgs": 0, "deleted": 0, "failed": 0}
    assert _mark(stack, shredded) is not None
    # Enough for what is left of a shredded org, not for an unshredded one's revocations.
    enough = org_deletion.UNSHREDDED_BUDGET_SECONDS - 1
    assert _sweep(app_module, seconds_left=enough) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _key_state(unshredded)["KeyState"] == "Enabled"
    assert _mark(stack, unshredded) is not None
    monkeypatch.setattr(revocations, "revoke_at_provider", lambda *_, **__: "revoked")
    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _key_state(unshredded)["KeyState"] == "PendingDeletion"


def _make_owner(call: Call, org: str, user: str, by: str = "alice") -> None:
    status, body = call(
        "PUT",
        f"/orgs/{org}/members/{user}",
        sub=by,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
        body={"role": "owner"},
    )
    assert status == 200, body


def _stall_after_marking(
    call: Call,
    org: str,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[], None],
    answer: int = 409,
) -> None:
    """alice's DELETE marks the org, then `meanwhile` happens before her removals, and she gets
    `answer`: 409 when she is no longer an owner."""
    original = org_deletion._remove_other_members
    pending = [meanwhile]

    def interleaved(*args: Any, **kwargs: Any) -> None:
        while pending:  # once: not again in a request `meanwhile` makes
            pending.pop()()
        original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_remove_other_members", interleaved)
        assert _delete(call, org)[0] == answer


def test_a_deletion_whose_owner_was_removed_before_the_shredding_is_abandoned(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")

    def bob_removes_alice() -> None:
        # Another owner stops the deletion the only way there is: by removing its requester.
        assert _remove(call, org, "alice", "bob") == 204

    _stall_after_marking(call, org, monkeypatch, bob_removes_alice)
    status, body = call(
        "GET", f"/orgs/{org}", sub="bob", route=ORG_ROUTE, path_parameters={"org_id": org}
    )
    assert (status, body["deletion_started_at"] is not None) == (200, True)

    assert _sweep(app_module) == {"orgs": 1, "deleted": 0, "failed": 0}
    # Nothing of the org is touched: its key, its members; and it no longer says it is deleting.
    assert _key_state(org)["KeyState"] == "Enabled"
    status, body = call(
        "GET", f"/orgs/{org}", sub="bob", route=ORG_ROUTE, path_parameters={"org_id": org}
    )
    assert (status, body["deletion_started_at"]) == (200, None)
    assert _get_org(call, org, "carol") == 200
    assert _mark(stack, org) is None
    assert ("org.delete", SWEEP, org) in _events(app_module, org)
    page = app_module.services().audit.list_events(org, now=datetime.now(UTC) + DUE, limit=1)
    assert (page.events[0].outcome, page.events[0].details) == (
        "denied",
        {"reason": "requester_no_longer_owner", "requested_by": "alice"},
    )


def test_another_owner_who_deletes_a_stalled_deletion_carries_it_on_as_theirs(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")

    def bob_deletes_too() -> None:
        # bob, signed in just now, deletes the org alice is deleting (her removals then fail).
        assert _delete(call, org, sub="bob") == (204, None)

    # alice's own request then finds the org gone.
    _stall_after_marking(call, org, monkeypatch, bob_deletes_too, answer=404)
    assert _partition(stack, org) == {"AUDIT#HEAD"}
    events = _events(app_module, org)
    assert [(a, actor) for a, actor, _ in events if a == "org.delete"] == [
        ("org.delete", "alice"),
        ("org.delete", "bob"),
    ]
    assert events[-1] == ("member.remove", "bob", "bob")
    assert _sweep(app_module) == {"orgs": 0, "deleted": 0, "failed": 0}


def test_two_sweeps_at_once_carry_a_deletion_on_once(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())

    with monkeypatch.context() as patch:
        patch.setattr(revocations, "revoke_at_provider", kms_throttled)
        assert _delete(call, org)[0] == 500
    second: list[dict[str, int]] = []
    listed: list[Any] = []
    due = deletion_marks.due

    def first_listing(*args: Any, **kwargs: Any) -> Any:
        # Both sweeps get the listing the first one read (as two deliveries of one schedule
        # would, or a stale index read): the second finds the mark claimed.
        if not listed:
            listed.extend(due(*args, **kwargs))
        yield from listed

    def revoke(*_: Any, **__: Any) -> str:
        if not second:
            # A duplicate delivery of the schedule runs while the first sweep is revoking.
            second.append({})
            second[0] = _sweep(app_module)
        return "revoked"

    monkeypatch.setattr(deletion_marks, "due", first_listing)
    monkeypatch.setattr(revocations, "revoke_at_provider", revoke)
    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert second == [{"orgs": 0, "deleted": 0, "failed": 0}]
    events = _events(app_module, org)
    assert events.count(("credential.revoke", SWEEP, connection)) == 1
    assert events.count(("connection.delete", SWEEP, connection)) == 1


def test_a_mark_put_again_since_it_was_listed_is_left_to_its_request(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _stop_for_time(app_module, org)
    listed = deletion_marks.due

    def stale(platform: Any, *, now: datetime) -> Any:
        marks = list(listed(platform, now=now))
        # The owner's DELETE marks the org again between the listing and the sweep's claim.
        deletion_marks.put(platform, org, now=datetime.now(UTC))
        yield from marks

    monkeypatch.setattr(deletion_marks, "due", stale)
    assert _sweep(app_module) == {"orgs": 0, "deleted": 0, "failed": 0}
    assert _get_org(call, org, "alice") == 200
    assert _mark(stack, org) is not None


def test_an_owner_deleting_while_the_sweep_works_finishes_and_the_sweep_fails_nothing(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    created(call, org, okta_body())

    with monkeypatch.context() as patch:
        patch.setattr(revocations, "revoke_at_provider", kms_throttled)
        assert _delete(call, org)[0] == 500
    answers: list[Any] = []
    owner_deletes = [True]

    def revoke(*_: Any, **__: Any) -> str:
        if owner_deletes:
            owner_deletes.clear()  # once: the owner's own revocation does not nest another
            # The owner, signed in again, DELETEs while the sweep is revoking (in the sweep's
            # time, some minutes on).
            signed_in = int((datetime.now(UTC) + DUE).timestamp()) - 5
            answers.append(_delete(call, org, auth_time=str(signed_in)))
        return "revoked"

    monkeypatch.setattr(revocations, "revoke_at_provider", revoke)
    report = _sweep(app_module)
    assert answers == [(204, None)]
    assert report == {"orgs": 1, "deleted": 0, "failed": 0}
    # Only the audit chain's items: its head, and the sweep's revocation entry still pending.
    assert {sk for sk in _partition(stack, org) if not sk.startswith("AUDIT")} == set()
    assert _key_state(org)["KeyState"] == "PendingDeletion"
    assert _mark(stack, org) is None


def _remove(call: Call, org: str, user: str, sub: str) -> int:
    status, _ = call(
        "DELETE",
        f"/orgs/{org}/members/{user}",
        sub=sub,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
    )
    return int(status)


def _owner_count(stack: Stack, org: str) -> int:
    item = boto3.client("dynamodb").get_item(
        TableName=stack.ref("Table"),
        Key={"pk": {"S": org}, "sk": {"S": "ORG"}},
        ConsistentRead=True,
    )["Item"]
    return int(item["owner_count"]["N"])


def test_owners_removed_by_a_deletion_leave_the_org_a_true_owner_count(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")
    _make_owner(call, org, "carol")
    assert _owner_count(stack, org) == 3
    original = org_deletion._remove_member
    stopped: list[int] = []

    def carol_steps_in(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)  # alice's deletion removes one owner (bob or carol)...
        if not stopped:
            # ...then the other stops it by removing alice.
            (other,) = {"bob", "carol"} - {str(args[3].item_id)}
            stopped.append(_remove(call, org, "alice", other))

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_remove_member", carol_steps_in)
        assert _delete(call, org)[0] == 409
    assert stopped == [204]
    assert _sweep(app_module) == {"orgs": 1, "deleted": 0, "failed": 0}  # abandoned
    # One owner is left, and the count says so: they cannot leave the org ownerless.
    assert _owner_count(stack, org) == 1
    (last,) = [u for u in ("bob", "carol") if _get_org(call, org, u) == 200]
    assert _remove(call, org, last, last) == 409


def test_the_one_deleting_cannot_leave_their_stalled_deletion_ownerless(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")
    created(call, org, okta_body())
    with monkeypatch.context() as patch:
        patch.setattr(revocations, "revoke_at_provider", kms_throttled)
        assert _delete(call, org)[0] == 500  # bob and carol removed, the key intact
    assert _owner_count(stack, org) == 1
    assert _remove(call, org, "alice", "alice") == 409
    monkeypatch.setattr(revocations, "revoke_at_provider", lambda *_, **__: "revoked")
    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _partition(stack, org) == {"AUDIT#HEAD"}


def test_a_deletion_taken_over_by_another_owner_is_theirs_to_finish(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")
    original = org_deletion._remove_other_members
    bob: list[int] = []

    def bob_takes_over(services: Any, deleter: Any, *args: Any, **kwargs: Any) -> None:
        if deleter.owner == "bob":
            raise StoreUnavailable("DynamoDB TransactWriteItems failed (ThrottlingException)")
        if not bob:
            # bob DELETEs while alice's request runs: he takes the deletion over, then fails.
            bob.append(_delete(call, org, sub="bob")[0])
        original(services, deleter, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_remove_other_members", bob_takes_over)
        # alice's request may no longer remove bob: the deletion is his now.
        assert _delete(call, org)[0] == 409
    assert bob == [500]
    assert _get_org(call, org, "bob") == 200
    assert _key_state(org)["KeyState"] == "Enabled"
    assert _sweep(app_module) == {"orgs": 1, "deleted": 1, "failed": 0}
    events = _events(app_module, org)
    assert [actor for action, actor, _ in events if action == "org.delete"] == ["alice", "bob"]
    assert events[-1] == ("member.remove", SWEEP, "bob")


def test_an_owner_who_deletes_again_before_the_abandonment_lands_keeps_the_deletion(
    call: Call, stack: Stack, app_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    _make_owner(call, org, "bob")
    created(call, org, okta_body())

    def bob_removes_alice() -> None:
        assert _remove(call, org, "alice", "bob") == 204

    _stall_after_marking(call, org, monkeypatch, bob_removes_alice)
    original = org_deletion._abandon

    def alice_is_back(*args: Any, **kwargs: Any) -> None:
        # Between the sweep's look and its abandonment: bob makes alice an owner again, and
        # she DELETEs (signed in just now, in the sweep's time), which fails right after
        # marking the org (so bob is still an owner who could have stopped it).
        _make_owner(call, org, "alice", by="bob")

        def table_down(*_: Any, **__: Any) -> None:
            raise StoreUnavailable("DynamoDB Query failed (ThrottlingException)")

        with monkeypatch.context() as patch:
            patch.setattr(org_deletion, "_remove_other_members", table_down)
            signed_in = int((datetime.now(UTC) + DUE).timestamp()) - 5
            assert _delete(call, org, auth_time=str(signed_in))[0] == 500
        original(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(org_deletion, "_abandon", alice_is_back)
        assert _sweep(app_module) == {"orgs": 1, "deleted": 0, "failed": 1}
    # Her new request stands: the deletion is still hers, and a later sweep finishes it.
    monkeypatch.setattr(revocations, "revoke_at_provider", lambda *_, **__: "revoked")
    later = DUE + deletion_marks.RETRY
    assert _sweep(app_module, after=later) == {"orgs": 1, "deleted": 1, "failed": 0}
    assert _partition(stack, org) == {"AUDIT#HEAD"}
