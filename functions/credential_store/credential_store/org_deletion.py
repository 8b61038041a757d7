"""Deleting an org (`DELETE /orgs/{org_id}`): revoke its grants, crypto-shred it, remove the rest.

Only an owner who signed in within the last 5 minutes may start it. The steps, in this order:

1. The org item is marked deleting, in one transaction with the `org.delete` audit entry and a
   check that the caller is still an owner; every other member is then removed, so nobody else
   can act on the org from here on.
2. Each connection's OAuth grant, and each grant the org still owes a revocation for
   (`revocations`), is revoked at its provider (RFC 7009), while time allows: opening a refresh
   token needs the org's key, so this must come before step 3.
3. The org's KMS key is disabled at once and its deletion scheduled (crypto-shredding): every
   sealed value, wrapped DEK and SSE-KMS backup of the org is unreadable from here on, although
   Object Lock keeps the backups' ciphertext until their retention ends.
4. Every item of the org's partition is deleted (connections with their backup schedule entries
   and their `credential.delete`/`connection.delete` entries), then its keyring; the caller's
   own membership and the org item go last, in one transaction.

The audit chain's items are kept: the org's events outlive it under Object Lock, and its head
keeps the chain verifiable. A request that runs short of time after step 3 answers "deleting"
(202). Every DELETE first puts the deletion's mark (`deletion_marks`). A deletion stopped for
time or by a fault is carried on where it stopped (steps already done are skipped, as the org
item records them) by an owner's next DELETE (another owner's takes it over) or, once its mark
is due, by the sweep (`finish_stalled_deletions`, on a schedule), whichever comes first. Before
the key is shredded, removing or demoting the owner who asked stops it: the sweep abandons it.
Once step 1 is done, only that owner is a member.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from credential_store import audit_trail, deletion_marks
from credential_store.connections import CONNECTION, deletion_entries
from credential_store.orgs import MEMBER, ORG, require_role
from credential_store.revocations import owed_grants, revocation_entry, revoke_grant
from credential_store.services import Services
from strongroom.api import Caller
from strongroom.audit import AuditAction, AuditEntry, AuditError
from strongroom.crypto.exceptions import KeyringNotFound, KeyringUnavailable
from strongroom.errors import Conflict, NotFound
from strongroom.redaction import get_logger
from strongroom.roles import Role, has_role, still_allowed
from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    Delete,
    Item,
    ItemNotFound,
    Operation,
    TenancyError,
    Update,
    every_item,
)
from strongroom.tenancy.keys import RESERVED_TENANT_KINDS, validate_org_id

logger = get_logger(service="credential_store")

# The key is disabled at once, so nobody can read with it meanwhile; the longest window KMS
# allows is how long an operator can still undo a deletion made with a stolen owner session.
KEY_DELETION_WINDOW_DAYS = 30
# Revocations stop this long before the deadline: what is left after them (shredding the key,
# at worst three KMS calls) must still fit.
REVOCATION_RESERVE_SECONDS = 8.0
# Kinds the deletion keeps: the audit chain's head and its entries still waiting to be appended.
_KEPT_KINDS = frozenset({"AUDIT", "AUDIT_PENDING"})
_PAGE = 100
# The `reason` in the details of every entry of a change the org's deletion makes.
_REASON = "org_deleted"
_MAX_TRANSACTION = 100
# The actor of the audit entries of a deletion the sweep carries on. No JWT subject can take this
# form (`strongroom.api.identity`).
SWEEP = Caller(sub="system:org_deletion")
# The sweep takes up no further org with less time than this left (the revocations' reserve and
# a few table calls), and leaves this much for its own reply.
SWEEP_RESERVE_SECONDS = REVOCATION_RESERVE_SECONDS + 4.0
SWEEP_REPLY_SECONDS = 2.0
# A deletion whose key is not yet shredded is taken up only with this much time left (a sweep's
# first, in a 30 s function): its revocations get about what an owner's own DELETE gives them.
UNSHREDDED_BUDGET_SECONDS = 25.0


@dataclass(frozen=True)
class OrgDeletion:
    """Where a deletion stands: `done`, or stopped for time (the owner's next DELETE, or the
    sweep, goes on)."""

    done: bool


def delete_org(
    services: Services,
    caller: Caller,
    org_id: str,
    *,
    now: datetime,
    request_id: str,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> OrgDeletion:
    """Delete the org and everything in it; `deadline` is a `clock()` time to stop by."""
    require_role(services, caller, org_id, Role.OWNER, now=now)
    caller.require_fresh_auth(now=now.timestamp())
    org = _org(services, org_id, now=now)
    # Before anything changes: a deletion that stops from here on is carried on by the sweep.
    deletion_marks.put(services.platform, org_id, now=now)
    _mark_deleting(services, caller, org_id, org, now=now, request_id=request_id)
    return _carry_on(
        services,
        _Deleter(caller, owner=caller.sub),
        org_id,
        org,
        now=now,
        request_id=request_id,
        deadline=deadline,
        clock=clock,
    )


@dataclass(frozen=True)
class SweepReport:
    """What one sweep of stalled deletions did: orgs it worked on (carried on or abandoned, and
    failed on), deleted, and failed on. Marks it only dropped, or left, are not counted."""

    orgs: int
    deleted: int
    failed: int


def finish_stalled_deletions(
    services: Services,
    *,
    now: datetime,
    request_id: str,
    time_left: Callable[[], float],
    clock: Callable[[], float] = time.monotonic,
) -> SweepReport:
    """Carry on every deletion whose mark is due (stopped for time or by a fault, and not taken
    up by its owner since), while `time_left()` (seconds) allows.

    Each goes on as the owner's next DELETE would, on behalf of the owner who asked, and only
    while they are still an owner: the actor of its audit entries is `system:org_deletion`, and
    that owner is the member removed last. A deletion whose owner was removed or demoted before
    the key was shredded is abandoned (`org.delete`, denied): the org's other owners stopped it.
    One org's failure stops no other: its claimed mark comes due again after a while.
    """
    orgs = deleted = failed = 0
    for mark in deletion_marks.due(services.platform, now=now):
        if time_left() <= SWEEP_RESERVE_SECONDS:
            break
        try:
            outcome = _sweep_one(
                services, mark, now=now, request_id=request_id, time_left=time_left, clock=clock
            )
        except Exception as exc:  # noqa: BLE001 - one org's fault stops no other
            orgs += 1
            failed += 1
            expected = isinstance(exc, TenancyError | KeyringUnavailable | AuditError | Conflict)
            (logger.warning if expected else logger.exception)(
                "an org deletion could not be carried on; a later sweep retries",
                extra={"org_id": mark.item_id, "error_type": type(exc).__name__},
            )
            continue
        orgs += outcome in {_Swept.ABANDONED, _Swept.STOPPED, _Swept.DELETED}
        deleted += outcome is _Swept.DELETED
    return SweepReport(orgs=orgs, deleted=deleted, failed=failed)


class _Swept(Enum):
    PASSED = "passed"  # not this time: claimed by another, or too little time left for it
    DROPPED = "dropped"  # nothing to carry on: the mark is gone
    ABANDONED = "abandoned"
    STOPPED = "stopped"  # for time: claimed, it comes due again
    DELETED = "deleted"


def _sweep_one(
    services: Services,
    mark: Item,
    *,
    now: datetime,
    request_id: str,
    time_left: Callable[[], float],
    clock: Callable[[], float],
) -> _Swept:
    org_id = validate_org_id(mark.item_id)
    org = _deleting_org(services, org_id, mark, now=now)
    if org is None:
        return _Swept.DROPPED
    owner = str(org.attributes["deleting_by"])
    shredded = "key_shredded_at" in org.attributes
    if not shredded and time_left() < UNSHREDDED_BUDGET_SECONDS:
        # Its revocations need the time a request of their own gets: a later sweep's first.
        return _Swept.PASSED
    claimed = deletion_marks.claim(services.platform, mark, now=now)
    if claimed is None:
        return _Swept.PASSED
    if not shredded and not has_role(services.table, owner, org_id, Role.OWNER, now=now):
        _abandon(services, org_id, org, now=now, request_id=request_id)
        deletion_marks.drop(services.platform, org_id, now=now, token=claimed)
        return _Swept.ABANDONED
    try:
        deletion = _carry_on(
            services,
            _Deleter(SWEEP, owner=owner),
            org_id,
            org,
            now=now,
            request_id=request_id,
            deadline=clock() + time_left() - SWEEP_REPLY_SECONDS,
            clock=clock,
        )
    except NotFound:
        deletion = OrgDeletion(done=False)  # the owner's own DELETE finished it meanwhile
    return _Swept.DELETED if deletion.done else _Swept.STOPPED


def _deleting_org(services: Services, org_id: str, mark: Item, *, now: datetime) -> Item | None:
    """The org item of a mark's deletion; None (and the mark, as listed, dropped) if there is
    nothing to carry on."""
    try:
        org = services.table.get(org_id, ORG, now=now)
    except ItemNotFound:
        org = None  # finished (its last request could not drop the mark), or never started
    if org is not None and isinstance(org.attributes.get("deleting_by"), str):
        return org
    # Or the DELETE that marked it was refused before the org was marked deleting.
    deletion_marks.drop(services.platform, org_id, now=now, token=str(mark.attributes.get("token")))
    return None


def _abandon(services: Services, org_id: str, org: Item, *, now: datetime, request_id: str) -> None:
    """Unmark a deletion whose owner was removed or demoted before its key was shredded, with a
    denied `org.delete` entry: only as read (no DELETE since) and while another owner, who
    stopped it, is still one. ConditionFailed otherwise: a later sweep looks again. Members the
    deletion removed before it was stopped stay removed (their entries say so)."""
    owner = str(org.attributes["deleting_by"])
    keeper = next(
        (
            member
            for member in _every(services, org_id, MEMBER, now=now)
            if member.item_id != owner and member.attributes.get("role") == Role.OWNER.value
        ),
        None,
    )
    if keeper is None:
        # Nobody could have stopped it: the data is not as this code leaves it. For people.
        raise ConditionFailed("a stopped deletion's org has no owner left")
    entry = AuditEntry(
        actor=SWEEP.sub,
        action=AuditAction.ORG_DELETE.value,
        request_id=request_id,
        outcome="denied",
        target_kind="org",
        target_id=org_id,
        details={"reason": "requester_no_longer_owner", "requested_by": owner},
    )
    expect = {
        "deleting_by": owner,
        "deletion_request": org.attributes.get("deletion_request"),
        "key_shredded_at": None,
    }
    services.table.transact(
        org_id,
        [
            Update(
                ORG,
                remove=("deleting_since", "deleting_by", "deletion_request"),
                expect=expect,
            ),
            still_allowed(str(keeper.item_id), Role.OWNER),
            *audit_trail.recorded(services, org_id, entry, now=now),
        ],
        now=now,
    )
    services.audit.flush_after_commit(org_id, now=now)
    logger.warning(
        "an org deletion was abandoned: its owner is no longer one", extra={"org_id": org_id}
    )


@dataclass(frozen=True)
class _Deleter:
    """Who carries a deletion on (`actor`, in its audit entries): the owner's own DELETE, or the
    sweep on behalf of `owner`, who asked. Each member's removal holds only while `owner` is
    still an owner."""

    actor: Caller
    owner: str


def _carry_on(
    services: Services,
    deleter: _Deleter,
    org_id: str,
    org: Item,
    *,
    now: datetime,
    request_id: str,
    deadline: float,
    clock: Callable[[], float],
) -> OrgDeletion:
    """Steps 1 to 4 from wherever the org's deletion stands (`org`, its item, records it)."""
    shredded = "key_shredded_at" in org.attributes
    # Until the key is shredded, the org's other owners can still stop the deletion (by removing
    # or demoting the one who asked); from then on it must finish.
    _remove_other_members(
        services,
        deleter,
        org_id,
        now=now,
        request_id=request_id,
        while_owner=None if shredded else deleter.owner,
    )
    if not shredded:
        _confirm_requester(services, org_id, deleter.owner, now=now)
        _revoke_grants(
            services,
            deleter.actor,
            org_id,
            now=now,
            request_id=request_id,
            until=deadline - REVOCATION_RESERVE_SECONDS,
            clock=clock,
        )
        # Again: the org's other owners may have stopped it while the grants were revoked.
        _confirm_requester(services, org_id, deleter.owner, now=now)
        _shred_key(services, org_id, now=now)
    finished = _delete_items(
        services, deleter, org_id, now=now, request_id=request_id, deadline=deadline, clock=clock
    )
    if finished:
        services.keyrings.discard_keyring(org_id)
        _delete_last(services, deleter, org_id, now=now, request_id=request_id)
        deletion_marks.drop(services.platform, org_id, now=now)
    services.audit.flush_after_commit(org_id, now=now)
    if finished:
        logger.info("org deleted", extra={"org_id": org_id, "by": deleter.actor.sub})
    else:
        logger.info("org deletion stopped for time", extra={"org_id": org_id})
    return OrgDeletion(done=finished)


def _org(services: Services, org_id: str, *, now: datetime) -> Item:
    try:
        return services.table.get(org_id, ORG, now=now)
    except ItemNotFound:
        raise NotFound() from None


def _mark_deleting(
    services: Services, caller: Caller, org_id: str, org: Item, *, now: datetime, request_id: str
) -> None:
    """The org marked deleting by the caller, for this request (`deletion_request`), only while
    it is as read and the caller is an owner: what an abandonment of the deletion checks.

    A deletion of the caller's own, or one another owner started that this owner now carries on
    as theirs, gets the caller's `org.delete` entry; the caller's own next DELETE only renews the
    request."""
    started_by = org.attributes.get("deleting_by")
    # A fresh value per DELETE: an abandonment must notice any DELETE since it looked.
    changes: dict[str, object] = {
        "deleting_by": caller.sub,
        "deletion_request": secrets.token_hex(16),
    }
    entries: list[Create] = []
    if started_by != caller.sub:
        changes["deleting_since"] = _iso(now)
        details = {} if started_by is None else {"started_by": str(started_by)}
        entry = audit_trail.entry(
            caller, AuditAction.ORG_DELETE, ("org", org_id), request_id=request_id, details=details
        )
        entries = audit_trail.recorded(services, org_id, entry, now=now)
    expect = {
        "deleting_by": started_by,
        "deletion_request": org.attributes.get("deletion_request"),
    }
    try:
        services.table.transact(
            org_id,
            [
                Update(ORG, changes=changes, expect=expect),
                still_allowed(caller.sub, Role.OWNER),
                *entries,
            ],
            now=now,
        )
    except (ConditionFailed, ItemNotFound):
        raise Conflict("The org changed meanwhile; read it again and retry.") from None


def _remove_other_members(
    services: Services,
    deleter: _Deleter,
    org_id: str,
    *,
    now: datetime,
    request_id: str,
    while_owner: str | None,
) -> None:
    """Every member but the owner who asked, so that nobody else can act on the org any more:
    each of their writes holds only while their membership does (`still_allowed`). A member
    added meanwhile is removed with the rest of the org's items."""
    others = [
        item for item in _every(services, org_id, MEMBER, now=now) if item.item_id != deleter.owner
    ]
    for member in others:
        _remove_member(
            services,
            deleter.actor,
            org_id,
            member,
            now=now,
            request_id=request_id,
            while_owner=while_owner,
        )


def _remove_member(
    services: Services,
    actor: Caller,
    org_id: str,
    member: Item,
    *,
    now: datetime,
    request_id: str,
    while_owner: str | None,
) -> None:
    """One member, with its `member.remove` entry, only if still there as read (a concurrent
    DELETE that removed it first has recorded it); with `while_owner`, only while that user is
    still an owner and the one the deletion is for (Conflict otherwise: the org's other owners
    stopped the deletion, or one of them took it over). An owner's removal moves the org's owner
    count with it, so an org whose deletion is abandoned keeps a true count."""
    role = member.attributes.get("role")
    deleting = {"deleting_by": while_owner} if while_owner else {}
    guards: list[Operation] = [still_allowed(while_owner, Role.OWNER)] if while_owner else []
    try:
        owner = role == Role.OWNER.value
        count = (
            services.table.get(org_id, ORG, now=now).attributes.get("owner_count")
            if owner
            else None
        )
        if count is not None:
            # The one who asked is still an owner: the count cannot truly reach 0 here.
            changes = {"owner_count": max(int(count) - 1, 1)}
            guards.append(Update(ORG, changes=changes, expect={"owner_count": count, **deleting}))
        elif deleting:
            guards.append(Check(ORG, expect=deleting))
        services.table.transact(
            org_id,
            [
                Delete(MEMBER, str(member.item_id), expect={"role": role}),
                *_member_removal(services, actor, org_id, member, now=now, request_id=request_id),
                *guards,
            ],
            now=now,
        )
    except (ConditionFailed, ItemNotFound):
        if _exists(services, org_id, MEMBER, str(member.item_id), now=now):
            # The member is there, so the owner's own check failed: no longer an owner.
            raise Conflict("The org's members changed meanwhile; retry.") from None


def _exists(services: Services, org_id: str, kind: str, item_id: str, *, now: datetime) -> bool:
    try:
        services.table.get(org_id, kind, item_id, now=now)
    except ItemNotFound:
        return False
    return True


def _member_removal(
    services: Services,
    caller: Caller,
    org_id: str,
    member: Item,
    *,
    now: datetime,
    request_id: str,
) -> list[Create]:
    """The `member.remove` entry of a member removed with their org, to record with it."""
    entry = audit_trail.entry(
        caller,
        AuditAction.MEMBER_REMOVE,
        ("member", str(member.item_id)),
        request_id=request_id,
        details={"role": str(member.attributes.get("role")), "reason": _REASON},
    )
    return audit_trail.recorded(services, org_id, entry, now=now)


def _revoke_grants(
    services: Services,
    caller: Caller,
    org_id: str,
    *,
    now: datetime,
    request_id: str,
    until: float,
    clock: Callable[[], float],
) -> None:
    """Revoke each connection's grant, and each grant the org still owes a revocation for, at
    its provider while `clock()` is before `until`, and audit the outcome of each (those left
    untried too).

    A revocation runs on a helper thread and is waited for only until `until`: a provider that
    hangs or keeps answering 429 cannot hold the key's shredding past the function's timeout (an
    abandoned revocation is recorded as `timed_out`; Lambda freezes it once the request
    answers). None is tried once the key is no longer enabled (a retry after it was disabled):
    no grant can be opened.
    """
    if not services.keyrings.org_key_enabled(org_id):
        return
    # With the grants still owed a revocation (their connection deleted or rotated): after the
    # key is shredded they cannot be opened.
    connections = [
        *_every(services, org_id, CONNECTION, now=now),
        *owed_grants(services, org_id, now=now),
    ]
    outcomes: list[tuple[Item, str]] = []
    for connection in connections:
        left = until - clock()
        if left <= 0:
            break
        # KeyringUnavailable (KMS or the table failing for now) is raised: the deletion stops
        # before the key is shredded, so that the next DELETE, or the sweep, can still revoke.
        outcome = revoke_grant(
            services, org_id, connection, now=now, seconds=left, raising=(KeyringUnavailable,)
        )
        outcomes.append((connection, outcome))
        if outcome == "timed_out":
            break
    outcomes += [(connection, "not_attempted") for connection in connections[len(outcomes) :]]
    entries = [
        revocation_entry(
            caller,
            connection,
            outcome,
            request_id=request_id,
            reason=_REASON,
            retry_scheduled=False,
        )
        for connection, outcome in outcomes
        if outcome != "not_applicable"
    ]
    _record_outcomes(services, org_id, entries, now=now)


def _record_outcomes(
    services: Services, org_id: str, entries: list[AuditEntry], *, now: datetime
) -> None:
    """Record outcomes learnt outside any change, a transaction's worth at a time. AuditError
    stops the deletion before the key is shredded: each revocation opened a grant, which must
    not go unaudited; the next DELETE or the sweep revokes (harmlessly, again) and records them."""
    for start in range(0, len(entries), _MAX_TRANSACTION):
        services.audit.record(org_id, *entries[start : start + _MAX_TRANSACTION], now=now)


def _confirm_requester(services: Services, org_id: str, owner: str, *, now: datetime) -> None:
    """Conflict unless the deletion is still `owner`'s and they are still an owner, as the key's
    shredding, which no condition can guard, is about to begin."""
    try:
        current = services.table.get(org_id, ORG, now=now).attributes.get("deleting_by")
    except ItemNotFound:
        raise NotFound() from None  # a concurrent deletion finished first
    if current != owner or not has_role(services.table, owner, org_id, Role.OWNER, now=now):
        raise Conflict("The org's deletion changed meanwhile; retry.")


def _shred_key(services: Services, org_id: str, *, now: datetime) -> None:
    try:
        services.keyrings.shred_org_key(org_id, pending_window_days=KEY_DELETION_WINDOW_DAYS)
    except KeyringNotFound:
        # No key to shred (gone already): nothing can be read with it either.
        logger.warning("the deleted org has no KMS key", extra={"org_id": org_id})
    try:
        services.table.update(org_id, ORG, changes={"key_shredded_at": _iso(now)}, now=now)
    except ItemNotFound:
        raise NotFound() from None  # a concurrent deletion finished first


def _delete_items(
    services: Services,
    deleter: _Deleter,
    org_id: str,
    *,
    now: datetime,
    request_id: str,
    deadline: float,
    clock: Callable[[], float],
) -> bool:
    """Delete every item of the partition but the kept ones, the keyring's and the last ones;
    whether all are gone (False: the deadline came first)."""
    pages = every_item(
        lambda cursor: services.table.query_partition(org_id, now=now, limit=_PAGE, cursor=cursor)
    )
    batch: list[Delete] = []
    for item in pages:
        if clock() >= deadline:
            return False
        if _kept(item, deleter.owner):
            continue
        if item.kind == CONNECTION:
            _delete_connection(
                services, deleter.actor, org_id, item, now=now, request_id=request_id
            )
            continue
        if item.kind == MEMBER:  # added after the other members were removed
            _remove_member(
                services,
                deleter.actor,
                org_id,
                item,
                now=now,
                request_id=request_id,
                while_owner=None,
            )
            continue
        batch.append(Delete(item.kind, item.item_id))
        if len(batch) == _MAX_TRANSACTION:
            services.table.transact(org_id, batch, now=now)
            batch = []
    if batch:
        services.table.transact(org_id, batch, now=now)
    return True


def _kept(item: Item, owner: str) -> bool:
    """Items `_delete_items` leaves: the audit chain's, the keyring's (`discard_keyring`), and
    the org item and the membership of the owner who asked (`_delete_last`)."""
    return (
        item.kind in _KEPT_KINDS
        or item.kind in RESERVED_TENANT_KINDS
        or (item.kind == ORG and item.item_id is None)
        or (item.kind == MEMBER and item.item_id == owner)
    )


def _delete_connection(
    services: Services, caller: Caller, org_id: str, item: Item, *, now: datetime, request_id: str
) -> None:
    """A connection with its audit entries, then its backup schedule entry (so that no backup of
    it is started again; the dispatcher skips an entry whose connection is gone meanwhile)."""
    connection_id = str(item.item_id)
    entries = deletion_entries(caller, item, request_id=request_id, reason=_REASON)
    # Only if it is still there: a concurrent DELETE of the org that deleted it first has
    # recorded its entries.
    with contextlib.suppress(ItemNotFound):
        services.table.transact(
            org_id,
            [
                Delete(CONNECTION, connection_id, expect={}),
                *audit_trail.recorded(services, org_id, *entries, now=now),
            ],
            now=now,
        )
    services.schedules.remove(org_id, connection_id, now=now)


def _delete_last(
    services: Services, deleter: _Deleter, org_id: str, *, now: datetime, request_id: str
) -> None:
    """The org item and the membership of the owner who asked: from here the org answers 404 to
    everyone. NotFound if a concurrent deletion finished first."""
    removal: list[Operation] = []
    try:
        own = services.table.get(org_id, MEMBER, deleter.owner, now=now)
    except ItemNotFound:
        # Gone with the org, by a concurrent deletion that finished (NotFound below); or removed
        # by another owner before the deletion removed them (the org is then still to delete).
        pass
    else:
        removal = [
            Delete(MEMBER, deleter.owner, expect={}),
            *_member_removal(services, deleter.actor, org_id, own, now=now, request_id=request_id),
        ]
    try:
        services.table.transact(org_id, [Delete(ORG, expect={}), *removal], now=now)
    except ItemNotFound:
        raise NotFound() from None  # a concurrent deletion finished first


def _every(services: Services, org_id: str, kind: str, *, now: datetime) -> Iterator[Item]:
    return every_item(
        lambda cursor: services.table.query(org_id, kind, now=now, limit=_PAGE, cursor=cursor)
    )


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")
