"""The seeded org: sizes, lazily rendered items, and which fields carry secrets.

`SandboxOrg(spec, base_url)` renders every item from (seed, index) when asked; the only state it
builds is the membership index (which users are in which group, which users are assigned to
which app), a few arrays of integers computed on first use. 100,000 users cost nothing until a
page of them is served, and about a second and a few MB the first time group or app members are
listed.

Payloads follow the shapes of Okta's Management API (developer.okta.com/docs/api, the
okta-management-openapi-spec examples): `id`, `status`, `created`, `lastUpdated`, `profile`,
`credentials`, `_links`, ... including secret-bearing fields, listed in SECRET_FIELDS. Okta
itself omits most of those values from read responses (write-only); the sandbox returns them on
purpose so that a backup's secret stripping is exercised against the worst case. Every secret
value starts with SECRET_MARKER, so a test can also scan stored output for any that leaked.
"""

from __future__ import annotations

import json
import threading
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from strongroom_local.sandbox_okta.exceptions import InvalidSandboxSetting
from strongroom_local.sandbox_okta.paging import UNPAGED, PageRule
from strongroom_local.sandbox_okta.seeding import EPOCH, Kind, Seeded, timestamp

Item = dict[str, Any]

SECRET_MARKER = "sandbox-secret-"  # noqa: S105 - a prefix, not a secret

# Resource name -> dotted paths (inside each item) of the fields that hold secrets.
SECRET_FIELDS: Mapping[str, tuple[str, ...]] = {
    "apps": ("credentials.oauthClient.client_secret", "credentials.password.value"),
    "app_users": ("credentials.password.value",),
    "identity_providers": (
        "protocol.credentials.client.client_secret",
        "protocol.credentials.signing.privateKey",
    ),
    "authenticators": (
        "provider.configuration.secretKey",
        "provider.configuration.sharedSecret",
    ),
}

# Every policy type `GET /api/v1/policies?type=` accepts (Okta's PolicyType enum).
POLICY_TYPES = (
    "OKTA_SIGN_ON",
    "PASSWORD",
    "MFA_ENROLL",
    "ACCESS_POLICY",
    "PROFILE_ENROLLMENT",
    "IDP_DISCOVERY",
    "ENTITY_RISK",
    "POST_AUTH_SESSION",
    "DEVICE_SIGNAL_COLLECTION",
    "SESSION_VIOLATION_DETECTION",
    "CLIENT_UPDATE",
    "IDENTITY_CLAIM_SOURCING",
)
# Okta orgs hold exactly one policy of these types, with one immutable catch-all rule.
_SINGLETON_POLICY_TYPES = frozenset(
    {
        "IDP_DISCOVERY",
        "ENTITY_RISK",
        "POST_AUTH_SESSION",
        "SESSION_VIOLATION_DETECTION",
        "CLIENT_UPDATE",
        "IDENTITY_CLAIM_SOURCING",
        "PROFILE_ENROLLMENT",
    }
)
_RULE_TYPE = {"OKTA_SIGN_ON": "SIGN_ON"}

# Sign-on modes in the order apps cycle through them: even a four-app org has an OIDC app (client
# secret), a SAML app and a SWA app with shared credentials (password).
_APP_MODES = (
    "OPENID_CONNECT",
    "SAML_2_0",
    "BROWSER_PLUGIN",
    "BOOKMARK",
    "AUTO_LOGIN",
    "BASIC_AUTH",
)
_PER_USER_PASSWORD_MODES = frozenset({"AUTO_LOGIN", "BASIC_AUTH"})


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST_NAMES = _words(
    "Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Karl Laura Mallory Niaj Olivia Peggy"
    " Quentin Rupert Sybil Trent Uma Victor Wendy Xavier Yara Zoe Amir Beatriz Chen Dmitri Esi"
    " Farah Goran Hana Ines Jamal Kenji Leila Mateo Nadia"
)
_LAST_NAMES = _words(
    "Smith Johnson Garcia Okafor Nguyen Kowalski Haddad Tanaka Rossi Muller Silva Ivanova Khan"
    " Larsen Dubois Novak Costa Sato Jensen Moreau Kaur Mensah Schmidt Lopez Fischer Yilmaz Park"
    " Andersen Bianchi Ortiz Popescu Weber Nakamura Adeyemi Horvat Lindqvist Santos Brennan Abe"
)
_DEPARTMENTS = _words(
    "Engineering Sales Marketing Finance Support Legal Operations Security Design Research"
    " People Facilities"
)
_TITLES = ("Engineer", "Manager", "Analyst", "Director", "Specialist", "Associate", "Lead")
_CITIES = ("Chicago", "New York", "London", "Berlin", "Tokyo", "Lagos", "Sao Paulo", "Sydney")
_YEAR = 365 * 86_400
_USER_STATUSES = (
    (90, "ACTIVE"),
    (93, "STAGED"),
    (95, "PROVISIONED"),
    (97, "SUSPENDED"),
    (98, "LOCKED_OUT"),
    (99, "PASSWORD_EXPIRED"),
    (100, "RECOVERY"),
)
# Role assignments of the org's admins, in turn.
_ADMIN_ROLES = (
    ("SUPER_ADMIN",),
    ("ORG_ADMIN",),
    ("APP_ADMIN", "HELP_DESK_ADMIN"),
    ("READ_ONLY_ADMIN",),
    ("CUSTOM",),
    ("GROUP_MEMBERSHIP_ADMIN",),
)
_ROLE_LABELS = {
    "SUPER_ADMIN": "Super Administrator",
    "ORG_ADMIN": "Organization Administrator",
    "APP_ADMIN": "Application Administrator",
    "HELP_DESK_ADMIN": "Help Desk Administrator",
    "READ_ONLY_ADMIN": "Read Only Administrator",
    "GROUP_MEMBERSHIP_ADMIN": "Group Membership Administrator",
    "USER_ADMIN": "Group Administrator",
}
_SYSTEM_SCOPES = (
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
    "device_sso",
)
_AUTH_SERVER_POLICIES = 2
_CLAIMS_PER_SERVER = 3
_CUSTOM_SCOPES_PER_SERVER = 2
_IDP_TYPES = ("GOOGLE", "SAML2", "OIDC", "APPLE", "MICROSOFT", "FACEBOOK")
_AUTHENTICATORS = (
    ("email", "okta_email", "Email"),
    ("password", "okta_password", "Password"),
    ("phone", "phone_number", "Phone"),
    ("app", "okta_verify", "Okta Verify"),
    ("security_key", "webauthn", "Security Key or Biometric"),
    ("security_question", "security_question", "Security Question"),
    ("app", "google_otp", "Google Authenticator"),
    ("app", "duo", "Duo Security"),
    ("security_key", "onprem_mfa", "On-Prem MFA"),
)
_BEHAVIORS = (
    (
        "New Country",
        "ANOMALOUS_LOCATION",
        {"maxEventsUsedForEvaluation": 50, "granularity": "COUNTRY"},
    ),
    ("New Device", "ANOMALOUS_DEVICE", {"maxEventsUsedForEvaluation": 20}),
    ("New IP", "ANOMALOUS_IP", {"maxEventsUsedForEvaluation": 50}),
    ("Velocity", "VELOCITY", {"velocityKph": 805}),
)
_SYSTEM_ZONES = (
    ("LegacyIpZone", "IP", "POLICY"),
    ("BlockedIpZone", "IP", "BLOCKLIST"),
    ("DefaultEnhancedDynamicZone", "DYNAMIC_V2", "BLOCKLIST"),
)


def _bounded(name: str, value: int, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSandboxSetting(f"{name}: must be an integer from {low} to {high}")


@dataclass(frozen=True)
class OrgSpec:
    """Sizes of the seeded org. Counts include Okta's built-in items where noted."""

    seed: int = 1
    users: int = 25
    groups: int = 5  # including the built-in Everyone group
    apps: int = 4
    group_rules: int = 3
    memberships_per_user: int = 2  # groups besides Everyone, drawn with a skew
    apps_per_user: int = 1  # direct app assignments, drawn with a skew
    groups_per_app: int = 2
    authorization_servers: int = 2  # including `default`
    policies_per_type: int = 2  # for types an org may hold several of
    rules_per_policy: int = 2
    network_zones: int = 2  # besides the three system zones
    trusted_origins: int = 3
    identity_providers: int = 3
    admins: int = 3
    custom_roles: int = 2

    def __post_init__(self) -> None:
        _bounded("seed", self.seed, 0, 2**63 - 1)
        _bounded("users", self.users, 0, 1_000_000)
        _bounded("groups", self.groups, 1, 100_000)
        _bounded("apps", self.apps, 0, 10_000)
        _bounded("group_rules", self.group_rules, 0, 1_000)
        _bounded("memberships_per_user", self.memberships_per_user, 0, 20)
        _bounded("apps_per_user", self.apps_per_user, 0, 20)
        _bounded("groups_per_app", self.groups_per_app, 0, 50)
        _bounded("authorization_servers", self.authorization_servers, 1, 50)
        _bounded("policies_per_type", self.policies_per_type, 1, 50)
        _bounded("rules_per_policy", self.rules_per_policy, 1, 50)
        _bounded("network_zones", self.network_zones, 0, 100)
        _bounded("trusted_origins", self.trusted_origins, 0, 1_000)
        _bounded("identity_providers", self.identity_providers, 0, 100)
        _bounded("admins", self.admins, 0, min(self.users, 1_000))
        _bounded("custom_roles", self.custom_roles, 0, 100)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> OrgSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidSandboxSetting(f"{unknown[0]}: not an org size")
        return cls(**dict(values))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Listing:
    """One list endpoint's items: `count` of them, rendered by index, paged by `page`.

    `scope` names the listing for cursors (a cursor only works for the listing that issued it).
    """

    scope: str
    count: int
    render: Callable[[int], Item]
    page: PageRule
    # A faster renderer of the same item as compact JSON, where one exists.
    render_json: Callable[[int], str] | None = None

    def items(self) -> Iterator[Item]:
        return (self.render(index) for index in range(self.count))

    def json_items(self, start: int, end: int) -> list[str]:
        """Items `start` to `end` (exclusive) as compact JSON texts."""
        if self.render_json is not None:
            return [self.render_json(index) for index in range(start, end)]
        return [_compact(self.render(index)) for index in range(start, end)]


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _skewed(value: int, bound: int) -> int:
    """Map a 64-bit value to [0, bound), favouring small results (a few big groups, many small)."""
    fraction = value / 2**64
    return min(int(bound * fraction * fraction), bound - 1)


class SandboxOrg:
    """Every resource of the seeded org, rendered with links under `base_url`."""

    def __init__(self, spec: OrgSpec, base_url: str, *, cache_limit: int = 200_000) -> None:
        self.spec = spec
        self.base = base_url.rstrip("/")
        self.seeded = Seeded(spec.seed)
        self._cache_limit = cache_limit
        self._user_json: dict[int, str] = {}
        # Ids are asked for again and again (members, assignments, links): computed once.
        self._user_ids: dict[int, str] = {}
        self._group_ids: dict[int, str] = {}
        self._app_ids: dict[int, str] = {}
        self._topology_lock = threading.Lock()
        self._group_members: list[array[int]] | None = None
        self._app_users: list[array[int]] | None = None
        self._app_groups: dict[int, list[int]] = {}
        seeded = self.seeded
        self.user_type_id = seeded.make_id("oty", Kind.USER_TYPE, 0)
        self.schema_id = seeded.make_id("osc", Kind.SCHEMA, 0)
        self.org_id = seeded.make_id("00o", Kind.ORG, 0)
        self._policies: list[tuple[str, int]] = [
            (policy_type, ordinal)
            for policy_type in POLICY_TYPES
            for ordinal in range(
                1 if policy_type in _SINGLETON_POLICY_TYPES else spec.policies_per_type
            )
        ]
        self._policies_by_type: dict[str, list[int]] = {}
        for index, (policy_type, _) in enumerate(self._policies):
            self._policies_by_type.setdefault(policy_type, []).append(index)
        self._admins: dict[int, int] = {
            (ordinal * spec.users) // spec.admins: ordinal for ordinal in range(spec.admins)
        }
        self._oidc_apps = [j for j in range(spec.apps) if self.app_mode(j) == "OPENID_CONNECT"]

    @property
    def policy_count(self) -> int:
        """Policies of every type (`policy_id(index)` for index below this)."""
        return len(self._policies)

    @property
    def auth_server_policy_count(self) -> int:
        """Policies of each authorization server."""
        return _AUTH_SERVER_POLICIES

    # ---- helpers ---------------------------------------------------------------------------

    def _link(self, path: str) -> dict[str, str]:
        return {"href": f"{self.base}{path}"}

    def secret(self, *parts: int) -> str:
        return SECRET_MARKER + self.seeded.token(40, Kind.SECRET, *parts)

    def _times(self, kind: Kind, index: int) -> tuple[str, str]:
        created = self.seeded.instant(kind, index, 1, within_years=3)
        updated = created + self.seeded.below(365 * 86_400, kind, index, 2)
        return timestamp(created), timestamp(updated)

    # ---- ids -------------------------------------------------------------------------------

    def _cached_id(self, cache: dict[int, str], prefix: str, kind: Kind, index: int) -> str:
        cached = cache.get(index)
        if cached is None:
            cached = self.seeded.make_id(prefix, kind, index)
            if len(cache) < self._cache_limit:
                cache[index] = cached
        return cached

    def user_id(self, index: int) -> str:
        return self._cached_id(self._user_ids, "00u", Kind.USER, index)

    def group_id(self, index: int) -> str:
        return self._cached_id(self._group_ids, "00g", Kind.GROUP, index)

    def app_id(self, index: int) -> str:
        return self._cached_id(self._app_ids, "0oa", Kind.APP, index)

    def policy_id(self, index: int) -> str:
        return self.seeded.make_id("00p", Kind.POLICY, index)

    def auth_server_id(self, index: int) -> str:
        return "default" if index == 0 else self.seeded.make_id("aus", Kind.AUTH_SERVER, index)

    def _find(self, identifier: str, prefix: str, kind: Kind, count: int) -> int | None:
        index = self.seeded.index_of(identifier, prefix, kind)
        return index if index is not None and index < count else None

    def find_user(self, identifier: str) -> int | None:
        return self._find(identifier, "00u", Kind.USER, self.spec.users)

    def find_group(self, identifier: str) -> int | None:
        return self._find(identifier, "00g", Kind.GROUP, self.spec.groups)

    def find_app(self, identifier: str) -> int | None:
        return self._find(identifier, "0oa", Kind.APP, self.spec.apps)

    def find_policy(self, identifier: str) -> int | None:
        return self._find(identifier, "00p", Kind.POLICY, len(self._policies))

    def find_auth_server(self, identifier: str) -> int | None:
        if identifier == "default":
            return 0
        index = self._find(identifier, "aus", Kind.AUTH_SERVER, self.spec.authorization_servers)
        return index if index != 0 else None

    def find_auth_server_policy(self, server: int, identifier: str) -> int | None:
        index = self.seeded.index_of(identifier, "00p", Kind.AUTH_SERVER_POLICY)
        if index is None or index // 8 != server or index % 8 >= _AUTH_SERVER_POLICIES:
            return None
        return index % 8

    def find_group_rule(self, identifier: str) -> int | None:
        return self._find(identifier, "0pr", Kind.GROUP_RULE, self._group_rule_count())

    # ---- topology --------------------------------------------------------------------------

    def _build_topology(self) -> None:
        spec, seeded = self.spec, self.seeded
        other_groups = spec.groups - 1
        members: list[array[int]] = [array("I") for _ in range(spec.groups)]
        app_users: list[array[int]] = [array("I") for _ in range(spec.apps)]
        for user in range(spec.users):
            if other_groups:
                chosen: list[int] = []
                for draw in range(spec.memberships_per_user):
                    group = 1 + _skewed(seeded.number(Kind.MEMBERSHIP, user, draw), other_groups)
                    if group not in chosen:
                        chosen.append(group)
                        members[group].append(user)
            if spec.apps:
                assigned: list[int] = []
                for draw in range(spec.apps_per_user):
                    app = _skewed(seeded.number(Kind.APP_ASSIGNMENT, user, draw), spec.apps)
                    if app not in assigned:
                        assigned.append(app)
                        app_users[app].append(user)
        self._group_members, self._app_users = members, app_users

    def _topology(self) -> tuple[list[array[int]], list[array[int]]]:
        with self._topology_lock:
            if self._group_members is None or self._app_users is None:
                self._build_topology()
            members, app_users = self._group_members, self._app_users
        if members is None or app_users is None:
            raise RuntimeError("the membership index was not built")
        return members, app_users

    def warm_up(self) -> None:
        """Build the membership index now rather than on the first request that needs it."""
        self._topology()

    def group_member_indexes(self, group: int) -> Sequence[int]:
        if group == 0:
            return range(self.spec.users)
        return self._topology()[0][group]

    def app_user_indexes(self, app: int) -> Sequence[int]:
        return self._topology()[1][app]

    def app_group_indexes(self, app: int) -> list[int]:
        cached = self._app_groups.get(app)
        if cached is not None:
            return cached
        other_groups = self.spec.groups - 1
        chosen: set[int] = set()
        if other_groups:
            for draw in range(self.spec.groups_per_app):
                chosen.add(1 + self.seeded.below(other_groups, Kind.APP_GROUP, app, draw))
        ordered = sorted(chosen)
        self._app_groups[app] = ordered
        return ordered

    # ---- users -----------------------------------------------------------------------------

    def _user_names(self, index: int) -> tuple[str, str, str]:
        """First name, last name and login (also the email) of user `index`."""
        value = self.seeded.number(Kind.USER, index)
        first = _FIRST_NAMES[value % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(value >> 8) % len(_LAST_NAMES)]
        return first, last, f"{first.lower()}.{last.lower()}.{index}@example.com"

    def _user_fields(self, index: int) -> tuple[str, ...]:
        """The variable parts of user `index`, in the order `user` and `user_json` use them.

        One derived value per independent choice: users are rendered by the hundred thousand.
        """
        values = self.seeded.stream(Kind.USER, index)
        names = next(values)
        first = _FIRST_NAMES[names % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(names >> 8) % len(_LAST_NAMES)]
        roll = (names >> 16) % 100
        status = (
            "ACTIVE"
            if index in self._admins
            else next(name for bound, name in _USER_STATUSES if roll < bound)
        )
        created_at = EPOCH + next(values) % (3 * _YEAR)
        activated_at = created_at + next(values) % 86_400
        changed_at = activated_at + next(values) % (200 * 86_400)
        login_at = changed_at + next(values) % (100 * 86_400)
        return (
            self.user_id(index),
            status,
            first,
            last,
            f"{first.lower()}.{last.lower()}.{index}@example.com",
            timestamp(created_at),
            timestamp(activated_at),
            timestamp(changed_at),
            timestamp(login_at),
            _DEPARTMENTS[(names >> 24) % len(_DEPARTMENTS)],
            _TITLES[(names >> 32) % len(_TITLES)],
            _CITIES[(names >> 40) % len(_CITIES)],
        )

    def user(self, index: int) -> Item:
        (user_id, status, first, last, login, created, activated, changed, last_login,
         department, title, city) = self._user_fields(index)  # fmt: skip
        never_activated = status in ("STAGED", "PROVISIONED")
        return {
            "id": user_id,
            "status": status,
            "created": created,
            "activated": None if never_activated else activated,
            "statusChanged": changed,
            "lastLogin": None if never_activated else last_login,
            "lastUpdated": last_login,
            "passwordChanged": None if status == "STAGED" else activated,
            "type": {"id": self.user_type_id},
            "profile": {
                "firstName": first,
                "lastName": last,
                "mobilePhone": None,
                "secondEmail": None,
                "login": login,
                "email": login,
                "department": department,
                "title": title,
                "city": city,
                "employeeNumber": str(100_000 + index),
            },
            "credentials": {
                "password": {},
                "emails": [{"value": login, "status": "VERIFIED", "type": "PRIMARY"}],
                "provider": {"type": "OKTA", "name": "OKTA"},
            },
            "_links": {"self": {"href": f"{self.base}/api/v1/users/{user_id}"}},
        }

    def user_json(self, index: int) -> str:
        """`json.dumps(user(index), separators=(",", ":"))`, cached.

        A backup reads each user several times (the users list, Everyone's members, each of its
        groups' members), so the first rendering is kept, up to `cache_limit` users (about 1 KB
        each): 100,000 users cost about 100 MB once all have been served.
        """
        cached = self._user_json.get(index)
        if cached is None:
            cached = self._render_user_json(index)
            if len(self._user_json) < self._cache_limit:
                self._user_json[index] = cached
        return cached

    def _render_user_json(self, index: int) -> str:
        """The user written out directly: twice as fast as building the dict and encoding it.

        Every value comes from a fixed alphabet that JSON does not escape; a test holds the
        two renderings equal.
        """
        (user_id, status, first, last, login, created, activated, changed, last_login,
         department, title, city) = self._user_fields(index)  # fmt: skip
        never_activated = status in ("STAGED", "PROVISIONED")
        activated_json = "null" if never_activated else f'"{activated}"'
        last_login_json = "null" if never_activated else f'"{last_login}"'
        password_changed = "null" if status == "STAGED" else f'"{activated}"'
        return (
            f'{{"id":"{user_id}","status":"{status}","created":"{created}",'
            f'"activated":{activated_json},"statusChanged":"{changed}",'
            f'"lastLogin":{last_login_json},"lastUpdated":"{last_login}",'
            f'"passwordChanged":{password_changed},"type":{{"id":"{self.user_type_id}"}},'
            f'"profile":{{"firstName":"{first}","lastName":"{last}","mobilePhone":null,'
            f'"secondEmail":null,"login":"{login}","email":"{login}",'
            f'"department":"{department}","title":"{title}","city":"{city}",'
            f'"employeeNumber":"{100_000 + index}"}},'
            f'"credentials":{{"password":{{}},"emails":[{{"value":"{login}",'
            f'"status":"VERIFIED","type":"PRIMARY"}}],'
            f'"provider":{{"type":"OKTA","name":"OKTA"}}}},'
            f'"_links":{{"self":{{"href":"{self.base}/api/v1/users/{user_id}"}}}}}}'
        )

    def users(self) -> Listing:
        rule = PageRule(default=200, maximum=200)
        return Listing("users", self.spec.users, self.user, rule, self.user_json)

    # ---- groups ----------------------------------------------------------------------------

    def group(self, index: int) -> Item:
        group_id = self.group_id(index)
        created, updated = self._times(Kind.GROUP, index)
        links: dict[str, Any] = {
            "logo": [
                {
                    "name": size,
                    "href": f"{self.base}/img/logos/groups/okta-{size}.png",
                    "type": "image/png",
                }
                for size in ("medium", "large")
            ],
            "users": self._link(f"/api/v1/groups/{group_id}/users"),
            "apps": self._link(f"/api/v1/groups/{group_id}/apps"),
        }
        if index == 0:
            profile = {"name": "Everyone", "description": "All users in your organization"}
            group_type, object_class = "BUILT_IN", "okta:user_group"
        else:
            department = _DEPARTMENTS[index % len(_DEPARTMENTS)]
            profile = {
                "name": f"{department} {index}",
                "description": f"{department} team {index}",
            }
            group_type, object_class = "OKTA_GROUP", "okta:user_group"
            if index % 7 == 0 and self.spec.apps:
                group_type, object_class = "APP_GROUP", "okta:windows_security_principal"
                profile.update(
                    {
                        "groupType": "Security",
                        "samAccountName": profile["name"],
                        "groupScope": "Global",
                        "dn": f"CN={profile['name']},OU=Groups,DC=corp,DC=example,DC=com",
                        "windowsDomainQualifiedName": f"CORP\\{profile['name']}",
                    }
                )
                links["source"] = self._link(f"/api/v1/apps/{self.app_id(index % self.spec.apps)}")
        return {
            "id": group_id,
            "created": created,
            "lastUpdated": updated,
            "lastMembershipUpdated": updated,
            "objectClass": [object_class],
            "type": group_type,
            "profile": profile,
            "_links": links,
        }

    def groups(self) -> Listing:
        rule = PageRule(default=10_000, maximum=10_000)
        return Listing("groups", self.spec.groups, self.group, rule)

    def group_members(self, group: int) -> Listing:
        members = self.group_member_indexes(group)
        rule = PageRule(default=1_000, maximum=10_000)
        return Listing(
            f"groups/{group}/users",
            len(members),
            lambda n: self.user(members[n]),
            rule,
            lambda n: self.user_json(members[n]),
        )

    def _group_rule_count(self) -> int:
        return self.spec.group_rules if self.spec.groups > 1 else 0

    def group_rule(self, index: int) -> Item:
        rule_id = self.seeded.make_id("0pr", Kind.GROUP_RULE, index)
        created, updated = self._times(Kind.GROUP_RULE, index)
        target = 1 + index % (self.spec.groups - 1)
        department = _DEPARTMENTS[target % len(_DEPARTMENTS)]
        return {
            "type": "group_rule",
            "id": rule_id,
            "status": "INACTIVE" if index % 5 == 4 else "ACTIVE",
            "name": f"{department} by department {index}",
            "created": created,
            "lastUpdated": updated,
            "conditions": {
                "people": {"users": {"exclude": []}, "groups": {"exclude": []}},
                "expression": {
                    "value": f'user.department=="{department}"',
                    "type": "urn:okta:expression:1.0",
                },
            },
            "actions": {"assignUserToGroups": {"groupIds": [self.group_id(target)]}},
        }

    def group_rules(self) -> Listing:
        rule = PageRule(default=50, maximum=200)
        return Listing("groups/rules", self._group_rule_count(), self.group_rule, rule)

    # ---- apps ------------------------------------------------------------------------------

    def app_mode(self, index: int) -> str:
        return _APP_MODES[index % len(_APP_MODES)]

    def app(self, index: int) -> Item:
        seeded = self.seeded
        app_id = self.app_id(index)
        mode = self.app_mode(index)
        created, updated = self._times(Kind.APP, index)
        label = f"{_DEPARTMENTS[index % len(_DEPARTMENTS)]} app {index}"
        user_name_template = {"template": "${source.login}", "type": "BUILT_IN"}
        credentials: Item = {"userNameTemplate": user_name_template, "signing": {}}
        settings: Item = {
            "app": {},
            "notifications": {
                "vpn": {"network": {"connection": "DISABLED"}, "message": None, "helpUrl": None}
            },
        }
        site = f"https://app{index}.example.com"
        if mode == "OPENID_CONNECT":
            name = "oidc_client"
            service = index % 4 == 0
            credentials["signing"] = {"kid": seeded.token(43, Kind.APP, index, 20)}
            credentials["oauthClient"] = {
                "autoKeyRotation": True,
                "client_id": app_id,
                "client_secret": self.secret(Kind.APP, index),
                "token_endpoint_auth_method": "client_secret_basic",
                "pkce_required": not service,
            }
            settings["oauthClient"] = {
                "client_uri": site,
                "logo_uri": None,
                "redirect_uris": [] if service else [f"{site}/authorization-code/callback"],
                "post_logout_redirect_uris": [] if service else [site],
                "response_types": ["token"] if service else ["code"],
                "grant_types": (
                    ["client_credentials"] if service else ["authorization_code", "refresh_token"]
                ),
                "application_type": "service" if service else "web",
                "consent_method": "REQUIRED",
                "issuer_mode": "ORG_URL",
            }
        elif mode == "SAML_2_0":
            name = f"sandbox_saml_{index}"
            credentials["signing"] = {"kid": seeded.token(43, Kind.APP, index, 21)}
            settings["signOn"] = {
                "defaultRelayState": "",
                "ssoAcsUrl": f"{site}/sso/saml",
                "idpIssuer": "http://www.okta.com/${org.externalKey}",
                "audience": f"{site}/saml",
                "recipient": f"{site}/sso/saml",
                "destination": f"{site}/sso/saml",
                "subjectNameIdTemplate": "${user.userName}",
                "subjectNameIdFormat": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
                "responseSigned": True,
                "assertionSigned": True,
                "signatureAlgorithm": "RSA_SHA256",
                "digestAlgorithm": "SHA256",
                "honorForceAuthn": True,
                "authnContextClassRef": (
                    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
                ),
                "attributeStatements": [],
            }
        elif mode == "BROWSER_PLUGIN":
            name = "template_swa"
            credentials.update(
                {
                    "scheme": "SHARED_USERNAME_AND_PASSWORD",
                    "userName": f"shared-{index}@example.com",
                    "password": {"value": self.secret(Kind.APP, index, 1)},
                    "revealPassword": False,
                }
            )
            settings["app"] = {
                "buttonField": "btn-login",
                "passwordField": "txtbox-password",
                "usernameField": "txtbox-username",
                "url": f"{site}/login",
                "loginUrlRegex": None,
            }
        elif mode == "BOOKMARK":
            name = "bookmark"
            settings["app"] = {"requestIntegration": False, "url": site}
        elif mode == "AUTO_LOGIN":
            name = f"sandbox_autologin_{index}"
            credentials.update({"scheme": "EDIT_USERNAME_AND_PASSWORD", "revealPassword": False})
            settings["signOn"] = {"redirectUrl": site, "loginUrl": f"{site}/login"}
        else:  # BASIC_AUTH
            name = "template_basic_auth"
            credentials.update({"scheme": "EDIT_USERNAME_AND_PASSWORD", "revealPassword": False})
            settings["app"] = {"url": site, "authURL": f"{site}/auth"}
        links: Item = {
            "appLinks": [
                {
                    "name": f"{name}_link",
                    "href": f"{self.base}/home/{name}/{app_id}/aln{index}",
                    "type": "text/html",
                }
            ],
            "users": self._link(f"/api/v1/apps/{app_id}/users"),
            "groups": self._link(f"/api/v1/apps/{app_id}/groups"),
            "deactivate": self._link(f"/api/v1/apps/{app_id}/lifecycle/deactivate"),
        }
        if mode == "SAML_2_0":
            links["metadata"] = {
                "href": f"{self.base}/api/v1/apps/{app_id}/sso/saml/metadata",
                "type": "application/xml",
            }
        return {
            "id": app_id,
            "orn": f"orn:okta:idp:{self.org_id}:apps:{name}:{app_id}",
            "name": name,
            "label": label,
            "status": "INACTIVE" if index % 11 == 10 else "ACTIVE",
            "lastUpdated": updated,
            "created": created,
            "accessibility": {
                "selfService": False,
                "errorRedirectUrl": None,
                "loginRedirectUrl": None,
            },
            "visibility": {
                "autoSubmitToolbar": False,
                "hide": {"iOS": False, "web": mode == "OPENID_CONNECT" and index % 4 == 0},
                "appLinks": {f"{name}_link": True},
            },
            "features": [],
            "signOnMode": mode,
            "credentials": credentials,
            "settings": settings,
            "_links": links,
        }

    def apps(self) -> Listing:
        # Okta's default `limit` is -1 (no preference): pages of the maximum, 200.
        return Listing("apps", self.spec.apps, self.app, PageRule(default=None, maximum=200))

    def app_user(self, app: int, user: int) -> Item:
        user_id = self.user_id(user)
        login = self._user_names(user)[2]
        created = self.seeded.instant(Kind.APP_ASSIGNMENT, app, user, within_years=4)
        credentials: Item = {"userName": login}
        if self.app_mode(app) in _PER_USER_PASSWORD_MODES:
            credentials["password"] = {"value": self.secret(Kind.APP_ASSIGNMENT, app, user)}
        return {
            "id": user_id,
            "externalId": None,
            "created": timestamp(created),
            "lastUpdated": timestamp(created),
            "scope": "USER",
            "status": "ACTIVE",
            "statusChanged": timestamp(created),
            "passwordChanged": None,
            "syncState": "DISABLED",
            "lastSync": None,
            "credentials": credentials,
            "profile": {"email": login},
            "_links": {
                "app": self._link(f"/api/v1/apps/{self.app_id(app)}"),
                "user": self._link(f"/api/v1/users/{user_id}"),
            },
        }

    def app_users(self, app: int) -> Listing:
        members = self.app_user_indexes(app)
        rule = PageRule(default=50, maximum=500)
        return Listing(
            f"apps/{app}/users", len(members), lambda n: self.app_user(app, members[n]), rule
        )

    def app_group(self, app: int, position: int) -> Item:
        group = self.app_group_indexes(app)[position]
        app_id, group_id = self.app_id(app), self.group_id(group)
        return {
            "id": group_id,
            "priority": position,
            "lastUpdated": timestamp(self.seeded.instant(Kind.APP_GROUP, app, group)),
            "profile": {},
            "_links": {
                "app": self._link(f"/api/v1/apps/{app_id}"),
                "self": self._link(f"/api/v1/apps/{app_id}/groups/{group_id}"),
                "group": self._link(f"/api/v1/groups/{group_id}"),
            },
        }

    def app_groups(self, app: int) -> Listing:
        count = len(self.app_group_indexes(app))
        rule = PageRule(default=20, maximum=200, minimum=20)
        return Listing(f"apps/{app}/groups", count, lambda n: self.app_group(app, n), rule)

    # ---- policies --------------------------------------------------------------------------

    def policy_rule_count(self, policy: int) -> int:
        policy_type, _ = self._policies[policy]
        return 1 if policy_type in _SINGLETON_POLICY_TYPES else self.spec.rules_per_policy

    def policy(self, index: int) -> Item:
        policy_type, ordinal = self._policies[index]
        policy_id = self.policy_id(index)
        created, updated = self._times(Kind.POLICY, index)
        system = ordinal == 0
        document: Item = {
            "type": policy_type,
            "id": policy_id,
            "status": "ACTIVE",
            "name": "Default Policy" if system else f"{policy_type.title()} policy {ordinal}",
            "description": f"Sandbox {policy_type} policy {ordinal}",
            "priority": ordinal + 1,
            "system": system,
            "created": created,
            "lastUpdated": updated,
            "conditions": None,
        }
        everyone = {"people": {"groups": {"include": [self.group_id(0)]}}}
        if policy_type == "PASSWORD":
            document["conditions"] = {**everyone, "authProvider": {"provider": "OKTA"}}
            document["settings"] = {
                "password": {
                    "complexity": {
                        "minLength": 8 + ordinal * 4,
                        "minLowerCase": 1,
                        "minUpperCase": 1,
                        "minNumber": 1,
                        "minSymbol": ordinal % 2,
                        "excludeUsername": True,
                        "dictionary": {"common": {"exclude": True}},
                        "excludeAttributes": [],
                    },
                    "age": {
                        "maxAgeDays": 90,
                        "expireWarnDays": 7,
                        "minAgeMinutes": 0,
                        "historyCount": 4,
                    },
                    "lockout": {
                        "maxAttempts": 10,
                        "autoUnlockMinutes": 0,
                        "userLockoutNotificationChannels": [],
                        "showLockoutFailures": False,
                    },
                },
                "recovery": {
                    "factors": {
                        "okta_email": {
                            "status": "ACTIVE",
                            "properties": {"recoveryToken": {"tokenLifetimeMinutes": 60}},
                        }
                    }
                },
                "delegation": {"options": {"skipUnlock": False}},
            }
        elif policy_type == "MFA_ENROLL":
            document["conditions"] = everyone
            document["settings"] = {
                "type": "AUTHENTICATORS",
                "authenticators": [
                    {"key": "okta_email", "enroll": {"self": "NOT_ALLOWED"}},
                    {"key": "okta_verify", "enroll": {"self": "OPTIONAL"}},
                    {"key": "okta_password", "enroll": {"self": "REQUIRED"}},
                ],
            }
        elif policy_type == "OKTA_SIGN_ON":
            document["conditions"] = everyone
        links: Item = {"self": self._link(f"/api/v1/policies/{policy_id}")}
        links["rules"] = self._link(f"/api/v1/policies/{policy_id}/rules")
        document["_links"] = links
        return document

    def policies(self, policy_type: str) -> Listing:
        indexes = self._policies_by_type[policy_type]
        # Okta documents no page size for policies: everything unless `limit` is given.
        rule = PageRule(default=None, maximum=None)
        return Listing(
            f"policies/{policy_type}", len(indexes), lambda n: self.policy(indexes[n]), rule
        )

    def policy_rule(self, policy: int, index: int) -> Item:
        policy_type, _ = self._policies[policy]
        policy_id = self.policy_id(policy)
        rule_id = self.seeded.make_id("0pr", Kind.POLICY_RULE, policy * 64 + index)
        created, updated = self._times(Kind.POLICY_RULE, policy * 64 + index)
        last = index == self.policy_rule_count(policy) - 1
        rule: Item = {
            "id": rule_id,
            "status": "ACTIVE",
            "name": "Catch-all rule" if last else f"Rule {index}",
            "priority": 99 if last else index,
            "created": created,
            "lastUpdated": updated,
            "system": last,
            "conditions": None if last else {"people": {"users": {"exclude": []}}},
            "actions": self._policy_rule_actions(policy_type, index),
            "_links": {
                "self": self._link(f"/api/v1/policies/{policy_id}/rules/{rule_id}"),
            },
            "type": _RULE_TYPE.get(policy_type, policy_type),
        }
        return rule

    @staticmethod
    def _policy_rule_actions(policy_type: str, index: int) -> Item:
        actions: dict[str, Item] = {
            "OKTA_SIGN_ON": {
                "signon": {
                    "access": "ALLOW",
                    "requireFactor": index % 2 == 0,
                    "factorPromptMode": "ALWAYS",
                    "primaryFactor": "PASSWORD_IDP_ANY_FACTOR",
                    "session": {
                        "maxSessionIdleMinutes": 120,
                        "maxSessionLifetimeMinutes": 0,
                        "usePersistentCookie": False,
                    },
                }
            },
            "PASSWORD": {
                "passwordChange": {"access": "ALLOW"},
                "selfServicePasswordReset": {"access": "ALLOW"},
                "selfServiceUnlock": {"access": "DENY"},
            },
            "MFA_ENROLL": {"enroll": {"self": "CHALLENGE"}},
            "ACCESS_POLICY": {
                "appSignOn": {
                    "access": "ALLOW",
                    "verificationMethod": {
                        "factorMode": "2FA" if index % 2 == 0 else "1FA",
                        "type": "ASSURANCE",
                        "reauthenticateIn": "PT12H",
                        "constraints": [],
                    },
                }
            },
            "IDP_DISCOVERY": {"idp": {"providers": [{"type": "OKTA"}]}},
            "PROFILE_ENROLLMENT": {
                "profileEnrollment": {
                    "access": "ALLOW",
                    "preRegistrationInlineHooks": None,
                    "profileAttributes": [{"name": "email", "label": "Email", "required": True}],
                    "targetGroupIds": None,
                    "unknownUserAction": "DENY",
                }
            },
            "ENTITY_RISK": {"entityRisk": {"actions": []}},
            "POST_AUTH_SESSION": {"postAuthSession": {"failureActions": []}},
        }
        return actions.get(policy_type, {})

    def policy_rules(self, policy: int) -> Listing:
        count = self.policy_rule_count(policy)
        return Listing(
            f"policies/{policy}/rules", count, lambda n: self.policy_rule(policy, n), UNPAGED
        )

    # ---- authorization servers -------------------------------------------------------------

    def auth_server(self, index: int) -> Item:
        server_id = self.auth_server_id(index)
        created, updated = self._times(Kind.AUTH_SERVER, index)
        prefix = f"/api/v1/authorizationServers/{server_id}"
        return {
            "id": server_id,
            "name": "default" if index == 0 else f"Sandbox API {index}",
            "description": "Default Authorization Server" if index == 0 else f"API {index}",
            "audiences": ["api://default" if index == 0 else f"api://sandbox-{index}"],
            "issuer": f"{self.base}/oauth2/{server_id}",
            "issuerMode": "ORG_URL",
            "status": "ACTIVE",
            "created": created,
            "lastUpdated": updated,
            "credentials": {
                "signing": {
                    "rotationMode": "AUTO",
                    "lastRotated": updated,
                    "nextRotation": updated,
                    "kid": self.seeded.token(43, Kind.AUTH_SERVER, index, 3),
                }
            },
            "_links": {
                "scopes": self._link(f"{prefix}/scopes"),
                "claims": self._link(f"{prefix}/claims"),
                "policies": self._link(f"{prefix}/policies"),
                "self": self._link(prefix),
            },
        }

    def auth_servers(self) -> Listing:
        rule = PageRule(default=200, maximum=200)
        return Listing(
            "authorizationServers", self.spec.authorization_servers, self.auth_server, rule
        )

    def scope(self, server: int, index: int) -> Item:
        server_id = self.auth_server_id(server)
        scope_id = self.seeded.make_id("scp", Kind.SCOPE, server * 4096 + index)
        system = index < len(_SYSTEM_SCOPES)
        name = _SYSTEM_SCOPES[index] if system else f"sandbox:{index - len(_SYSTEM_SCOPES)}"
        return {
            "id": scope_id,
            "name": name,
            "description": f"Scope {name}",
            "system": system,
            "default": False,
            "displayName": name,
            "consent": "IMPLICIT",
            "optional": False,
            "metadataPublish": "ALL_CLIENTS" if system else "NO_CLIENTS",
            "_links": {
                "self": self._link(f"/api/v1/authorizationServers/{server_id}/scopes/{scope_id}")
            },
        }

    def scopes(self, server: int) -> Listing:
        count = len(_SYSTEM_SCOPES) + _CUSTOM_SCOPES_PER_SERVER
        rule = PageRule(default=200, maximum=200)
        return Listing(
            f"authorizationServers/{server}/scopes", count, lambda n: self.scope(server, n), rule
        )

    def claim(self, server: int, index: int) -> Item:
        server_id = self.auth_server_id(server)
        claim_id = self.seeded.make_id("ocl", Kind.CLAIM, server * 4096 + index)
        name = ("groups", "department", "employee_number")[index % 3]
        return {
            "id": claim_id,
            "name": name,
            "status": "ACTIVE",
            "claimType": "RESOURCE" if index % 2 == 0 else "IDENTITY",
            "valueType": "GROUPS" if name == "groups" else "EXPRESSION",
            "value": ".*" if name == "groups" else f"user.{name}",
            "conditions": {"scopes": []},
            "system": False,
            "alwaysIncludeInToken": True,
            "_links": {
                "self": self._link(f"/api/v1/authorizationServers/{server_id}/claims/{claim_id}")
            },
        }

    def claims(self, server: int) -> Listing:
        return Listing(
            f"authorizationServers/{server}/claims",
            _CLAIMS_PER_SERVER,
            lambda n: self.claim(server, n),
            UNPAGED,
        )

    def auth_server_policy_id(self, server: int, index: int) -> str:
        return self.seeded.make_id("00p", Kind.AUTH_SERVER_POLICY, server * 8 + index)

    def auth_server_policy(self, server: int, index: int) -> Item:
        server_id = self.auth_server_id(server)
        policy_id = self.auth_server_policy_id(server, index)
        created, updated = self._times(Kind.AUTH_SERVER_POLICY, server * 8 + index)
        prefix = f"/api/v1/authorizationServers/{server_id}/policies/{policy_id}"
        return {
            "type": "OAUTH_AUTHORIZATION_POLICY",
            "id": policy_id,
            "status": "ACTIVE",
            "name": "Default Policy" if index == 0 else f"Policy {index}",
            "description": f"Authorization server policy {index}",
            "priority": index + 1,
            "system": False,
            "conditions": {"clients": {"include": ["ALL_CLIENTS"]}},
            "created": created,
            "lastUpdated": updated,
            "_links": {"self": self._link(prefix), "rules": self._link(f"{prefix}/rules")},
        }

    def auth_server_policies(self, server: int) -> Listing:
        return Listing(
            f"authorizationServers/{server}/policies",
            _AUTH_SERVER_POLICIES,
            lambda n: self.auth_server_policy(server, n),
            UNPAGED,
        )

    def auth_server_rule(self, server: int, policy: int, index: int) -> Item:
        server_id = self.auth_server_id(server)
        policy_id = self.auth_server_policy_id(server, policy)
        number = (server * 8 + policy) * 64 + index
        rule_id = self.seeded.make_id("0pr", Kind.AUTH_SERVER_RULE, number)
        created, updated = self._times(Kind.AUTH_SERVER_RULE, number)
        return {
            "type": "RESOURCE_ACCESS",
            "id": rule_id,
            "status": "ACTIVE",
            "name": "Default Policy Rule" if index == 0 else f"Rule {index}",
            "priority": index + 1,
            "created": created,
            "lastUpdated": updated,
            "system": False,
            "conditions": {
                "people": {
                    "users": {"include": [], "exclude": []},
                    "groups": {"include": ["EVERYONE"], "exclude": []},
                },
                "grantTypes": {"include": ["client_credentials", "authorization_code"]},
                "scopes": {"include": ["*"]},
            },
            "actions": {
                "token": {
                    "accessTokenLifetimeMinutes": 60,
                    "refreshTokenLifetimeMinutes": 0,
                    "refreshTokenWindowMinutes": 10080,
                }
            },
            "_links": {
                "self": self._link(
                    f"/api/v1/authorizationServers/{server_id}/policies/{policy_id}/rules/{rule_id}"
                )
            },
        }

    def auth_server_rules(self, server: int, policy: int) -> Listing:
        return Listing(
            f"authorizationServers/{server}/policies/{policy}/rules",
            self.spec.rules_per_policy,
            lambda n: self.auth_server_rule(server, policy, n),
            UNPAGED,
        )

    def auth_server_client_apps(self, server: int) -> list[int]:
        servers = self.spec.authorization_servers
        return [app for n, app in enumerate(self._oidc_apps) if n % servers == server]

    def auth_server_client(self, server: int, app: int) -> Item:
        client_id = self.app_id(app)
        server_id = self.auth_server_id(server)
        label = self.app(app)["label"]
        return {
            "client_id": client_id,
            "client_name": label,
            "client_uri": f"https://app{app}.example.com",
            "logo_uri": None,
            "_links": {
                "client": {"href": f"{self.base}/oauth2/v1/clients/{client_id}", "title": label},
                "tokens": self._link(
                    f"/api/v1/authorizationServers/{server_id}/clients/{client_id}/tokens"
                ),
            },
        }

    def auth_server_clients(self, server: int) -> Listing:
        apps = self.auth_server_client_apps(server)
        return Listing(
            f"authorizationServers/{server}/clients",
            len(apps),
            lambda n: self.auth_server_client(server, apps[n]),
            UNPAGED,
        )

    # ---- security configuration ------------------------------------------------------------

    def zone(self, index: int) -> Item:
        zone_id = self.seeded.make_id("nzo", Kind.ZONE, index)
        created, updated = self._times(Kind.ZONE, index)
        zone: Item
        if index < len(_SYSTEM_ZONES):
            name, zone_type, usage = _SYSTEM_ZONES[index]
            zone = {"type": zone_type, "id": zone_id, "name": name, "status": "ACTIVE"}
            zone.update({"usage": usage, "created": created, "lastUpdated": updated})
            zone["system"] = True
            if zone_type == "IP":
                zone.update({"gateways": None, "proxies": None})
            else:
                zone.update(
                    {
                        "locations": {"include": [], "exclude": []},
                        "ipServiceCategories": {"include": ["ALL_ANONYMIZERS"], "exclude": []},
                        "asns": {"include": [], "exclude": []},
                    }
                )
        else:
            octet = index % 250
            zone = {
                "type": "IP",
                "id": zone_id,
                "name": f"Office {index}",
                "status": "ACTIVE",
                "usage": "POLICY",
                "created": created,
                "lastUpdated": updated,
                "system": False,
                "gateways": [{"type": "CIDR", "value": f"198.51.100.{octet}/32"}],
                "proxies": [{"type": "RANGE", "value": f"203.0.113.{octet}-203.0.113.{octet}"}],
            }
        zone["_links"] = {"self": self._link(f"/api/v1/zones/{zone_id}")}
        return zone

    def zones(self) -> Listing:
        # Okta's default `limit` is -1: every zone unless a `limit` is given.
        count = len(_SYSTEM_ZONES) + self.spec.network_zones
        return Listing("zones", count, self.zone, PageRule(default=None, maximum=None))

    def trusted_origin(self, index: int) -> Item:
        origin_id = self.seeded.make_id("tos", Kind.TRUSTED_ORIGIN, index)
        created, updated = self._times(Kind.TRUSTED_ORIGIN, index)
        admin = self.user_id(0) if self.spec.users else None
        return {
            "id": origin_id,
            "name": f"Portal {index}",
            "origin": f"https://portal{index}.example.com",
            "status": "ACTIVE",
            "scopes": [{"type": "CORS"}, {"type": "REDIRECT"}],
            "created": created,
            "createdBy": admin,
            "lastUpdated": updated,
            "lastUpdatedBy": admin,
            "_links": {"self": self._link(f"/api/v1/trustedOrigins/{origin_id}")},
        }

    def trusted_origins(self) -> Listing:
        rule = PageRule(default=20, maximum=200)
        return Listing("trustedOrigins", self.spec.trusted_origins, self.trusted_origin, rule)

    def identity_provider(self, index: int) -> Item:
        idp_id = self.seeded.make_id("0oa", Kind.IDP, index)
        idp_type = _IDP_TYPES[index % len(_IDP_TYPES)]
        created, updated = self._times(Kind.IDP, index)
        client_id = f"sandbox-client-{index}"
        protocol: Item
        if idp_type == "SAML2":
            protocol = {
                "type": "SAML2",
                "endpoints": {
                    "sso": {
                        "url": f"https://idp{index}.example.com/sso",
                        "binding": "HTTP-POST",
                        "destination": f"https://idp{index}.example.com/sso",
                    },
                    "acs": {"binding": "HTTP-POST", "type": "INSTANCE"},
                },
                "algorithms": {
                    "request": {"signature": {"algorithm": "SHA-256", "scope": "REQUEST"}},
                    "response": {"signature": {"algorithm": "SHA-256", "scope": "ANY"}},
                },
                "credentials": {
                    "trust": {
                        "issuer": f"https://idp{index}.example.com",
                        "audience": f"{self.base}/saml2/service-provider/{idp_id}",
                        "kid": self.seeded.token(36, Kind.IDP, index, 2),
                    }
                },
            }
        elif idp_type == "APPLE":
            protocol = {
                "type": "OIDC",
                "scopes": ["openid", "email", "name"],
                "credentials": {
                    "client": {"client_id": client_id},
                    "signing": {
                        "teamId": f"TEAM{index:06d}",
                        "privateKey": self.secret(Kind.IDP, index, 1),
                        "kid": self.seeded.token(10, Kind.IDP, index, 3),
                    },
                },
            }
        else:
            protocol = {
                "type": "OAUTH2" if idp_type == "FACEBOOK" else "OIDC",
                "scopes": ["openid", "profile", "email"],
                "credentials": {
                    "client": {
                        "client_id": client_id,
                        "client_secret": self.secret(Kind.IDP, index),
                    }
                },
            }
        return {
            "id": idp_id,
            "type": idp_type,
            "name": f"{idp_type.title()} {index}",
            "status": "ACTIVE",
            "created": created,
            "lastUpdated": updated,
            "protocol": protocol,
            "policy": {
                "provisioning": {
                    "action": "AUTO",
                    "profileMaster": False,
                    "groups": {"action": "NONE"},
                    "conditions": {
                        "deprovisioned": {"action": "NONE"},
                        "suspended": {"action": "NONE"},
                    },
                },
                "accountLink": {"filter": None, "action": "AUTO"},
                "subject": {
                    "userNameTemplate": {"template": "idpuser.email"},
                    "filter": None,
                    "matchType": "USERNAME",
                },
                "maxClockSkew": 0,
            },
            "_links": {"users": self._link(f"/api/v1/idps/{idp_id}/users")},
        }

    def identity_providers(self) -> Listing:
        rule = PageRule(default=20, maximum=200)
        return Listing("idps", self.spec.identity_providers, self.identity_provider, rule)

    def authenticator(self, index: int) -> Item:
        authenticator_type, key, name = _AUTHENTICATORS[index]
        authenticator_id = self.seeded.make_id("aut", Kind.AUTHENTICATOR, index)
        created, updated = self._times(Kind.AUTHENTICATOR, index)
        document: Item = {
            "type": authenticator_type,
            "id": authenticator_id,
            "key": key,
            "status": "INACTIVE" if key == "phone_number" else "ACTIVE",
            "name": name,
            "created": created,
            "lastUpdated": updated,
        }
        if key in ("okta_email", "phone_number", "security_question"):
            document["settings"] = {"allowedFor": "recovery" if key != "okta_email" else "any"}
        if key == "duo":
            document["settings"] = {}
            document["provider"] = {
                "type": "DUO",
                "configuration": {
                    "host": "https://api-sandbox.duosecurity.com",
                    "integrationKey": f"DI{self.seeded.token(18, Kind.AUTHENTICATOR, index, 1)}",
                    "secretKey": self.secret(Kind.AUTHENTICATOR, index),
                    "userNameTemplate": {"template": "oktaId"},
                },
            }
        if key == "onprem_mfa":
            document["provider"] = {
                "type": "RADIUS",
                "configuration": {
                    "hostName": "radius.example.com",
                    "authPort": 1812,
                    "instanceId": self.seeded.make_id("0oa", Kind.AUTHENTICATOR, 100 + index),
                    "sharedSecret": self.secret(Kind.AUTHENTICATOR, index, 1),
                    "userNameTemplate": {"template": "global.assign.userName.login"},
                },
            }
        document["_links"] = {
            "self": self._link(f"/api/v1/authenticators/{authenticator_id}"),
            "methods": self._link(f"/api/v1/authenticators/{authenticator_id}/methods"),
        }
        return document

    def authenticators(self) -> Listing:
        return Listing("authenticators", len(_AUTHENTICATORS), self.authenticator, UNPAGED)

    def behavior(self, index: int) -> Item:
        name, behavior_type, settings = _BEHAVIORS[index]
        behavior_id = self.seeded.make_id("abh", Kind.BEHAVIOR, index)
        created, updated = self._times(Kind.BEHAVIOR, index)
        return {
            "id": behavior_id,
            "name": name,
            "type": behavior_type,
            "settings": dict(settings),
            "status": "ACTIVE",
            "created": created,
            "lastUpdated": updated,
            "_links": {"self": self._link(f"/api/v1/behaviors/{behavior_id}")},
        }

    def behaviors(self) -> Listing:
        return Listing("behaviors", len(_BEHAVIORS), self.behavior, UNPAGED)

    def user_schema(self) -> Item:
        created, updated = self._times(Kind.SCHEMA, 0)
        self_permission = [{"principal": "SELF", "action": "READ_WRITE"}]

        def string(title: str, required: bool, **extra: Any) -> Item:
            return {
                "title": title,
                "type": "string",
                "required": required,
                **extra,
                "mutability": "READ_WRITE",
                "scope": "NONE",
                "permissions": self_permission,
                "master": {"type": "PROFILE_MASTER"},
            }

        return {
            "id": f"{self.base}/meta/schemas/user/{self.schema_id}",
            "$schema": "http://json-schema.org/draft-04/schema#",
            "name": "user",
            "title": "User",
            "description": "Okta user profile template with default permission settings",
            "lastUpdated": updated,
            "created": created,
            "definitions": {
                "base": {
                    "id": "#base",
                    "type": "object",
                    "properties": {
                        "login": string("Username", True, minLength=5, maxLength=100),
                        "firstName": string("First name", True, minLength=1, maxLength=50),
                        "lastName": string("Last name", True, minLength=1, maxLength=50),
                        "email": string("Primary email", True, format="email"),
                        "mobilePhone": string("Mobile phone", False, maxLength=100),
                        "secondEmail": string("Secondary email", False, format="email"),
                        "department": string("Department", False),
                        "title": string("Title", False),
                        "city": string("City", False),
                        "employeeNumber": string("Employee number", False),
                    },
                    "required": ["login", "firstName", "lastName", "email"],
                },
                "custom": {
                    "id": "#custom",
                    "type": "object",
                    "properties": {
                        "costCenter": string("Cost center", False, maxLength=20),
                    },
                    "required": [],
                },
            },
            "type": "object",
            "properties": {
                "profile": {
                    "allOf": [{"$ref": "#/definitions/base"}, {"$ref": "#/definitions/custom"}]
                }
            },
        }

    # ---- admin roles -----------------------------------------------------------------------

    def custom_role_id(self, index: int) -> str:
        return self.seeded.make_id("cr0", Kind.CUSTOM_ROLE, index)

    def custom_role(self, index: int) -> Item:
        role_id = self.custom_role_id(index)
        created, updated = self._times(Kind.CUSTOM_ROLE, index)
        return {
            "id": role_id,
            "label": f"Sandbox custom role {index}",
            "description": f"Custom role {index}",
            "created": created,
            "lastUpdated": updated,
            "_links": {
                "permissions": self._link(f"/api/v1/iam/roles/{role_id}/permissions"),
                "self": self._link(f"/api/v1/iam/roles/{role_id}"),
            },
        }

    def custom_roles(self) -> Listing:
        # Okta documents no page size here: the sandbox pages by 20 (or a smaller `limit`).
        rule = PageRule(default=20, maximum=20)
        return Listing("iam/roles", self.spec.custom_roles, self.custom_role, rule)

    def admin_user_indexes(self) -> list[int]:
        return sorted(self._admins)

    def role_assignee(self, position: int) -> Item:
        user_id = self.user_id(self.admin_user_indexes()[position])
        return {
            "id": user_id,
            "orn": f"orn:okta:directory:{self.org_id}:users:{user_id}",
            "_links": {
                "self": self._link(f"/api/v1/users/{user_id}"),
                "roles": self._link(f"/api/v1/users/{user_id}/roles"),
            },
        }

    def role_assignees(self) -> Listing:
        rule = PageRule(default=100, maximum=100)
        return Listing("iam/assignees/users", len(self._admins), self.role_assignee, rule)

    def _role_assignment(
        self, role_type: str, number: int, assignee_path: str, assignment_type: str
    ) -> Item:
        created, updated = self._times(Kind.ROLE_ASSIGNMENT, number)
        document: Item = {
            "id": self.seeded.make_id("ra1", Kind.ROLE_ASSIGNMENT, number),
            "label": _ROLE_LABELS.get(role_type, role_type),
            "type": role_type,
            "status": "ACTIVE",
            "created": created,
            "lastUpdated": updated,
            "assignmentType": assignment_type,
            "_links": {"assignee": self._link(assignee_path)},
        }
        if role_type == "CUSTOM":
            role_id = self.custom_role_id(number % self.spec.custom_roles)
            resource_set = self.seeded.make_id("iam", Kind.RESOURCE_SET, 0)
            document.update({"role": role_id, "resource-set": resource_set})
            document["label"] = self.custom_role(number % self.spec.custom_roles)["label"]
            document["_links"]["role"] = self._link(f"/api/v1/iam/roles/{role_id}")
        return document

    def user_roles(self, user: int) -> Listing:
        ordinal = self._admins.get(user)
        roles: tuple[str, ...] = ()
        if ordinal is not None:
            roles = _ADMIN_ROLES[ordinal % len(_ADMIN_ROLES)]
            if roles == ("CUSTOM",) and not self.spec.custom_roles:
                roles = ("READ_ONLY_ADMIN",)
        path = f"/api/v1/users/{self.user_id(user)}"
        return Listing(
            f"users/{user}/roles",
            len(roles),
            lambda n: self._role_assignment(roles[n], user * 8 + n, path, "USER"),
            UNPAGED,
        )

    def group_roles(self, group: int) -> Listing:
        # One group-assigned role: the first group besides Everyone administers users.
        count = 1 if group == 1 else 0
        path = f"/api/v1/groups/{self.group_id(group)}"
        return Listing(
            f"groups/{group}/roles",
            count,
            lambda n: self._role_assignment("USER_ADMIN", 8_000_000 + n, path, "GROUP"),
            UNPAGED,
        )


def without_secret_fields(resource: str, item: Item) -> Item:
    """A deep copy of `item` minus the fields SECRET_FIELDS lists for `resource`.

    The expected content of a backup file, for tests: what the sandbox served, secrets removed.
    """
    copied: Item = _deep_copy(item)
    for path in SECRET_FIELDS.get(resource, ()):
        *parents, leaf = path.split(".")
        node: Any = copied
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return copied


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_deep_copy(child) for child in value]
    return value
