"""The read side of Okta's Management API over a SandboxOrg: routing, paging, Link headers.

`respond(org, codec, path, query)` answers one GET: the route's template (for counters), the
JSON body and the `Link` header values. Lists page as Okta documents them: `limit` (clamped to
the endpoint's maximum), `after` (an opaque cursor from the previous `next` link), a
`Link: <...>; rel="self"` on every list and a `Link: <...>; rel="next"` while more remain. The
`iam` endpoints wrap their items as Okta does (`{"roles": [...], "_links": {"next": ...}}`) and
send the same `Link` headers too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

from strongroom_local.sandbox_okta.exceptions import InvalidParameter, ResourceNotFound
from strongroom_local.sandbox_okta.org import POLICY_TYPES, Item, Listing, SandboxOrg
from strongroom_local.sandbox_okta.paging import UNPAGED, CursorCodec

# Searching and filtering are not emulated: refusing them beats silently returning everything.
_UNSUPPORTED_PARAMETERS = ("q", "search", "filter", "sortBy", "sortOrder")

# The endpoints a backup reads, by the resource names SECRET_FIELDS uses. A `{...}` segment is
# an id from the parent listing (`{groupId}` of group_members: each id the groups listing gives).
RESOURCES: dict[str, str] = {
    "users": "/api/v1/users",
    "groups": "/api/v1/groups",
    "group_members": "/api/v1/groups/{groupId}/users",
    "group_rules": "/api/v1/groups/rules",
    "group_roles": "/api/v1/groups/{groupId}/roles",
    "apps": "/api/v1/apps",
    "app_users": "/api/v1/apps/{appId}/users",
    "app_groups": "/api/v1/apps/{appId}/groups",
    "policies": "/api/v1/policies?type={type}",
    "policy_rules": "/api/v1/policies/{policyId}/rules",
    "authorization_servers": "/api/v1/authorizationServers",
    "authorization_server_scopes": "/api/v1/authorizationServers/{authServerId}/scopes",
    "authorization_server_claims": "/api/v1/authorizationServers/{authServerId}/claims",
    "authorization_server_policies": "/api/v1/authorizationServers/{authServerId}/policies",
    "authorization_server_policy_rules": (
        "/api/v1/authorizationServers/{authServerId}/policies/{policyId}/rules"
    ),
    "authorization_server_clients": "/api/v1/authorizationServers/{authServerId}/clients",
    "network_zones": "/api/v1/zones",
    "trusted_origins": "/api/v1/trustedOrigins",
    "identity_providers": "/api/v1/idps",
    "authenticators": "/api/v1/authenticators",
    "behaviors": "/api/v1/behaviors",
    "user_schema": "/api/v1/meta/schemas/user/default",
    "custom_roles": "/api/v1/iam/roles",
    "role_assignees": "/api/v1/iam/assignees/users",
    "user_roles": "/api/v1/users/{userId}/roles",
}


ListingsOf = Iterator[tuple[dict[str, str], Listing]]


def _per_group(org: SandboxOrg, listing: Callable[[int], Listing]) -> ListingsOf:
    for index in range(org.spec.groups):
        yield {"groupId": org.group_id(index)}, listing(index)


def _per_app(org: SandboxOrg, listing: Callable[[int], Listing]) -> ListingsOf:
    for index in range(org.spec.apps):
        yield {"appId": org.app_id(index)}, listing(index)


def _per_server(org: SandboxOrg, listing: Callable[[int], Listing]) -> ListingsOf:
    for index in range(org.spec.authorization_servers):
        yield {"authServerId": org.auth_server_id(index)}, listing(index)


def _per_policy_type(org: SandboxOrg) -> ListingsOf:
    for policy_type in POLICY_TYPES:
        yield {"type": policy_type}, org.policies(policy_type)


def _per_policy(org: SandboxOrg) -> ListingsOf:
    for index in range(org.policy_count):
        yield {"policyId": org.policy_id(index)}, org.policy_rules(index)


def _per_server_policy(org: SandboxOrg) -> ListingsOf:
    for server in range(org.spec.authorization_servers):
        for policy in range(org.auth_server_policy_count):
            parameters = {
                "authServerId": org.auth_server_id(server),
                "policyId": org.auth_server_policy_id(server, policy),
            }
            yield parameters, org.auth_server_rules(server, policy)


def _per_user(org: SandboxOrg) -> ListingsOf:
    for index in range(org.spec.users):
        yield {"userId": org.user_id(index)}, org.user_roles(index)


def _listings_by_resource(org: SandboxOrg) -> dict[str, Callable[[], ListingsOf]]:
    def single(listing: Callable[[], Listing]) -> Callable[[], ListingsOf]:
        return lambda: iter([({}, listing())])

    schema = Listing("meta/schemas/user", 1, lambda _: org.user_schema(), UNPAGED)
    return {
        "users": single(org.users),
        "groups": single(org.groups),
        "group_members": lambda: _per_group(org, org.group_members),
        "group_rules": single(org.group_rules),
        "group_roles": lambda: _per_group(org, org.group_roles),
        "apps": single(org.apps),
        "app_users": lambda: _per_app(org, org.app_users),
        "app_groups": lambda: _per_app(org, org.app_groups),
        "policies": lambda: _per_policy_type(org),
        "policy_rules": lambda: _per_policy(org),
        "authorization_servers": single(org.auth_servers),
        "authorization_server_scopes": lambda: _per_server(org, org.scopes),
        "authorization_server_claims": lambda: _per_server(org, org.claims),
        "authorization_server_policies": lambda: _per_server(org, org.auth_server_policies),
        "authorization_server_policy_rules": lambda: _per_server_policy(org),
        "authorization_server_clients": lambda: _per_server(org, org.auth_server_clients),
        "network_zones": single(org.zones),
        "trusted_origins": single(org.trusted_origins),
        "identity_providers": single(org.identity_providers),
        "authenticators": single(org.authenticators),
        "behaviors": single(org.behaviors),
        "user_schema": single(lambda: schema),
        "custom_roles": single(org.custom_roles),
        "role_assignees": single(org.role_assignees),
        "user_roles": lambda: _per_user(org),
    }


def resource_listings(org: SandboxOrg, resource: str) -> ListingsOf:
    """Every listing of `resource` in `org`: the path parameters of each, and its items.

    `RESOURCES[resource].format(**parameters)` is the listing's path; group_members yields one
    listing per group, policies one per policy type, and so on. For user_schema (an object,
    not a list) the one listing holds the schema. KeyError for an unknown resource.
    """
    return _listings_by_resource(org)[resource]()


@dataclass(frozen=True)
class Resolved:
    """What a path names: a listing (paged) or one document, and the route's template."""

    template: str
    listing: Listing | None = None
    document: Item | None = None
    envelope: str | None = None  # iam endpoints: the key the items go under


@dataclass(frozen=True)
class Answer:
    template: str
    body: bytes
    links: list[str]


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _by_id(listing: Listing, identifier: str, template: str) -> Resolved:
    for item in listing.items():
        if item.get("id") == identifier:
            return Resolved(template, document=item)
    raise ResourceNotFound(identifier)


def _resolve_users(org: SandboxOrg, rest: list[str]) -> Resolved:
    if not rest:
        return Resolved("/api/v1/users", org.users())
    user = org.find_user(rest[0])
    if user is None:
        raise ResourceNotFound(rest[0])
    if len(rest) == 1:
        return Resolved("/api/v1/users/{userId}", document=org.user(user))
    if rest[1:] == ["roles"]:
        return Resolved("/api/v1/users/{userId}/roles", org.user_roles(user))
    raise ResourceNotFound("/".join(rest))


def _resolve_groups(org: SandboxOrg, rest: list[str]) -> Resolved:
    if not rest:
        return Resolved("/api/v1/groups", org.groups())
    if rest[0] == "rules":
        if len(rest) == 1:
            return Resolved("/api/v1/groups/rules", org.group_rules())
        rule = org.find_group_rule(rest[1]) if len(rest) == 2 else None
        if rule is None:
            raise ResourceNotFound("/".join(rest))
        return Resolved("/api/v1/groups/rules/{ruleId}", document=org.group_rule(rule))
    group = org.find_group(rest[0])
    if group is None:
        raise ResourceNotFound(rest[0])
    if len(rest) == 1:
        return Resolved("/api/v1/groups/{groupId}", document=org.group(group))
    if rest[1:] == ["users"]:
        return Resolved("/api/v1/groups/{groupId}/users", org.group_members(group))
    if rest[1:] == ["roles"]:
        return Resolved("/api/v1/groups/{groupId}/roles", org.group_roles(group))
    raise ResourceNotFound("/".join(rest))


def _resolve_apps(org: SandboxOrg, rest: list[str]) -> Resolved:
    if not rest:
        return Resolved("/api/v1/apps", org.apps())
    app = org.find_app(rest[0])
    if app is None:
        raise ResourceNotFound(rest[0])
    if len(rest) == 1:
        return Resolved("/api/v1/apps/{appId}", document=org.app(app))
    if rest[1:] == ["users"]:
        return Resolved("/api/v1/apps/{appId}/users", org.app_users(app))
    if rest[1:] == ["groups"]:
        return Resolved("/api/v1/apps/{appId}/groups", org.app_groups(app))
    raise ResourceNotFound("/".join(rest))


def _resolve_policies(org: SandboxOrg, rest: list[str], policy_type: str | None) -> Resolved:
    if not rest:
        if policy_type not in POLICY_TYPES:
            raise InvalidParameter("type")
        return Resolved("/api/v1/policies", org.policies(policy_type))
    policy = org.find_policy(rest[0])
    if policy is None:
        raise ResourceNotFound(rest[0])
    if len(rest) == 1:
        return Resolved("/api/v1/policies/{policyId}", document=org.policy(policy))
    if rest[1:] == ["rules"]:
        return Resolved("/api/v1/policies/{policyId}/rules", org.policy_rules(policy))
    raise ResourceNotFound("/".join(rest))


def _resolve_auth_servers(org: SandboxOrg, rest: list[str]) -> Resolved:
    prefix = "/api/v1/authorizationServers"
    if not rest:
        return Resolved(prefix, org.auth_servers())
    server = org.find_auth_server(rest[0])
    if server is None:
        raise ResourceNotFound(rest[0])
    prefix += "/{authServerId}"
    tail = rest[1:]
    listings = {
        "scopes": org.scopes,
        "claims": org.claims,
        "clients": org.auth_server_clients,
        "policies": org.auth_server_policies,
    }
    if not tail:
        return Resolved(prefix, document=org.auth_server(server))
    if len(tail) == 1 and tail[0] in listings:
        return Resolved(f"{prefix}/{tail[0]}", listings[tail[0]](server))
    policy = org.find_auth_server_policy(server, tail[1]) if tail[0] == "policies" else None
    if policy is not None and len(tail) == 2:
        document = org.auth_server_policy(server, policy)
        return Resolved(f"{prefix}/policies/{{policyId}}", document=document)
    if policy is not None and tail[2:] == ["rules"]:
        listing = org.auth_server_rules(server, policy)
        return Resolved(f"{prefix}/policies/{{policyId}}/rules", listing)
    raise ResourceNotFound("/".join(rest))


def _resolve_flat(org: SandboxOrg, rest: list[str], *, name: str) -> Resolved:
    listings = {
        "zones": (org.zones, "zoneId"),
        "trustedOrigins": (org.trusted_origins, "trustedOriginId"),
        "idps": (org.identity_providers, "idpId"),
        "authenticators": (org.authenticators, "authenticatorId"),
        "behaviors": (org.behaviors, "behaviorId"),
    }
    factory, parameter = listings[name]
    template = f"/api/v1/{name}"
    if not rest:
        return Resolved(template, factory())
    if len(rest) == 1:
        return _by_id(factory(), rest[0], f"{template}/{{{parameter}}}")
    raise ResourceNotFound("/".join(rest))


def _resolve_iam(org: SandboxOrg, rest: list[str]) -> Resolved:
    if rest == ["roles"]:
        return Resolved("/api/v1/iam/roles", org.custom_roles(), envelope="roles")
    if len(rest) == 2 and rest[0] == "roles":
        return _by_id(org.custom_roles(), rest[1], "/api/v1/iam/roles/{roleIdOrLabel}")
    if rest == ["assignees", "users"]:
        return Resolved("/api/v1/iam/assignees/users", org.role_assignees(), envelope="value")
    raise ResourceNotFound("/".join(rest))


def _resolve_schema(org: SandboxOrg, rest: list[str]) -> Resolved:
    if len(rest) == 3 and rest[:2] == ["schemas", "user"] and rest[2] in ("default", org.schema_id):
        return Resolved("/api/v1/meta/schemas/user/{schemaId}", document=org.user_schema())
    raise ResourceNotFound("/".join(rest))


_RESOLVERS: dict[str, Callable[[SandboxOrg, list[str]], Resolved]] = {
    "users": _resolve_users,
    "groups": _resolve_groups,
    "apps": _resolve_apps,
    "authorizationServers": _resolve_auth_servers,
    "iam": _resolve_iam,
    "meta": _resolve_schema,
    **{
        name: functools.partial(_resolve_flat, name=name)
        for name in ("zones", "trustedOrigins", "idps", "authenticators", "behaviors")
    },
}


def resolve(org: SandboxOrg, path: str, query: dict[str, str]) -> Resolved:
    """The route `path` names; ResourceNotFound or InvalidParameter if none or malformed."""
    segments = path.strip("/").split("/")
    if segments[:2] != ["api", "v1"] or len(segments) < 3:
        raise ResourceNotFound(path)
    top, rest = segments[2], segments[3:]
    if top == "policies":
        return _resolve_policies(org, rest, query.get("type"))
    resolver = _RESOLVERS.get(top)
    if resolver is None:
        raise ResourceNotFound(path)
    return resolver(org, rest)


def respond(
    org: SandboxOrg,
    codec: CursorCodec,
    path: str,
    query: Sequence[tuple[str, str]],
    raw_target: str,
) -> Answer:
    """Answer `GET path?query`: body and Link headers (ResourceNotFound, InvalidParameter)."""
    parameters = dict(query)
    for name in _UNSUPPORTED_PARAMETERS:
        if name in parameters:
            raise InvalidParameter(name)
    resolved = resolve(org, path, parameters)
    if resolved.listing is None:
        return Answer(resolved.template, _dumps(resolved.document), [])
    listing = resolved.listing
    links = [f'<{org.base}{raw_target}>; rel="self"']
    size = listing.page.page_size(parameters.get("limit"), listing.count)
    start = 0
    if listing.page.paged and parameters.get("after"):
        start = codec.decode(listing.scope, parameters["after"])
        if start > listing.count:
            raise InvalidParameter("after")
    end = min(start + size, listing.count)
    items = listing.json_items(start, end)
    next_url = None
    if listing.page.paged and end < listing.count:
        kept = [(name, value) for name, value in query if name not in ("after", "limit")]
        kept += [("after", codec.encode(listing.scope, end)), ("limit", str(size))]
        next_url = f"{org.base}{path}?{urlencode(kept)}"
        links.append(f'<{next_url}>; rel="next"')
    body = "[" + ",".join(items) + "]"
    if resolved.envelope is not None:
        # {"roles": [...], "_links": {"next": {"href": ...}}}: the items stay pre-encoded.
        next_link = "" if next_url is None else _dumps({"next": {"href": next_url}}).decode()
        body = f'{{"{resolved.envelope}":{body},"_links":{next_link or "{}"}}}'
    return Answer(resolved.template, body.encode(), links)
