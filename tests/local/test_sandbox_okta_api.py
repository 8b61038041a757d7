"""The sandbox Okta over HTTP: every listing paged to the end, page-size caps, opaque cursors,
Link headers, authentication and Okta's error bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from strongroom_local.sandbox_okta import (
    BUCKETS,
    RESOURCES,
    OrgSpec,
    RateLimit,
    SandboxOkta,
    resource_listings,
)
from tests.support.sandbox_okta import okta_session, walk

SPEC = OrgSpec(users=60, groups=9, apps=12, identity_providers=6, admins=6, custom_roles=3)
UNLIMITED = {bucket: RateLimit(1_000_000) for bucket in BUCKETS}
ENVELOPES = {"custom_roles": "roles", "role_assignees": "value"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxOkta]:
    with SandboxOkta(SPEC, rate_limits=UNLIMITED) as running:
        yield running


@pytest.fixture(scope="module")
def big() -> Iterator[SandboxOkta]:
    spec = OrgSpec(
        users=450, groups=450, apps=250, group_rules=250, trusted_origins=250, groups_per_app=40
    )
    with SandboxOkta(spec, rate_limits=UNLIMITED) as running:
        yield running


@pytest.fixture
def http(sandbox: SandboxOkta) -> Iterator[requests.Session]:
    with okta_session(sandbox.api_token) as session:
        yield session


def with_limit(url: str, limit: int) -> str:
    return f"{url}{'&' if '?' in url else '?'}limit={limit}"


def okta_error(response: requests.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    assert (body["errorCode"], body["errorLink"]) == (code, code)
    return body


def test_following_next_returns_every_item_exactly_once_for_every_listing(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    paged = 0
    for resource, template in RESOURCES.items():
        for parameters, listing in resource_listings(sandbox.org, resource):
            url = sandbox.url + template.format(**parameters)
            expected = [json.dumps(item) for item in listing.items()]
            if resource == "user_schema":
                assert [json.dumps(http.get(url, timeout=30).json())] == expected
                continue
            # A small page where the endpoint pages, so that every cursor path runs.
            result = walk(http, with_limit(url, 2), envelope=ENVELOPES.get(resource))
            assert [json.dumps(item) for item in result.items] == expected, url
            ids = [item.get("id", item.get("client_id")) for item in result.items]
            assert len(set(ids)) == len(ids), url
            paged += result.pages > 1
    assert paged > 20  # most listings really were paged


def test_pages_are_capped_as_okta_caps_them(big: SandboxOkta) -> None:
    http = okta_session(big.api_token)
    org = big.org
    one_app = org.app_id(0)

    def page(path: str) -> tuple[int, str | None]:
        response = http.get(big.url + path, timeout=30)
        assert response.status_code == 200, response.text
        next_link = response.links.get("next", {}).get("url")
        limit = parse_qs(urlsplit(next_link).query)["limit"][0] if next_link else None
        return len(response.json()), limit

    cases = {
        "/api/v1/users": (200, "200"),  # default 200
        "/api/v1/users?limit=1000": (200, "200"),  # max 200
        "/api/v1/users?limit=0": (200, "200"),  # zero or less: the default
        "/api/v1/users?limit=-1": (200, "200"),
        "/api/v1/users?limit=7": (7, "7"),
        "/api/v1/groups": (450, None),  # default and max 10,000
        "/api/v1/groups?limit=20000": (450, None),
        "/api/v1/apps": (200, "200"),  # default -1: pages of the maximum, 200
        "/api/v1/apps?limit=500": (200, "200"),
        "/api/v1/groups/rules": (50, "50"),  # default 50, max 200
        "/api/v1/groups/rules?limit=500": (200, "200"),
        "/api/v1/trustedOrigins": (20, "20"),  # default 20, max 200
        "/api/v1/trustedOrigins?limit=300": (200, "200"),
        f"/api/v1/apps/{one_app}/groups?limit=5": (20, "20"),  # minimum 20
        "/api/v1/zones": (5, None),  # default -1: every zone
    }
    assert len(org.app_group_indexes(0)) > 20
    for path, expected in cases.items():
        assert page(path) == expected, path
    assert page(f"/api/v1/groups/{org.group_id(0)}/users")[0] == 450  # default 1,000
    assert page(f"/api/v1/apps/{one_app}/users")[0] == min(50, org.app_users(0).count)


def test_a_malformed_limit_is_refused(http: requests.Session, sandbox: SandboxOkta) -> None:
    body = okta_error(
        http.get(f"{sandbox.url}/api/v1/users?limit=ten", timeout=30), 400, "E0000001"
    )
    assert body["errorSummary"] == "Api validation failed: limit"


def test_cursors_are_opaque_and_only_valid_where_they_were_issued(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    org = sandbox.org
    users = walk(http, f"{sandbox.url}/api/v1/users?limit=10")
    cursors = [parse_qs(urlsplit(url).query)["after"][0] for url in users.next_urls]
    assert len(cursors) == 5
    item_ids = {user["id"] for user in users.items}
    for position, cursor in zip(range(10, 60, 10), cursors, strict=True):
        assert not cursor.isdigit()
        assert str(position) not in cursor
        assert cursor not in item_ids
    assert len(set(cursors)) == len(cursors)
    # The same position in another listing has another cursor, refused here.
    groups = walk(http, f"{sandbox.url}/api/v1/groups?limit=2")
    group_cursor = parse_qs(urlsplit(groups.next_urls[0]).query)["after"][0]
    assert group_cursor not in cursors
    members = f"{sandbox.url}/api/v1/groups/{org.group_id(0)}/users?limit=10"
    other_members = f"{sandbox.url}/api/v1/groups/{org.group_id(1)}/users?limit=10"
    member_cursor = parse_qs(urlsplit(walk(http, members).next_urls[0]).query)["after"][0]
    assert member_cursor != cursors[0]
    edited = cursors[0][:-1] + ("A" if cursors[0][-1] != "A" else "B")
    for url in (
        f"{sandbox.url}/api/v1/users?after={group_cursor}",
        f"{other_members}&after={member_cursor}",
        f"{sandbox.url}/api/v1/users?after={cursors[0][:-2]}",
        f"{sandbox.url}/api/v1/users?after={edited}",
        f"{sandbox.url}/api/v1/users?after=10",
        f"{sandbox.url}/api/v1/users?after={org.user_id(9)}",
        f"{sandbox.url}/api/v1/users?after=%%%",
    ):
        body = okta_error(http.get(url, timeout=30), 400, "E0000001")
        assert body["errorSummary"] == "Api validation failed: after"


def test_a_restarted_sandbox_with_the_same_seed_serves_the_same_pages_and_cursors(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    first = walk(http, f"{sandbox.url}/api/v1/users?limit=25")
    with SandboxOkta(SPEC) as again, okta_session(again.api_token) as other:
        second = walk(other, f"{again.url}/api/v1/users?limit=25")

        def bodies(result: Any, url: str) -> list[str]:
            return [r.text.replace(url, "<base>") for r in result.responses]

        def links(result: Any, url: str) -> list[str]:
            return [r.headers["Link"].replace(url, "<base>") for r in result.responses]

        assert bodies(first, sandbox.url) == bodies(second, again.url)
        assert links(first, sandbox.url) == links(second, again.url)
        # A cursor the first sandbox gave out still works after the "restart".
        tail = first.next_urls[0].replace(sandbox.url, again.url)
        assert other.get(tail, timeout=30).text.replace(again.url, "<base>") == first.responses[
            1
        ].text.replace(sandbox.url, "<base>")
    with SandboxOkta(OrgSpec(**{**SPEC.as_dict(), "seed": 99})) as reseeded:
        foreign = first.next_urls[0].replace(sandbox.url, reseeded.url)
        with okta_session(reseeded.api_token) as third:
            okta_error(third.get(foreign, timeout=30), 400, "E0000001")


def test_link_headers_are_oktas(sandbox: SandboxOkta, http: requests.Session) -> None:
    url = f"{sandbox.url}/api/v1/policies?type=OKTA_SIGN_ON&limit=1&expand=rules"
    response = http.get(url, timeout=30)
    raw = response.headers["Link"]  # requests joins repeated headers with ", "
    assert re.fullmatch(r'<[^>]+>; rel="self", <[^>]+>; rel="next"', raw), raw
    assert response.links["self"]["url"] == url
    next_query = parse_qs(urlsplit(response.links["next"]["url"]).query)
    # Other parameters are kept; `after` and `limit` come last.
    assert next_query["type"] == ["OKTA_SIGN_ON"]
    assert next_query["expand"] == ["rules"]
    assert next_query["limit"] == ["1"]
    last = http.get(response.links["next"]["url"], timeout=30)
    assert "next" not in last.links
    assert last.links["self"]["url"] == response.links["next"]["url"]
    # A single object has no Link header; an unpaged list has only `self`.
    assert "Link" not in http.get(f"{sandbox.url}/api/v1/meta/schemas/user/default").headers
    authenticators = http.get(f"{sandbox.url}/api/v1/authenticators?limit=1", timeout=30)
    assert set(authenticators.links) == {"self"}
    assert len(authenticators.json()) == 9
    # The iam endpoints put `next` in the body too.
    first = http.get(f"{sandbox.url}/api/v1/iam/roles?limit=1", timeout=30)
    assert len(first.json()["roles"]) == 1
    assert first.json()["_links"] == {"next": {"href": first.links["next"]["url"]}}
    roles = http.get(f"{sandbox.url}/api/v1/iam/roles", timeout=30)
    assert len(roles.json()["roles"]) == 3
    assert roles.json()["_links"] == {}
    assert "next" not in roles.links


def test_items_by_id_equal_the_listed_ones(sandbox: SandboxOkta, http: requests.Session) -> None:
    org = sandbox.org
    listed = {
        "users": org.users(),
        "groups": org.groups(),
        "apps": org.apps(),
        "zones": org.zones(),
        "trustedOrigins": org.trusted_origins(),
        "idps": org.identity_providers(),
        "authenticators": org.authenticators(),
        "behaviors": org.behaviors(),
        "authorizationServers": org.auth_servers(),
        "groups/rules": org.group_rules(),
        "iam/roles": org.custom_roles(),
    }
    for path, listing in listed.items():
        for item in listing.items():
            response = http.get(f"{sandbox.url}/api/v1/{path}/{item['id']}", timeout=30)
            assert response.status_code == 200, (path, response.text)
            assert response.json() == item
    for policy_type in ("PASSWORD", "ACCESS_POLICY"):
        for policy in org.policies(policy_type).items():
            assert http.get(f"{sandbox.url}/api/v1/policies/{policy['id']}").json() == policy
    server = org.auth_servers().render(1)
    for policy in org.auth_server_policies(1).items():
        url = f"{sandbox.url}/api/v1/authorizationServers/{server['id']}/policies/{policy['id']}"
        assert http.get(url, timeout=30).json() == policy
    schema = http.get(f"{sandbox.url}/api/v1/meta/schemas/user/{org.schema_id}", timeout=30)
    assert schema.json() == org.user_schema()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "SSWS wrong-token",
        "Bearer wrong-token",
        "Basic {token}",
        "SSWS",
        "{token}",
        "SSWS {token}x",
    ],
)
def test_a_request_without_the_api_token_is_401_with_oktas_body(
    sandbox: SandboxOkta, header: str | None
) -> None:
    session = requests.Session()
    session.trust_env = False
    headers = {} if header is None else {"Authorization": header.format(token=sandbox.api_token)}
    response = session.get(f"{sandbox.url}/api/v1/users", headers=headers, timeout=30)
    body = okta_error(response, 401, "E0000011")
    assert body["errorSummary"] == "Invalid token provided"
    assert "X-Rate-Limit-Remaining" not in response.headers
    assert sandbox.api_token not in response.text


def test_the_control_token_is_not_an_api_token(sandbox: SandboxOkta) -> None:
    with okta_session(sandbox.control_token) as session:
        okta_error(session.get(f"{sandbox.url}/api/v1/users", timeout=30), 401, "E0000011")


@pytest.mark.parametrize("scheme", ["SSWS", "ssws", "Bearer", "bearer"])
def test_the_api_token_is_accepted_as_ssws_or_bearer(sandbox: SandboxOkta, scheme: str) -> None:
    with okta_session(sandbox.api_token, scheme) as session:
        response = session.get(f"{sandbox.url}/api/v1/users?limit=1", timeout=30)
    assert response.status_code == 200
    assert response.json()[0]["id"] == sandbox.org.user_id(0)


def test_unknown_paths_and_ids_are_404_and_other_methods_405(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    org = sandbox.org
    for path in (
        "/api/v1/nothing",
        "/api/v2/users",
        "/",
        f"/api/v1/users/{org.group_id(1)}",
        f"/api/v1/groups/{org.user_id(1)}/users",
        f"/api/v1/apps/{org.app_id(0)}/secrets",
        "/api/v1/authorizationServers/nope/scopes",
        f"/api/v1/authorizationServers/default/policies/{org.policy_id(0)}/rules",
        "/api/v1/meta/schemas/user/other",
        "/api/v1/zones/nzo-none",
    ):
        okta_error(http.get(sandbox.url + path, timeout=30), 404, "E0000007")
    for method in ("POST", "PUT", "DELETE"):
        response = http.request(method, f"{sandbox.url}/api/v1/users", json={}, timeout=30)
        okta_error(response, 405, "E0000022")


def test_unsupported_searches_and_bad_policy_types_are_400(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    for query, named in (
        ("/api/v1/users?search=status%20eq%20%22ACTIVE%22", "search"),
        ("/api/v1/users?filter=x", "filter"),
        ("/api/v1/groups?q=Eng", "q"),
        ("/api/v1/policies", "type"),
        ("/api/v1/policies?type=NOT_A_TYPE", "type"),
    ):
        body = okta_error(http.get(sandbox.url + query, timeout=30), 400, "E0000001")
        assert body["errorSummary"] == f"Api validation failed: {named}"
