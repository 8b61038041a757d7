"""An admin removed or demoted between their role check and their write: the write does not
land (each connection write carries a Check that the caller still holds an allowed role)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from strongroom.api import Caller
from strongroom_local.provision import Stack
from tests.unit.credential_store.conftest import Call
from tests.unit.credential_store.connection_helpers import (
    create,
    created,
    delete,
    listing,
    new_org,
    okta_body,
    rotate,
)
from tests.unit.credential_store.test_connections import org_item, raw_item


def _after_bobs_check(
    monkeypatch: pytest.MonkeyPatch, org: str, role: str | None
) -> Callable[[], None]:
    """Once bob has passed his role check, alice removes him (role None) or sets his role."""
    from credential_store import connections, orgs

    real = connections.require_role

    def then_alice_acts(services: Any, caller: Caller, *args: Any, **kwargs: Any) -> Any:
        answer = real(services, caller, *args, **kwargs)
        if caller.sub == "bob":
            alice, now = Caller(sub="alice"), kwargs["now"]
            if role is None:
                orgs.remove_member(services, alice, org, "bob", now=now, request_id="r")
            else:
                orgs.set_member_role(services, alice, org, "bob", orgs.Role(role), now=now,
                                     request_id="r")  # fmt: skip
        return answer

    monkeypatch.setattr(connections, "require_role", then_alice_acts)
    return lambda: monkeypatch.setattr(connections, "require_role", real)


@pytest.mark.parametrize(("role", "status"), [(None, 404), ("member", 409)])
def test_a_connection_is_not_created(
    call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch, role: str | None, status: int
) -> None:
    org = new_org(call)
    restore = _after_bobs_check(monkeypatch, org, role)
    assert create(call, org, okta_body())[0] == status
    restore()
    assert listing(call, org, sub="alice")[1]["connections"] == []
    assert int(org_item(stack, org).get("connection_count", {"N": "0"})["N"]) == 0


@pytest.mark.parametrize(("role", "status"), [(None, 404), ("member", 409)])
def test_credentials_are_not_replaced(
    call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch, role: str | None, status: int
) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body())
    before = raw_item(stack, org, connection_id)
    restore = _after_bobs_check(monkeypatch, org, role)
    assert rotate(call, org, connection_id, {"method": "api_token", "token": "n" * 40})[0] == status
    restore()
    assert raw_item(stack, org, connection_id) == before


@pytest.mark.parametrize(("role", "status"), [(None, 404), ("member", 409)])
def test_a_connection_is_not_deleted(
    call: Call, stack: Stack, monkeypatch: pytest.MonkeyPatch, role: str | None, status: int
) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body())
    restore = _after_bobs_check(monkeypatch, org, role)
    assert delete(call, org, connection_id)[0] == status
    restore()
    assert raw_item(stack, org, connection_id)["version"] == {"N": "1"}


def test_an_admin_still_in_place_writes_as_before(call: Call) -> None:
    org = new_org(call)
    connection_id = created(call, org, okta_body())
    assert rotate(call, org, connection_id, {"method": "api_token", "token": "n" * 40})[0] == 200
    assert delete(call, org, connection_id)[0] == 204
