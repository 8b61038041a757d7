"""The sandbox Okta's seeded org, without a server: determinism, ids, shapes, secret fields."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from strongroom_local.sandbox_okta import (
    POLICY_TYPES,
    RESOURCES,
    SECRET_FIELDS,
    SECRET_MARKER,
    InvalidSandboxSetting,
    OrgSpec,
    SandboxOrg,
    resource_listings,
    without_secret_fields,
)
from strongroom_local.sandbox_okta.seeding import Kind, Seeded, timestamp

BASE = "http://sandbox.test:1"
# Big enough that every app mode, IdP type and admin role occurs.
SPEC = OrgSpec(users=60, groups=9, apps=12, identity_providers=6, admins=6, network_zones=3)


def every_item(org: SandboxOrg) -> dict[str, list[dict[str, Any]]]:
    return {
        resource: [
            item for _, listing in resource_listings(org, resource) for item in listing.items()
        ]
        for resource in RESOURCES
    }


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def at_path(item: dict[str, Any], dotted: str) -> Any:
    node: Any = item
    for name in dotted.split("."):
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
    return node


def test_the_same_seed_renders_the_same_bytes_and_another_seed_does_not() -> None:
    first, again = SandboxOrg(SPEC, BASE), SandboxOrg(SPEC, BASE)
    other = SandboxOrg(OrgSpec(**{**SPEC.as_dict(), "seed": 2}), BASE)
    rendered = {name: compact(items) for name, items in every_item(first).items()}
    assert rendered == {name: compact(items) for name, items in every_item(again).items()}
    differing = {
        name for name, items in every_item(other).items() if compact(items) != rendered[name]
    }
    # Everything seeded differs; the fixed catalogues (system zones, authenticators, ...) keep
    # their names but not their ids.
    assert {"users", "groups", "apps", "group_members", "authenticators"} <= differing


def test_the_fast_user_rendering_equals_the_compact_encoding_of_the_user() -> None:
    org = SandboxOrg(OrgSpec(users=3_000, admins=20), BASE)
    statuses = Counter()
    for index in range(org.spec.users):
        user = org.user(index)
        statuses[user["status"]] += 1
        assert org.user_json(index) == compact(user)
    # Every status took its own branch of the template.
    assert set(statuses) == {
        "ACTIVE",
        "STAGED",
        "PROVISIONED",
        "SUSPENDED",
        "LOCKED_OUT",
        "PASSWORD_EXPIRED",
        "RECOVERY",
    }


def test_ids_encode_their_index_and_foreign_or_edited_ids_are_refused() -> None:
    org = SandboxOrg(SPEC, BASE)
    for index in range(SPEC.users):
        user_id = org.user_id(index)
        assert len(user_id) == 20
        assert user_id.startswith("00u")
        assert org.find_user(user_id) == index
    user_id = org.user_id(7)
    edited = user_id[:-1] + ("A" if user_id[-1] != "A" else "B")
    assert org.find_user(edited) is None
    assert org.find_user(org.group_id(1)) is None  # right length, wrong kind
    assert org.find_user(user_id[:-1]) is None
    assert org.find_user(user_id[:-1] + "!") is None
    beyond = org.seeded.make_id("00u", Kind.USER, SPEC.users)  # a valid id past the org's end
    assert org.find_user(beyond) is None
    assert len(set(map(org.user_id, range(SPEC.users)))) == SPEC.users
    # Another seed's ids are not this org's.
    assert Seeded(2).index_of(user_id, "00u", Kind.USER) is None


def test_timestamps_have_oktas_format() -> None:
    assert timestamp(1_649_087_765) == "2022-04-04T15:56:05.000Z"
    assert timestamp(0) == "1970-01-01T00:00:00.000Z"


def test_every_secret_field_holds_a_marked_secret_and_stripping_leaves_none() -> None:
    org = SandboxOrg(SPEC, BASE)
    items = every_item(org)
    for resource, paths in SECRET_FIELDS.items():
        for path in paths:
            values = [at_path(item, path) for item in items[resource]]
            present = [value for value in values if value is not None]
            assert present, f"{resource}: no item has {path}"
            assert all(str(value).startswith(SECRET_MARKER) for value in present)
            assert len(set(present)) == len(present), f"{resource}.{path}: repeated secrets"
    for resource, resource_items in items.items():
        for item in resource_items:
            stripped = without_secret_fields(resource, item)
            assert SECRET_MARKER not in compact(stripped), (resource, item.get("id"))
            # Stripping copies: the item itself keeps its secrets.
            if resource in SECRET_FIELDS and compact(stripped) != compact(item):
                assert SECRET_MARKER in compact(item)


def test_payloads_have_oktas_shapes() -> None:
    org = SandboxOrg(SPEC, BASE)
    items = every_item(org)
    user = items["users"][0]
    assert {"id", "status", "created", "lastUpdated", "profile", "credentials", "_links"} <= set(
        user
    )
    assert user["_links"]["self"]["href"] == f"{BASE}/api/v1/users/{user['id']}"
    assert {"login", "email", "firstName", "lastName"} <= set(user["profile"])
    everyone = items["groups"][0]
    assert (everyone["type"], everyone["profile"]["name"]) == ("BUILT_IN", "Everyone")
    assert {app["signOnMode"] for app in items["apps"]} == {
        "OPENID_CONNECT",
        "SAML_2_0",
        "BROWSER_PLUGIN",
        "BOOKMARK",
        "AUTO_LOGIN",
        "BASIC_AUTH",
    }
    oidc = next(app for app in items["apps"] if app["signOnMode"] == "OPENID_CONNECT")
    assert oidc["credentials"]["oauthClient"]["client_id"] == oidc["id"]
    assert {policy["type"] for policy in items["policies"]} == set(POLICY_TYPES)
    assert all(rule["type"] for rule in items["policy_rules"])
    assert items["authorization_servers"][0]["id"] == "default"
    assert {scope["name"] for scope in items["authorization_server_scopes"]} >= {"openid"}
    assert {idp["type"] for idp in items["identity_providers"]} == {
        "GOOGLE",
        "SAML2",
        "OIDC",
        "APPLE",
        "MICROSOFT",
        "FACEBOOK",
    }
    assert {"duo", "onprem_mfa", "okta_password"} <= {a["key"] for a in items["authenticators"]}
    assert items["user_schema"][0]["definitions"]["base"]["required"] == [
        "login",
        "firstName",
        "lastName",
        "email",
    ]
    role_types = {role["type"] for role in items["user_roles"]}
    assert {"SUPER_ADMIN", "ORG_ADMIN", "CUSTOM"} <= role_types
    custom = next(role for role in items["user_roles"] if role["type"] == "CUSTOM")
    assert custom["role"] in {role["id"] for role in items["custom_roles"]}
    assert len(items["role_assignees"]) == SPEC.admins
    assert [role["type"] for role in items["group_roles"]] == ["USER_ADMIN"]


def test_memberships_and_assignments_refer_to_the_orgs_own_items() -> None:
    org = SandboxOrg(SPEC, BASE)
    user_ids = {org.user_id(index) for index in range(SPEC.users)}
    group_ids = {org.group_id(index) for index in range(SPEC.groups)}
    members = {
        parameters["groupId"]: [user["id"] for user in listing.items()]
        for parameters, listing in resource_listings(org, "group_members")
    }
    assert members[org.group_id(0)] == [org.user_id(index) for index in range(SPEC.users)]
    others = [user for group, ids in members.items() if group != org.group_id(0) for user in ids]
    assert set(others) <= user_ids
    assert len(others) <= SPEC.users * SPEC.memberships_per_user
    assert len(set(others)) > SPEC.users // 2  # most users belong to some group
    for _, listing in resource_listings(org, "app_groups"):
        assert {assignment["id"] for assignment in listing.items()} <= group_ids - {org.group_id(0)}
    app_users = [
        item["id"] for _, listing in resource_listings(org, "app_users") for item in listing.items()
    ]
    assert set(app_users) <= user_ids
    for rule in every_item(org)["group_rules"]:
        assert set(rule["actions"]["assignUserToGroups"]["groupIds"]) <= group_ids


def test_the_membership_index_is_built_once_on_demand() -> None:
    org = SandboxOrg(OrgSpec(users=5_000, groups=200, apps=50), BASE)
    assert org._group_members is None  # nothing but the spec until someone asks
    sizes = [len(org.group_member_indexes(group)) for group in range(1, 200)]
    # Skewed: a few big groups, many small ones.
    assert sizes[0] > 10 * sorted(sizes)[len(sizes) // 2]
    built = org._group_members
    org.app_user_indexes(3)
    assert org._group_members is built


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"users": -1}, "users"),
        ({"users": 1_000_001}, "users"),
        ({"groups": 0}, "groups"),
        ({"admins": 30, "users": 10}, "admins"),
        ({"apps": True}, "apps"),
        ({"seed": "1"}, "seed"),
        ({"colour": 3}, "colour"),
    ],
)
def test_out_of_range_sizes_are_refused_by_name(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidSandboxSetting, match=f"^{named}:"):
        OrgSpec.from_mapping(settings)


def test_every_resource_path_has_its_listings() -> None:
    org = SandboxOrg(SPEC, BASE)
    for resource, template in RESOURCES.items():
        listings = list(resource_listings(org, resource))
        assert listings, resource
        for parameters, _ in listings:
            path = template.format(**parameters)
            assert "{" not in path, (resource, path)
    with pytest.raises(KeyError):
        list(resource_listings(org, "no_such_resource"))
