"""Revoking at the provider the grants a change dropped, and the revocations still owed.

A connection's deletion, or a rotation of its credentials, drops tokens that may still be live
at the provider. Before the change, `owe` puts a mark for the sweep; the change's own
transaction then writes what is needed to revoke them:

    org       pk=<org_id>  sk=REVOCATION#<revocation_id>   (expires after OWED_FOR)
              connection_id, attempts, reason, and the connection's attributes as the change
              dropped them (provider settings, client credentials, sealed tokens: a sealed value
              opens only under the id of its connection, which is kept)
    platform  the sweep's mark (`sweep_marks`): pk=REVOCATION#<org_id>.<revocation_id>

After the commit `revoke_owed` revokes while the request's time allows, and settles the debt
(deletes both) once the provider took the revocation. A revocation that failed, timed out or was
never tried stays owed: the sweep (`retry_owed`, on the credential store's schedule) tries again,
waiting longer each time, MAX_ATTEMPTS in all (or until the debt is GIVE_UP_AFTER old), and then
gives up. Every attempt that finds something to revoke (and every attempt of the sweep) is
audited as a `credential.revoke` entry; `retry_scheduled` says another attempt follows,
`given_up` that none will. The change expects every sealed value it copies, so a debt never
holds a token older than the one dropped. An org's deletion revokes the grants its org still
owes along with its connections' (`owed_grants`) before its key is shredded, and then deletes
the debts with the org's other items.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as WaitedTooLong
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from credential_store.services import Services
from credential_store.sweep_marks import SweepMarks
from strongroom.api import Caller
from strongroom.audit import AuditAction, AuditEntry
from strongroom.oauth import CONNECTION_KIND, read_connection
from strongroom.oauth.connection import OWED_CONNECTION_ID, OWED_REVOCATION_KIND
from strongroom.redaction import get_logger
from strongroom.tenancy import (
    ConditionFailed,
    Create,
    Item,
    ItemNotFound,
    TenancyError,
    every_item,
)
from strongroom.tenancy.keys import validate_item_id, validate_org_id

logger = get_logger(service="credential_store")

KIND: Final = OWED_REVOCATION_KIND
# The request's own attempt and the sweep's; the sweep's wait doubles after each (5 min, then
# 10, 20, ... 320: the last about 10.5 hours after the change).
MAX_ATTEMPTS: Final = 8
RETRY: Final = timedelta(minutes=10)
# A debt the sweep has not finished by then (it did not run, or did not reach it) is given up,
# recorded; it expires a day later, so one is never lost unrecorded unless the sweep stops for
# that long.
GIVE_UP_AFTER: Final = timedelta(days=1)
OWED_FOR: Final = timedelta(days=2)
# The actor of the sweep's entries. No JWT subject can take this form (`strongroom.api.identity`).
SWEEP: Final = Caller(sub="system:revocation")
# The sweep keeps this much time beyond its attempts, makes PARALLEL_ATTEMPTS at a time, gives
# each at most PER_ATTEMPT_SECONDS, and takes at most PER_ORG_PER_RUN of one org's per run.
SWEEP_RESERVE_SECONDS: Final = 6.0
PARALLEL_ATTEMPTS: Final = 4
PER_ATTEMPT_SECONDS: Final = 8.0
PER_ORG_PER_RUN: Final = 2
# An attempt counts towards MAX_ATTEMPTS: none is started that could hardly reach the provider.
MIN_ATTEMPT_SECONDS: Final = 3.0
# What the sweep keeps for its own answer when attempts are still running.
SWEEP_REPLY_SECONDS: Final = 2.0
# Outcomes that settle a debt: the provider took the revocation, or there is nothing to revoke.
_SETTLED: Final = frozenset({"revoked", "not_applicable"})
_PAGE = 100

MARKS: Final = SweepMarks(
    kind=KIND,
    partition="REVOCATION_DUE#all",
    # Far longer than a request may run: the sweep does not retry while the request may still.
    grace=timedelta(minutes=5),
    retry=RETRY,
    work="revocation",
)


@dataclass(frozen=True)
class Owed:
    """A revocation a change is about to owe: `write` goes in the change's transaction."""

    org_id: str
    revocation_id: str
    grant: Item  # the connection as the change dropped it
    reason: str | None
    owed_at: int  # epoch seconds

    @property
    def write(self) -> Create:
        attributes = {
            **self.grant.attributes,
            OWED_CONNECTION_ID: str(self.grant.item_id),
            "attempts": 1,
            "owed_at": self.owed_at,
            **({"reason": self.reason} if self.reason else {}),
        }
        return Create(KIND, self.revocation_id, attributes, ttl=OWED_FOR)

    @property
    def mark_id(self) -> str:
        return _mark_id(self.org_id, self.revocation_id)


@dataclass(frozen=True)
class RetryReport:
    """What one sweep of owed revocations did: attempts made, of which revoked, and debts it
    gave up on."""

    attempts: int
    revoked: int
    gave_up: int


def owe(
    services: Services, org_id: str, dropped: Item, *, now: datetime, reason: str | None = None
) -> Owed | None:
    """The revocation owed for `dropped` (a connection as a change is about to drop it), its
    sweep mark put; None if it holds nothing to revoke. StoreUnavailable if the mark cannot be
    put: the change must then not be made."""
    try:
        revocable = services.tokens.revocable(read_connection(org_id, dropped), now=now)
    except Exception:  # noqa: BLE001 - a damaged item: the revocation tries, fails, is audited
        revocable = True
    if not revocable:
        return None
    owed = Owed(org_id, "rev_" + secrets.token_hex(10), dropped, reason, int(now.timestamp()))
    MARKS.put(
        services.platform,
        owed.mark_id,
        now=now,
        attributes={"org_id": org_id, "revocation_id": owed.revocation_id},
    )
    return owed


def revoke_owed(
    services: Services,
    caller: Caller,
    owed: Owed,
    *,
    now: datetime,
    request_id: str,
    seconds: float,
) -> None:
    """After the change committed: revoke, waiting at most `seconds`, record the outcome on its
    own, and settle the debt if the provider took it (else the sweep tries again)."""
    revocation = revoke_grant(services, owed.org_id, owed.grant, now=now, seconds=seconds)
    settled = revocation in _SETTLED
    if revocation != "not_applicable":
        entry = revocation_entry(
            caller,
            owed.grant,
            revocation,
            request_id=request_id,
            reason=owed.reason,
            retry_scheduled=not settled,
        )
        services.audit.record_outcome(owed.org_id, entry, now=now)
    if settled:
        _settle(services, owed.org_id, owed.revocation_id, owed.mark_id, now=now)


def retry_owed(
    services: Services,
    *,
    now: datetime,
    request_id: str,
    time_left: Callable[[], float],
) -> RetryReport:
    """Try again every owed revocation whose mark is due, while `time_left()` (seconds) allows.

    PARALLEL_ATTEMPTS at a time, each waited for at most PER_ATTEMPT_SECONDS (none started with
    less than MIN_ATTEMPT_SECONDS), and at most PER_ORG_PER_RUN of one org's per run: providers
    that hang, or one org's many debts, cannot hold back the others' for long. Attempts still
    running when the function's time is nearly out are left (each is claimed: it comes due
    again). One failure stops no other: a debt whose attempt fails comes due again later, and
    after MAX_ATTEMPTS, or once it is GIVE_UP_AFTER old, it is given up (recorded as such)."""
    outcomes: list[str | None] = []
    pool = ThreadPoolExecutor(max_workers=PARALLEL_ATTEMPTS, thread_name_prefix="owed")

    def run(marks: list[Item]) -> bool:
        """Whether the batch ran to its end with time to spare."""
        seconds = min(time_left() - SWEEP_RESERVE_SECONDS, PER_ATTEMPT_SECONDS)
        if seconds < MIN_ATTEMPT_SECONDS:
            return False
        running = [
            pool.submit(_try_one, services, mark, now=now, request_id=request_id, seconds=seconds)
            for mark in marks
        ]
        done, left = wait(running, timeout=max(time_left() - SWEEP_REPLY_SECONDS, 0.0))
        outcomes.extend(future.result() for future in done)
        if left:
            logger.warning(
                "owed revocation attempts were still running as time ran out; they come due again",
                extra={"attempts": len(left)},
            )
        return not left

    marks = _fair_share(MARKS.due(services.platform, now=now), time_left)
    try:
        while (batch := list(itertools.islice(marks, PARALLEL_ATTEMPTS))) and run(batch):
            pass
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    tried = [outcome for outcome in outcomes if outcome is not None]
    return RetryReport(
        attempts=len(tried), revoked=tried.count("revoked"), gave_up=tried.count("gave_up")
    )


def _fair_share(marks: Iterator[Item], time_left: Callable[[], float]) -> Iterator[Item]:
    """The due marks this run takes: at most PER_ORG_PER_RUN of one org's (the rest are the
    next run's, after the other orgs'), and none once too little time is left for an attempt."""
    taken: Counter[object] = Counter()
    for mark in marks:
        if time_left() - SWEEP_RESERVE_SECONDS < MIN_ATTEMPT_SECONDS:
            return
        org_id = mark.attributes.get("org_id")
        if taken[org_id] < PER_ORG_PER_RUN:
            taken[org_id] += 1
            yield mark


def _try_one(
    services: Services, mark: Item, *, now: datetime, request_id: str, seconds: float
) -> str | None:
    """`_retry_one`, its fault logged: one debt's fault stops no other."""
    try:
        return _retry_one(services, mark, now=now, request_id=request_id, seconds=seconds)
    except Exception as exc:  # noqa: BLE001 - one org's fault stops no other
        logger.warning(
            "an owed revocation could not be tried; a later sweep retries",
            extra={"mark_id": mark.item_id, "error_type": type(exc).__name__},
        )
        return None


def owed_grants(services: Services, org_id: str, *, now: datetime) -> Iterator[Item]:
    """Each grant the org still owes a revocation for, as the connection that held it: for the
    org's deletion, which must revoke them before its key is shredded."""
    for owed in every_item(
        lambda cursor: services.table.query(org_id, KIND, now=now, limit=_PAGE, cursor=cursor)
    ):
        yield _grant(owed)


def revoke_grant(
    services: Services,
    org_id: str,
    grant: Item,
    *,
    now: datetime,
    seconds: float,
    raising: tuple[type[Exception], ...] = (),
) -> str:
    """One revocation of `grant` (a connection as a change dropped it) at its provider, waited
    for at most `seconds` (`revoke_in_time`); a fault is the outcome "failed", unless it is one
    of `raising`."""
    return revoke_in_time(
        seconds,
        lambda until: revocation_outcome(
            lambda: revoke_at_provider(services, org_id, grant, now=now, deadline=until),
            org_id,
            str(grant.item_id),
            raising=raising,
        ),
    )


def revocation_outcome(
    revocation: Callable[[], str],
    org_id: str,
    connection_id: str,
    *,
    raising: tuple[type[Exception], ...] = (),
) -> str:
    """`revocation()`'s outcome, or "failed" (logged by its type) if it raises anything but
    `raising`: a grant that cannot be opened or sent (KMS failing, a damaged value) is audited
    as failed, and the change it follows still stands."""
    try:
        return revocation()
    except raising:
        raise
    except Exception as exc:  # noqa: BLE001 - a revocation's fault must not undo its change
        logger.warning(
            "a grant could not be revoked",
            extra={
                "org_id": org_id,
                "connection_id": connection_id,
                "error_type": type(exc).__name__,
            },
        )
        return "failed"


def revoke_in_time(seconds: float, revocation: Callable[[float], str]) -> str:
    """`revocation(deadline)` (epoch seconds, for the provider's retries) on a helper thread,
    waited for at most `seconds`: "timed_out" if it is still running then (it is abandoned:
    Lambda freezes the process once the answer is sent), "not_attempted" if there is no time at
    all. A provider that hangs cannot hold a request past the function's timeout, after its
    change has committed."""
    if seconds <= 0:
        return "not_attempted"
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="revoke")
    try:
        running = runner.submit(revocation, time.time() + seconds)
        try:
            return running.result(timeout=seconds)
        except WaitedTooLong:
            if running.done():
                # Its own TimeoutError (the same class on Python 3.11+), or it finished just as
                # the wait ran out: its own outcome either way.
                return running.result()
            return "timed_out"
    finally:
        runner.shutdown(wait=False, cancel_futures=True)


def revoke_at_provider(
    services: Services,
    org_id: str,
    connection: Item,
    *,
    now: datetime,
    deadline: float | None = None,
) -> str:
    """Revoke at the provider (RFC 7009) the grant of a connection as a change dropped it.

    "revoked", "failed" or "not_applicable": static API tokens, client secrets and private keys
    cannot be revoked through a provider's API, and Entra has no revocation endpoint. A failed
    revocation never undoes the change; the caller records it in the audit log. `deadline`
    (epoch seconds) bounds the waits between attempts at the provider.
    """
    record = read_connection(org_id, connection)
    return services.tokens.revoke(record, now=now, deadline=deadline)


def _retry_one(
    services: Services, mark: Item, *, now: datetime, request_id: str, seconds: float
) -> str | None:
    """One due mark's attempt: its outcome, "gave_up", or None if nothing was tried (the debt
    is settled or gone, or another sweep has it)."""
    org_id = validate_org_id(mark.attributes.get("org_id"))
    revocation_id = validate_item_id(mark.attributes.get("revocation_id"))
    try:
        owed = services.table.get(org_id, KIND, revocation_id, now=now)
    except ItemNotFound:
        # Settled, expired, or gone with its org: only the mark is left.
        MARKS.drop(
            services.platform, str(mark.item_id), now=now, token=mark.attributes.get("token")
        )
        return None
    made = int(owed.attributes.get("attempts", 1))
    claimed = MARKS.claim(services.platform, mark, now=now, retry=RETRY * 2 ** max(made - 1, 0))
    if claimed is None:
        return None
    attempt = made + 1
    try:
        # Counted before it is made: a sweep that dies in it still moves the debt towards its end.
        services.table.update(
            org_id,
            KIND,
            revocation_id,
            changes={"attempts": attempt},
            expect={"attempts": made},
            now=now,
        )
    except (ConditionFailed, ItemNotFound):
        return None  # settled by its request, or taken by another sweep, meanwhile
    grant = _grant(owed)
    owed_at = owed.attributes.get("owed_at")
    if isinstance(owed_at, int) and now.timestamp() - owed_at > GIVE_UP_AFTER.total_seconds():
        # Long starved (the sweep not running, or never reaching it): given up while its debt
        # can still record it, before it expires.
        revocation = "not_attempted"
        given_up = True
    else:
        revocation = revoke_grant(services, org_id, grant, now=now, seconds=seconds)
        given_up = revocation not in _SETTLED and attempt >= MAX_ATTEMPTS
    reason = owed.attributes.get("reason")
    # Every attempt of the sweep is recorded, "not_applicable" too (its token expired since):
    # the request's entry said another would follow.
    entry = revocation_entry(
        SWEEP,
        grant,
        revocation,
        request_id=request_id,
        reason=reason if isinstance(reason, str) else None,
        retry_scheduled=revocation not in _SETTLED and not given_up,
        attempt=attempt,
        given_up=given_up,
    )
    services.audit.record_outcome(org_id, entry, now=now)
    services.audit.flush_after_commit(org_id, now=now)
    if revocation in _SETTLED or given_up:
        _settle(services, org_id, revocation_id, str(mark.item_id), now=now, token=claimed)
    return "gave_up" if given_up else revocation


def _settle(
    services: Services,
    org_id: str,
    revocation_id: str,
    mark_id: str,
    *,
    now: datetime,
    token: str | None = None,
) -> None:
    """Delete the debt, then its mark. A failure is logged, not raised: a debt left behind is
    tried again (revoking a revoked token is harmless, RFC 7009 2.2), a mark left behind is
    dropped by the sweep."""
    try:
        services.table.delete(org_id, KIND, revocation_id, now=now)
    except TenancyError as exc:
        logger.warning(
            "a settled revocation could not be cleared; the sweep tries it again",
            extra={"org_id": org_id, "error_type": type(exc).__name__},
        )
        return
    MARKS.drop(services.platform, mark_id, now=now, token=token)


def revocation_entry(
    actor: Caller,
    grant: Item,
    revocation: str,
    *,
    request_id: str,
    reason: str | None,
    retry_scheduled: bool,
    attempt: int | None = None,
    given_up: bool = False,
) -> AuditEntry:
    """The `credential.revoke` entry of one attempt at revoking `grant` (its connection's)."""
    details: dict[str, Any] = {"revocation": revocation}
    if reason:
        details["reason"] = reason
    if attempt is not None:
        details["attempt"] = attempt
    if retry_scheduled:
        details["retry_scheduled"] = True
    if given_up:
        details["given_up"] = True
    return AuditEntry(
        actor=actor.sub,
        action=AuditAction.CREDENTIAL_REVOKE.value,
        request_id=request_id,
        outcome="success" if revocation in _SETTLED else "failure",
        target_kind="connection",
        target_id=str(grant.item_id),
        details=details,
    )


def _grant(owed: Item) -> Item:
    """The connection as the change dropped it, from its debt (its own id opens its values)."""
    attributes = dict(owed.attributes)
    connection_id = validate_item_id(attributes.pop(OWED_CONNECTION_ID, None))
    for name in ("attempts", "reason", "owed_at"):
        attributes.pop(name, None)
    return Item(CONNECTION_KIND, connection_id, attributes, owed.expires_at)


def _mark_id(org_id: str, revocation_id: str) -> str:
    return f"{org_id}.{revocation_id}"
