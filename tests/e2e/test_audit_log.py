"""GET /orgs/{org_id}/audit through the real local stack over HTTP: what an org's owner and admin
did is there, newest first; a member is refused and an outsider sees no org."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import LocalStackClient, call, new_user

pytestmark = pytest.mark.e2e


def test_an_admin_reads_the_orgs_events_newest_first_and_others_cannot(
    local_stack: LocalStackClient,
) -> None:
    owner, admin, member, outsider = (
        new_user("alice"),
        new_user("bob"),
        new_user("carol"),
        new_user("eve"),
    )
    status, body = call(local_stack, "POST", "/orgs", owner, json={"name": "Acme"})
    assert status == 201, body
    org = body["org_id"]
    for user, role in ((admin, "admin"), (member, "member")):
        status, body = call(
            local_stack, "PUT", f"/orgs/{org}/members/{user}", owner, json={"role": role}
        )
        assert status == 200, body

    status, body = call(local_stack, "GET", f"/orgs/{org}/audit", admin)
    assert status == 200, body
    assert (body["missing"], body["tampered"], body["next_cursor"]) == ([], [], None)
    assert [(e["seq"], e["action"], e["actor"], e["target_id"]) for e in body["events"]] == [
        (3, "member.add", owner, member),
        (2, "member.add", owner, admin),
        (1, "org.create", owner, org),
    ]
    assert [e["details"] for e in body["events"]] == [{"role": "member"}, {"role": "admin"}, {}]

    # A page at a time: the cursor continues where the first page ended.
    status, first = call(local_stack, "GET", f"/orgs/{org}/audit", owner, params={"limit": 2})
    assert status == 200, first
    status, rest = call(
        local_stack,
        "GET",
        f"/orgs/{org}/audit",
        owner,
        params={"limit": 2, "cursor": first["next_cursor"]},
    )
    assert status == 200, rest
    assert [e["seq"] for e in first["events"] + rest["events"]] == [3, 2, 1]
    assert rest["next_cursor"] is None

    status, body = call(local_stack, "GET", f"/orgs/{org}/audit", member)
    assert status == 403
    assert body["error"]["code"] == "forbidden"
    missing = "org_" + "a" * 26
    outsider_answer = call(local_stack, "GET", f"/orgs/{org}/audit", outsider)
    assert outsider_answer[0] == 404
    assert outsider_answer == call(local_stack, "GET", f"/orgs/{missing}/audit", owner)
