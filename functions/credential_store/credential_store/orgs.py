"""Orgs and members: creation with the org's key and first DEK, role checks, the last owner.

Every read is scoped by org through the tenancy repository. A caller who is not a member of an
org gets NotFound, exactly as for an org that does not exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from credential_store import audit_trail
from credential_store.models import CreateOrg, Member, Members, Org, OrgCreated
from credential_store.services import Services
from strongroom import roles
from strongroom.api import Caller, is_subject
from strongroom.audit.events import AuditAction
from strongroom.crypto.exceptions import CryptoError
from strongroom.errors import Conflict, InvalidField, NotFound, RateLimited
from strongroom.redaction import get_logger
from strongroom.roles import Role
from strongroom.shredded_orgs import (
    BEING_DELETED,
    UNSHREDDED,
    is_shredded,
    refuse_if_shredded,
    unshredded,
)
from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    Delete,
    Item,
    ItemExists,
    ItemNotFound,
    LimitReached,
    TenancyError,
    Update,
    WriteConflict,
    new_org_id,
)

logger = get_logger(service="credential_store")

ORG = "ORG"
MEMBER = roles.MEMBER_KIND
DEFAULT_PLAN = "free"
# Platform items, one per user: how many orgs they have created (the allowance's counter).
ORGS_CREATED = "ORGS_CREATED"
_ORGS_COUNTER = "count"
# A key made for an org that never came to be is shredded after the shortest window KMS allows.
_ABANDONED_KEY_WINDOW_DAYS = 7
# What a failed creation puts in its org item's place (`_org_written`). A tombstone has no
# members, so every request for its org answers 404 exactly as for a missing one; it expires
# long after any transaction could still land.
_ABANDONED = "abandoned_at"
_TOMBSTONE_TTL = timedelta(days=1)
_MAX_MEMBERS_PAGE = 100


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")


def require_role(
    services: Services, caller: Caller, org_id: str, needed: Role, *, now: datetime
) -> Role:
    """The caller's role in the org; NotFound for non-members, Forbidden when it is too low."""
    return roles.require_role(services.table, caller, org_id, needed, now=now)


def create_org(
    services: Services, caller: Caller, body: CreateOrg, *, now: datetime, request_id: str
) -> OrgCreated:
    """A new org: its KMS key and first DEK, then the org and its owner in one transaction.

    The caller's allowance of orgs is taken first (RateLimited past it), so a refused request
    makes no key. The org item is written last, so a failure before it leaves nothing that looks
    like an org; the key made for it is then shredded and the allowance given back, but only
    once the org can no longer come to be: a transaction can commit and still fail for its
    caller (its answer lost on the way back, or still under way when the client gives up).
    """
    _take_org_allowance(services, caller, now=now)
    org_id = new_org_id()
    try:
        kms_key_arn = services.keyrings.create_org_key(org_id)
    except Exception:
        _give_back_org_allowance(services, caller, now=now)
        raise
    try:
        services.keyrings.create_keyring(org_id, kms_key_arn=kms_key_arn, now=now)
        created_at = _iso(now)
        audit = audit_trail.entry(
            caller, AuditAction.ORG_CREATE, ("org", org_id), request_id=request_id
        )
        services.table.transact(
            org_id,
            [
                Create(
                    ORG,
                    attributes={
                        "name": body.name,
                        "plan": DEFAULT_PLAN,
                        "created_at": created_at,
                        "created_by": caller.sub,
                        "owner_count": 1,
                    },
                ),
                Create(
                    MEMBER,
                    caller.sub,
                    attributes={
                        "role": Role.OWNER.value,
                        "added_at": created_at,
                        "added_by": caller.sub,
                    },
                ),
                *audit_trail.recorded(services, org_id, audit, now=now),
            ],
            now=now,
        )
    except Exception:
        written = _org_written(services, org_id, now=now)
        if not written:
            # Unknown (None): key and allowance stay, as the org may exist. A key that could
            # not be shredded keeps its allowance used too.
            if written is False and _shred_abandoned_key(services, org_id):
                _give_back_org_allowance(services, caller, now=now)
            raise
        logger.warning("org created though its transaction failed", extra={"org_id": org_id})
    services.audit.flush_after_commit(org_id, now=now)
    return OrgCreated(org_id=org_id)


def _take_org_allowance(services: Services, caller: Caller, *, now: datetime) -> None:
    """Count one more org created by the caller; RateLimited once they have made the most."""
    ceiling = services.settings.max_orgs_per_user
    try:
        services.platform.increment(
            ORGS_CREATED, caller.sub, attribute=_ORGS_COUNTER, ceiling=ceiling, now=now
        )
    except LimitReached:
        raise RateLimited(f"A user can create at most {ceiling} orgs.") from None


def _give_back_org_allowance(services: Services, caller: Caller, *, now: datetime) -> None:
    """Undo `_take_org_allowance` for an org that never came to be. A failure is logged, not
    raised: the creation's own error is the answer, and the caller is only left one org short."""
    try:
        services.platform.increment(
            ORGS_CREATED, caller.sub, attribute=_ORGS_COUNTER, by=-1, now=now
        )
    except TenancyError:
        logger.error("the org allowance of an abandoned org is not given back")


def _org_written(services: Services, org_id: str, *, now: datetime) -> bool | None:
    """Whether the org's transaction landed, for good; None when the table cannot say.

    A read would not do: the transaction may still be under way at DynamoDB (the client timed
    out) and land after it. A tombstone in the org item's place is a fence: the transaction
    creates that item only if absent, so once the tombstone is there it can never land.
    """
    try:
        services.table.create(
            org_id, ORG, attributes={_ABANDONED: _iso(now)}, ttl=_TOMBSTONE_TTL, now=now
        )
        return False
    except ItemExists:
        pass
    except TenancyError:
        return None
    try:
        # The org, or this tombstone: botocore retries a put whose answer was lost.
        org = services.table.get(org_id, ORG, now=now)
    except TenancyError:
        return None
    return _ABANDONED not in org.attributes


def _shred_abandoned_key(services: Services, org_id: str) -> bool:
    """Shred the key of an org that never came to be, then drop its keyring items; whether the
    key is shredded. A failure is logged, not raised: the creation's own error is the answer;
    the rest waits for a sweep."""
    try:
        services.keyrings.shred_org_key(org_id, pending_window_days=_ABANDONED_KEY_WINDOW_DAYS)
    except CryptoError:
        logger.error("the key of an abandoned org is not shredded", extra={"org_id": org_id})
        return False
    try:
        services.keyrings.discard_first_keyring(org_id)
    except CryptoError:
        logger.error("the keyring of an abandoned org is left", extra={"org_id": org_id})
    return True


def get_org(services: Services, caller: Caller, org_id: str, *, now: datetime) -> Org:
    role = require_role(services, caller, org_id, Role.MEMBER, now=now)
    try:
        org = services.table.get(org_id, ORG, now=now).attributes
    except ItemNotFound:
        raise NotFound() from None
    return Org(
        org_id=org_id,
        name=org["name"],
        plan=org["plan"],
        created_at=org["created_at"],
        created_by=org["created_by"],
        your_role=role,
        deletion_started_at=org.get("deleting_since"),
    )


def list_members(
    services: Services, caller: Caller, org_id: str, *, now: datetime, cursor: str | None = None
) -> Members:
    require_role(services, caller, org_id, Role.MEMBER, now=now)
    page = services.table.query(org_id, MEMBER, now=now, limit=_MAX_MEMBERS_PAGE, cursor=cursor)
    return Members(members=[_member(item) for item in page.items], next_cursor=page.cursor)


def set_member_role(
    services: Services,
    caller: Caller,
    org_id: str,
    user_id: str,
    role: Role,
    *,
    now: datetime,
    request_id: str,
) -> Member:
    """Add a member or change a role; the last owner cannot be demoted (409)."""
    require_role(services, caller, org_id, Role.OWNER, now=now)
    if not is_subject(user_id):
        # `system:...` or `operator:...`: no one can sign in as that.
        raise InvalidField("user_id: not a user's subject")
    current = _find_member(services, org_id, user_id, now=now)
    stamp = {"role": role.value, "added_at": _iso(now), "added_by": caller.sub}
    operations: list[Any]
    if current is None:
        # Refused once the org's deletion cannot be stopped: a member added after it listed the
        # members would outlive the org. On the org item, as read and when the write lands.
        _refuse_if_shredded(services, org_id, now=now)
        operations = [Create(MEMBER, user_id, attributes=stamp)]
        if role is Role.OWNER:
            operations.append(_owner_count_change(services, org_id, +1, now=now, expect=UNSHREDDED))
        else:
            operations.append(unshredded())
        action = AuditAction.MEMBER_ADD
    else:
        old_role = Role(current.attributes["role"])
        if old_role is role:
            return _member(current)
        operations = [
            Update(
                MEMBER,
                user_id,
                changes={"role": role.value, "changed_at": _iso(now), "changed_by": caller.sub},
                expect={"role": old_role.value},
            )
        ]
        if old_role is Role.OWNER:
            operations.append(_owner_count_change(services, org_id, -1, now=now))
        elif role is Role.OWNER:
            operations.append(_owner_count_change(services, org_id, +1, now=now))
        action = AuditAction.MEMBER_CHANGE_ROLE
    audit = audit_trail.entry(
        caller, action, ("member", user_id), request_id=request_id, details={"role": role.value}
    )
    _write(
        services,
        org_id,
        [
            *operations,
            *_still_owner(caller, user_id),
            *audit_trail.recorded(services, org_id, audit, now=now),
        ],
        now=now,
        guarded=current is None,
    )
    services.audit.flush_after_commit(org_id, now=now)
    return Member(
        user_id=user_id,
        role=role,
        added_at=current.attributes["added_at"] if current else stamp["added_at"],
        added_by=current.attributes["added_by"] if current else stamp["added_by"],
    )


def remove_member(
    services: Services, caller: Caller, org_id: str, user_id: str, *, now: datetime, request_id: str
) -> None:
    """Remove a member; the last owner cannot be removed (409)."""
    require_role(services, caller, org_id, Role.OWNER, now=now)
    current = _find_member(services, org_id, user_id, now=now)
    if current is None:
        raise NotFound()
    old_role = Role(current.attributes["role"])
    operations: list[Any] = [Delete(MEMBER, user_id, expect={"role": old_role.value})]
    if old_role is Role.OWNER:
        operations.append(_owner_count_change(services, org_id, -1, now=now))
    audit = audit_trail.entry(
        caller, AuditAction.MEMBER_REMOVE, ("member", user_id), request_id=request_id
    )
    _write(
        services,
        org_id,
        [
            *operations,
            *_still_owner(caller, user_id),
            *audit_trail.recorded(services, org_id, audit, now=now),
        ],
        now=now,
    )
    services.audit.flush_after_commit(org_id, now=now)


def _still_owner(caller: Caller, user_id: str) -> list[Check]:
    """The caller's role was read before the write: the write holds only if the caller is still
    an owner when it lands (removed or demoted meanwhile, they cannot act, nor re-add
    themselves). On their own item the change's own expectation already says so."""
    if user_id == caller.sub:
        return []
    return [roles.still_allowed(caller.sub, Role.OWNER)]


def _find_member(services: Services, org_id: str, user_id: str, *, now: datetime) -> Item | None:
    try:
        return services.table.get(org_id, MEMBER, user_id, now=now)
    except ItemNotFound:
        return None


def _owner_count_change(
    services: Services,
    org_id: str,
    delta: int,
    *,
    now: datetime,
    expect: Mapping[str, Any] | None = None,
) -> Update:
    """Move the org's owner count by `delta`, conditional on the count just read (and on
    `expect`: the org item's other attributes the write needs).

    Two owners demoting each other at once both read 2; the first write makes it 1 and the
    second's condition fails, so an org can never lose its last owner.
    """
    count = int(services.table.get(org_id, ORG, now=now).attributes["owner_count"])
    if count + delta < 1:
        raise Conflict("An org must keep at least one owner.")
    return Update(
        ORG, changes={"owner_count": count + delta}, expect={"owner_count": count, **(expect or {})}
    )


def _refuse_if_shredded(services: Services, org_id: str, *, now: datetime) -> None:
    """Conflict once the org's deletion has shredded its key (the write's own condition covers
    a shredding after this read)."""
    try:
        org = services.table.get(org_id, ORG, now=now)
    except ItemNotFound:
        raise NotFound() from None
    refuse_if_shredded(org)


def _write(
    services: Services,
    org_id: str,
    operations: list[Any],
    *,
    now: datetime,
    guarded: bool = False,
) -> None:
    """`guarded`: the write holds only while the org's key is not shredded (a new member's),
    which a refusal then names."""
    try:
        services.table.transact(org_id, operations, now=now)
    except (ConditionFailed, ItemExists, ItemNotFound, WriteConflict) as exc:
        if (
            guarded
            and isinstance(exc, ConditionFailed)
            and is_shredded(services.table, org_id, now=now)
        ):
            raise Conflict(BEING_DELETED) from None
        raise Conflict("The membership changed meanwhile; read it again and retry.") from None


def _member(item: Item) -> Member:
    attributes = item.attributes
    return Member(
        user_id=str(item.item_id),
        role=Role(attributes["role"]),
        added_at=attributes["added_at"],
        added_by=attributes["added_by"],
    )
