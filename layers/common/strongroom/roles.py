"""Roles of DESIGN.md (owner > admin > member), checked against the table on every request.

Membership lives in the org's partition: `MEMBER#<sub>` with a `role` attribute. A caller who is
not a member answers 404 exactly like a missing org, so org ids cannot be probed.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from strongroom.api import Caller
from strongroom.errors import Forbidden, NotFound
from strongroom.tenancy import Check, ItemNotFound, TenantTable

MEMBER_KIND = "MEMBER"


class Role(StrEnum):
    """Roles of DESIGN.md, ordered owner > admin > member."""

    MEMBER = "member"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def require_role(
    table: TenantTable, caller: Caller, org_id: str, needed: Role, *, now: datetime
) -> Role:
    """The caller's role in the org; NotFound for non-members, Forbidden when it is too low."""
    try:
        item = table.get(org_id, MEMBER_KIND, caller.sub, now=now)
    except ItemNotFound:
        raise NotFound() from None
    role = Role(item.attributes["role"])
    if not role.allows(needed):
        raise Forbidden()
    return role


def has_role(table: TenantTable, user_id: str, org_id: str, needed: Role, *, now: datetime) -> bool:
    """Whether the user is a member of the org with a role allowing `needed` (work done on a
    user's behalf after their request, such as an OAuth callback, checks this again)."""
    try:
        item = table.get(org_id, MEMBER_KIND, user_id, now=now)
    except ItemNotFound:
        return False
    return Role(item.attributes["role"]).allows(needed)


def still_allowed(user_id: str, needed: Role) -> Check:
    """A transaction's guard: the user still holds a role allowing `needed` when the write
    lands (their role was read before it; removed or demoted meanwhile, they cannot act)."""
    allowed = sorted(role.value for role in Role if role.allows(needed))
    return Check(MEMBER_KIND, user_id, one_of={"role": allowed})
