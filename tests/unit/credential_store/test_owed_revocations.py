"""Revocations still owed: a grant a deletion or rotation dropped, which the provider did not
take in the request (a failure, a hang, no time, the request dying), is tried again by the
function's schedule until the provider takes it, or given up after MAX_ATTEMPTS; an org's
deletion revokes the grants its org still owes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from credential_store import revocations
from credential_store.sweep_marks import SweepMarks

from strongroom.tenancy import StoreUnavailable
from strongroom_local.provision import Stack
from tests.support.events import load_event
from tests.unit.credential_store.conftest import Call, LambdaContext
from tests.unit.credential_store.connection_helpers import (
    created,
    delete,
    get,
    holds_a_revocable_grant,
    kms_throttled,
    new_org,
    okta_body,
    revocations_recorded,
    rotate,
)
from tests.unit.credential_store.test_org_deletion import _delete, _partition

SWEEP = "system:revocation"
CODE = {"method": "authorization_code", "client_id": "app", "client_secret": "s3cr3t-value"}
DUE = revocations.MARKS.grace + timedelta(seconds=1)


class _Provider:
    """The provider as the revocation meets it: `answer` is what it does next."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answer: Callable[..., str] = kms_throttled
        self.asked: list[str] = []
        holds_a_revocable_grant(monkeypatch)
        monkeypatch.setattr(revocations, "revoke_at_provider", self._revoke)

    def _revoke(self, _services: Any, _org: str, connection: Any, **kwargs: Any) -> str:
        self.asked.append(str(connection.item_id))
        return self.answer(**kwargs)


class _RunningContext(LambdaContext):
    """A context whose remaining time runs down with the clock, as Lambda's does."""

    def __init__(self, seconds_left: float) -> None:
        super().__init__(seconds_left)
        self._until = time.monotonic() + seconds_left

    def get_remaining_time_in_millis(self) -> int:
        return int((self._until - time.monotonic()) * 1000)


def _sweep(
    app_module: Any, after: timedelta = DUE, context: LambdaContext | None = None
) -> dict[str, int]:
    """Fire the function's schedule as if `after` had passed: the revocations' report."""
    later = datetime.now(UTC) + after
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_module, "_now", lambda: later)
        report = app_module.lambda_handler(
            load_event("credential_store/finish_stalled_deletions"), context or LambdaContext()
        )
    return dict(report["revocations"])


def _owed(stack: Stack, org: str) -> list[str]:
    return sorted(sk for sk in _partition(stack, org) if sk.startswith("REVOCATION#"))


def _marks(stack: Stack) -> list[str]:
    items = boto3.client("dynamodb").scan(TableName=stack.ref("Table"))["Items"]
    return [i["pk"]["S"] for i in items if i["pk"]["S"].startswith("REVOCATION#")]


def _deleted_owing(call: Call, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str, _Provider]:
    """An org whose connection was deleted, the provider failing its grant's revocation."""
    org = new_org(call)
    connection = created(call, org, okta_body())
    provider = _Provider(monkeypatch)
    assert delete(call, org, connection)[0] == 204
    return org, connection, provider


def _revoked(**_: Any) -> str:
    return "revoked"


def test_a_revocation_that_failed_at_deletion_is_tried_again_until_the_provider_takes_it(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection, provider = _deleted_owing(call, monkeypatch)
    assert get(call, org, connection)[0] == 404  # the deletion stands
    assert len(_owed(stack, org)) == 1
    assert len(_marks(stack)) == 1

    # Not before the request's own grace: it may still be at work on it.
    assert _sweep(app_module, after=timedelta(0)) == {"attempts": 0, "revoked": 0, "gave_up": 0}
    assert _sweep(app_module) == {"attempts": 1, "revoked": 0, "gave_up": 0}  # still failing
    # Claimed: not tried again before its wait is over.
    assert _sweep(app_module) == {"attempts": 0, "revoked": 0, "gave_up": 0}
    provider.answer = _revoked
    later = DUE + revocations.RETRY
    assert _sweep(app_module, after=later) == {"attempts": 1, "revoked": 1, "gave_up": 0}
    assert provider.asked == [connection] * 3
    assert _owed(stack, org) == []
    assert _marks(stack) == []
    assert revocations_recorded(app_module, org) == [
        ("failure", {"revocation": "failed", "retry_scheduled": True}),
        ("failure", {"revocation": "failed", "attempt": 2, "retry_scheduled": True}),
        ("success", {"revocation": "revoked", "attempt": 3}),
    ]
    assert [a for a, _ in _actors(app_module, org)] == ["bob", SWEEP, SWEEP]
    # Settled: nothing more to try.
    assert _sweep(app_module, after=later * 4) == {"attempts": 0, "revoked": 0, "gave_up": 0}


def _actors(app_module: Any, org: str) -> list[tuple[str, str]]:
    services = app_module.services()
    events = services.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    return [(e.actor, e.outcome) for e in reversed(events) if e.action == "credential.revoke"]


def test_a_revocation_the_provider_takes_at_once_owes_nothing(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    _Provider(monkeypatch).answer = _revoked
    assert delete(call, org, connection)[0] == 204
    assert _owed(stack, org) == []
    assert _marks(stack) == []
    assert revocations_recorded(app_module, org) == [("success", {"revocation": "revoked"})]


def test_a_request_that_dies_after_its_change_leaves_the_revocation_to_the_sweep(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body(auth=CODE))
    provider = _Provider(monkeypatch)
    provider.answer = _revoked

    def dies(*_: Any, **__: Any) -> None:
        raise SystemExit("the function timed out")  # as Lambda stops it: nothing more runs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(revocations, "revoke_owed", dies)
        with pytest.raises(SystemExit):
            rotate(call, org, connection, {**CODE, "client_id": "other-app"})
    assert provider.asked == []
    assert len(_owed(stack, org)) == 1
    assert _sweep(app_module) == {"attempts": 1, "revoked": 1, "gave_up": 0}
    assert provider.asked == [connection]
    assert revocations_recorded(app_module, org) == [
        ("success", {"revocation": "revoked", "reason": "credentials_replaced", "attempt": 2})
    ]
    assert _owed(stack, org) == []
    assert _marks(stack) == []


def test_a_revocation_the_provider_never_takes_is_given_up_after_the_last_attempt(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _, provider = _deleted_owing(call, monkeypatch)
    # Each attempt when its wait is over, not a minute before: 5 min, then 10, 20, 40, ...
    after, wait = DUE, timedelta(0)
    gave_up = []
    for attempt in range(2, revocations.MAX_ATTEMPTS + 1):
        after += wait
        early = _sweep(app_module, after=after - timedelta(minutes=1))
        assert early["attempts"] == 0, attempt
        report = _sweep(app_module, after=after)
        assert report["attempts"] == 1, attempt
        gave_up.append(report["gave_up"])
        wait = revocations.RETRY * 2 ** (attempt - 2)
    assert gave_up == [0] * (revocations.MAX_ATTEMPTS - 2) + [1]
    assert after < revocations.GIVE_UP_AFTER  # the attempts ran out first
    assert len(provider.asked) == revocations.MAX_ATTEMPTS
    recorded = revocations_recorded(app_module, org)
    assert len(recorded) == revocations.MAX_ATTEMPTS
    assert recorded[-1] == (
        "failure",
        {"revocation": "failed", "attempt": revocations.MAX_ATTEMPTS, "given_up": True},
    )
    assert all(details.get("retry_scheduled") for _, details in recorded[:-1])
    assert _owed(stack, org) == []
    assert _marks(stack) == []
    assert _sweep(app_module, after=after * 2)["attempts"] == 0


def test_a_debt_the_sweep_did_not_reach_for_a_day_is_given_up_recorded_before_it_expires(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _, provider = _deleted_owing(call, monkeypatch)
    provider.answer = _revoked
    late = revocations.GIVE_UP_AFTER + timedelta(minutes=1)
    assert late < revocations.OWED_FOR
    assert _sweep(app_module, after=late) == {"attempts": 1, "revoked": 0, "gave_up": 1}
    assert len(provider.asked) == 1  # only the request's own attempt
    assert revocations_recorded(app_module, org)[-1] == (
        "failure",
        {"revocation": "not_attempted", "attempt": 2, "given_up": True},
    )
    assert _owed(stack, org) == []
    assert _marks(stack) == []


def test_a_token_that_expired_before_the_retry_settles_the_debt_recorded(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _, provider = _deleted_owing(call, monkeypatch)
    provider.answer = lambda **_: "not_applicable"
    assert _sweep(app_module) == {"attempts": 1, "revoked": 0, "gave_up": 0}
    assert revocations_recorded(app_module, org)[-1] == (
        "success",
        {"revocation": "not_applicable", "attempt": 2},
    )
    assert _owed(stack, org) == []
    assert _marks(stack) == []


def test_one_orgs_many_debts_do_not_hold_back_another_orgs(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    busy, _, provider = _deleted_owing(call, monkeypatch)
    for _ in range(3):
        assert delete(call, busy, created(call, busy, okta_body()))[0] == 204
    other = new_org(call)
    assert delete(call, other, created(call, other, okta_body()))[0] == 204
    provider.asked.clear()
    provider.answer = _revoked
    first = _sweep(app_module)
    assert first == {"attempts": 1 + revocations.PER_ORG_PER_RUN, "revoked": 3, "gave_up": 0}
    assert _owed(stack, other) == []
    assert len(_owed(stack, busy)) == 4 - revocations.PER_ORG_PER_RUN
    assert _sweep(app_module)["revoked"] == 2
    assert _owed(stack, busy) == []


def test_an_org_deletion_revokes_the_grants_its_org_still_owes(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection, provider = _deleted_owing(call, monkeypatch)
    assert len(_owed(stack, org)) == 1
    provider.answer = _revoked
    assert _delete(call, org)[0] == 204
    # Before the key was shredded (after the request's own attempt), with the org's own reason.
    assert provider.asked == [connection, connection]
    assert revocations_recorded(app_module, org)[-1] == (
        "success",
        {"revocation": "revoked", "reason": "org_deleted"},
    )
    assert _owed(stack, org) == []
    # Its debt went with the org: the sweep only drops the mark.
    assert _sweep(app_module) == {"attempts": 0, "revoked": 0, "gave_up": 0}
    assert _marks(stack) == []
    assert provider.asked == [connection, connection]


def test_a_change_whose_revocation_cannot_be_marked_is_not_made(
    call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())
    _Provider(monkeypatch)

    def unavailable(*_: Any, **__: Any) -> None:
        raise StoreUnavailable("DynamoDB is throttling")

    monkeypatch.setattr(SweepMarks, "put", unavailable)
    status, _ = delete(call, org, connection)
    assert status == 500  # as every store outage answers
    assert get(call, org, connection)[0] == 200
    assert _owed(stack, org) == []


def test_nothing_to_revoke_owes_nothing(call: Call, stack: Stack) -> None:
    org = new_org(call)
    connection = created(call, org, okta_body())  # an API token: no grant to revoke
    assert delete(call, org, connection)[0] == 204
    assert _owed(stack, org) == []
    assert _marks(stack) == []


def test_no_attempt_is_started_without_the_time_to_reach_the_provider(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _, provider = _deleted_owing(call, monkeypatch)
    short = revocations.SWEEP_RESERVE_SECONDS + revocations.MIN_ATTEMPT_SECONDS - 0.5
    report = _sweep(app_module, context=LambdaContext(short))
    assert report == {"attempts": 0, "revoked": 0, "gave_up": 0}
    assert len(provider.asked) == 1  # the request's own
    [owed] = _owed(stack, org)
    # Not even counted: the attempts left are all still to come.
    assert _debt(stack, org, owed)["attempts"] == {"N": "1"}


def test_attempts_stalled_past_the_functions_time_are_left_and_the_sweep_answers(
    app_module: Any, call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, _, _ = _deleted_owing(call, monkeypatch)
    released = threading.Event()

    def stalled(*_: Any, **__: Any) -> str:
        released.wait(60)  # a DynamoDB or audit call that does not answer
        return "revoked"

    monkeypatch.setattr(revocations, "_retry_one", stalled)
    seconds = revocations.SWEEP_RESERVE_SECONDS + revocations.MIN_ATTEMPT_SECONDS + 0.5
    started = time.monotonic()
    try:
        report = _sweep(app_module, context=_RunningContext(seconds))
        elapsed = time.monotonic() - started
    finally:
        released.set()
    assert report == {"attempts": 0, "revoked": 0, "gave_up": 0}
    assert elapsed < seconds  # answered before the function's time ran out
    assert len(_owed(stack, org)) == 1


def _debt(stack: Stack, org: str, sort_key: str) -> dict[str, Any]:
    return dict(
        boto3.client("dynamodb").get_item(
            TableName=stack.ref("Table"),
            Key={"pk": {"S": org}, "sk": {"S": sort_key}},
            ConsistentRead=True,
        )["Item"]
    )
