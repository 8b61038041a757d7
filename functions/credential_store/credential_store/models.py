"""Request and response bodies of the credential_store routes."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

OrgName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


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


class Request(BaseModel):
    """Request bodies refuse unknown fields (422)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateOrg(Request):
    name: OrgName


class SetMemberRole(Request):
    role: Role


class OrgCreated(BaseModel):
    org_id: str


class Org(BaseModel):
    org_id: str
    name: str
    plan: str
    created_at: str
    created_by: str
    your_role: Role


class Member(BaseModel):
    user_id: str
    role: Role
    added_at: str
    added_by: str


class Members(BaseModel):
    members: list[Member]
    next_cursor: str | None = Field(default=None)
