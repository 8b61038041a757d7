"""Reading an Okta org through its Management API: what to read, in which order, page by page.

Every request goes through the outbound client (SSRF guard, timeouts, bounded jittered retries
on 429 and 5xx that honour Retry-After and X-Rate-Limit-Reset). On top of it, `RateGate`
remembers what Okta said about each rate-limit bucket (`X-Rate-Limit-Remaining`, `-Reset`) and
waits for the reset before spending a request that bucket no longer has, so a backup alone never
draws a 429. `next` links (the Link header's, or for the iam listings, which may name it only
in the body, `_links.next.href`) are followed exactly as given, and only within the org's own
origin (the API token is never sent anywhere else) and the listing's own path. A listing whose
links lead back to a page already read (A -> B -> A), or on past `MAX_LISTING_PAGES`, is
refused (`LinkTrail`): it would never end.

A list page is parsed item by item, keeping each item's JSON text exactly as Okta sent it, so
that an item with no secret field can be stored as that text rather than serialised again (most
of a backup's bytes are users, and encoding them again cost as much as parsing them).

`PagesAhead` asks for the next page while the caller writes the current one: still one request
at a time, in the same order and under the same gate, but the provider's answer time overlaps
with the work on the page before.

`OKTA_LANES` splits the resources by rate-limit bucket into lanes that the worker reads side by
side, one request in flight per lane: a large org's backup is bound by its groups bucket (two
requests per group), and the users and apps lanes are read while that bucket waits for its
window. Three requests at most are in flight at once, well within Okta's concurrency limits.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlencode, urlsplit

from backup_jobs.exceptions import (
    ProviderRefused,
    ProviderResponseInvalid,
    ProviderUnauthorized,
    ProviderUnavailable,
    ProviderWaitTooLong,
)
from strongroom.outbound import ResponseHeaders
from strongroom.outbound.exceptions import (
    DeadlineReached,
    MalformedResponse,
    OutboundError,
    ResponseTooLarge,
)

if TYPE_CHECKING:
    from strongroom.outbound.client import OutboundClient

# Okta's PolicyType values: `GET /api/v1/policies` needs one.
POLICY_TYPES: Final = (
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

# Fields that carry secrets, as dotted paths inside each item of a resource. Okta returns most
# of them only to write-capable tokens, but a backup must never hold one either way.
SECRET_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
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

Parameters = dict[str, str]


@dataclass(frozen=True)
class Parents:
    """Where the path parameters of a per-parent resource come from: each element of an
    already written resource's file (`source`), turned into parameters by `parameters`."""

    source: str
    parameters: Callable[[Any], Parameters]


@dataclass(frozen=True)
class ResourceSpec:
    """One resource type of the backup: one file, `resource.json`."""

    name: str
    path: str  # `{name}` placeholders are filled from each parent's parameters
    page_size: int | None = None  # the endpoint's maximum `limit`, asked for on the first page
    parents: Parents | None = None
    fixed_parents: tuple[Parameters, ...] = ()
    envelope: str | None = None  # iam endpoints wrap their items in an object
    single: bool = False  # one object (the user schema), not a list


def _item_id(key: str) -> Callable[[Any], Parameters]:
    return lambda element: {key: str(element["id"])}


def _child_id(parent_key: str, key: str) -> Callable[[Any], Parameters]:
    def parameters(element: Any) -> Parameters:
        return {parent_key: str(element["parent"][parent_key]), key: str(element["item"]["id"])}

    return parameters


# Parents come before their children. Page sizes are Okta's documented maxima but one.
OKTA_RESOURCES: Final[tuple[ResourceSpec, ...]] = (
    ResourceSpec("users", "/api/v1/users", 200),
    ResourceSpec("groups", "/api/v1/groups", 10_000),
    ResourceSpec(
        "group_members",
        "/api/v1/groups/{groupId}/users",
        1_000,  # Okta allows 10,000; a page of 10,000 users parsed is ~100 MB of memory
        Parents("groups", _item_id("groupId")),
    ),
    ResourceSpec("group_rules", "/api/v1/groups/rules", 200),
    ResourceSpec(
        "group_roles",
        "/api/v1/groups/{groupId}/roles",
        None,
        Parents("groups", _item_id("groupId")),
    ),
    ResourceSpec("apps", "/api/v1/apps", 200),
    ResourceSpec(
        "app_users", "/api/v1/apps/{appId}/users", 500, Parents("apps", _item_id("appId"))
    ),
    ResourceSpec(
        "app_groups", "/api/v1/apps/{appId}/groups", 200, Parents("apps", _item_id("appId"))
    ),
    ResourceSpec(
        "policies",
        "/api/v1/policies",
        None,
        fixed_parents=tuple({"type": policy_type} for policy_type in POLICY_TYPES),
    ),
    ResourceSpec(
        "policy_rules",
        "/api/v1/policies/{policyId}/rules",
        None,
        Parents("policies", lambda element: {"policyId": str(element["item"]["id"])}),
    ),
    ResourceSpec("authorization_servers", "/api/v1/authorizationServers", 200),
    ResourceSpec(
        "authorization_server_scopes",
        "/api/v1/authorizationServers/{authServerId}/scopes",
        200,
        Parents("authorization_servers", _item_id("authServerId")),
    ),
    ResourceSpec(
        "authorization_server_claims",
        "/api/v1/authorizationServers/{authServerId}/claims",
        None,
        Parents("authorization_servers", _item_id("authServerId")),
    ),
    ResourceSpec(
        "authorization_server_policies",
        "/api/v1/authorizationServers/{authServerId}/policies",
        None,
        Parents("authorization_servers", _item_id("authServerId")),
    ),
    ResourceSpec(
        "authorization_server_policy_rules",
        "/api/v1/authorizationServers/{authServerId}/policies/{policyId}/rules",
        None,
        Parents("authorization_server_policies", _child_id("authServerId", "policyId")),
    ),
    ResourceSpec(
        "authorization_server_clients",
        "/api/v1/authorizationServers/{authServerId}/clients",
        None,
        Parents("authorization_servers", _item_id("authServerId")),
    ),
    ResourceSpec("network_zones", "/api/v1/zones"),
    ResourceSpec("trusted_origins", "/api/v1/trustedOrigins", 200),
    ResourceSpec("identity_providers", "/api/v1/idps", 200),
    ResourceSpec("authenticators", "/api/v1/authenticators"),
    ResourceSpec("behaviors", "/api/v1/behaviors"),
    ResourceSpec("user_schema", "/api/v1/meta/schemas/user/default", single=True),
    ResourceSpec("custom_roles", "/api/v1/iam/roles", 20, envelope="roles"),
    ResourceSpec("role_assignees", "/api/v1/iam/assignees/users", 100, envelope="value"),
    # Only users with an admin role have roles: the assignees listing names them, so this costs
    # one request per admin rather than one per user.
    ResourceSpec(
        "user_roles",
        "/api/v1/users/{userId}/roles",
        None,
        Parents("role_assignees", _item_id("userId")),
    ),
)


def _lane(spec: ResourceSpec) -> int:
    if spec.path.startswith("/api/v1/groups"):
        return 0
    return 1 if spec.path.startswith("/api/v1/apps") else 2


# The resources in lanes that are read side by side, each lane in the order above. A lane's
# requests count against its own rate-limit buckets only (groups; apps; users and the rest), so
# a lane waiting for its bucket's window never holds another up, and every parent is in its
# child's lane. The groups lane (a request per group, twice) is the longest, so it starts first.
OKTA_LANES: Final[tuple[tuple[ResourceSpec, ...], ...]] = tuple(
    tuple(spec for spec in OKTA_RESOURCES if _lane(spec) == lane) for lane in range(3)
)


def first_url(base_url: str, spec: ResourceSpec, parameters: Parameters) -> str:
    """The first page of one listing of `spec` (the rest come from `next` links)."""
    path_parameters = {k: v for k, v in parameters.items() if "{" + k + "}" in spec.path}
    path = spec.path.format(**{k: _segment(v) for k, v in path_parameters.items()})
    query = {k: v for k, v in parameters.items() if k not in path_parameters}
    if spec.page_size is not None:
        query["limit"] = str(spec.page_size)
    return base_url + path + ("?" + urlencode(query) if query else "")


_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _segment(value: str) -> str:
    # Ids come from the provider's own responses; anything but an id-like token could move
    # the request to another path.
    if not _SEGMENT.fullmatch(value):
        raise ProviderResponseInvalid("an id in a response is not id-like")
    return value


def without_secrets(resource: str, item: Any) -> tuple[Any, list[str]]:
    """`item` minus the secret fields of `resource` (in place), and the paths it held."""
    removed = []
    for path in SECRET_FIELDS.get(resource, ()):
        *parents, leaf = path.split(".")
        node: Any = item
        for name in parents:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node:
            del node[leaf]
            removed.append(path)
    return item, removed


# ---- rate limits --------------------------------------------------------------------------------


def okta_bucket(path: str) -> str:
    """The rate-limit bucket Okta counts a request path against (its documented families)."""
    segments = path.strip("/").split("/")[2:] if path.startswith("/api/v1/") else []
    if not segments:
        return "/api/v1"
    top, depth = segments[0], len(segments)
    if top == "users":
        return "/api/v1/users" if depth == 1 else "/api/v1/users/{id}" if depth == 2 else "/api/v1"
    if top == "groups":
        if depth == 2 and segments[1] != "rules":
            return "/api/v1/groups/{id}"
        return "/api/v1/groups"
    if top == "apps":
        return "/api/v1/apps/{id}" if depth == 2 else "/api/v1/apps"
    return "/api/v1"


@dataclass
class _BucketState:
    remaining: int
    reset: float  # epoch seconds


@dataclass
class RateGate:
    """What each bucket's last answer said; how long to wait before its next request.

    A bucket with nothing left waits for its reset plus a small jitter (so that workers sharing
    an org do not all arrive at the same instant). A reset already past means a fresh window.
    """

    clock: Callable[[], float] = time.time
    random: Callable[[], float] = random.random
    max_jitter: float = 0.25
    buckets: dict[str, _BucketState] = field(default_factory=dict)
    waited: float = 0.0

    def wait_before(self, bucket: str) -> float:
        state = self.buckets.get(bucket)
        if state is None or state.remaining > 0:
            return 0.0
        wait = state.reset - self.clock()
        if wait <= 0:
            return 0.0
        return wait + self.max_jitter * self.random()

    def observe(self, bucket: str, headers: ResponseHeaders) -> None:
        try:
            remaining = int(headers["x-rate-limit-remaining"].strip())
            reset = float(headers["x-rate-limit-reset"].strip())
        except (KeyError, ValueError):
            return
        if not math.isfinite(reset):
            return  # "inf" or "nan" names no time (and Event.wait(inf) raises)
        self.buckets[bucket] = _BucketState(remaining, reset)

    def spent(self, bucket: str) -> None:
        """After a wait: the bucket's window has turned (until its next answer says more)."""
        self.buckets.pop(bucket, None)


# ---- pages --------------------------------------------------------------------------------------

# One listing's pages at most (a top-level resource's, or one parent's). Okta's fullest pages hold
# 200 users (`OKTA_RESOURCES`): this is 100 million users, more than one backup file can hold
# (S3 completes at most 10,000 parts, 80 GiB at the worker's 8 MiB: under 900 bytes a user). Next
# links that never end, each to a new page, which no cycle check can see, fail here.
MAX_LISTING_PAGES: Final = 500_000


def _url_digest(url: str) -> str:
    # A fixed size whatever the URL's length: the trail goes into the backup's checkpoint.
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


@dataclass
class LinkTrail:
    """Where one listing's `next` links have led so far, in constant memory (a checkpoint holds
    it, so a cycle is found across invocations too).

    A cycle is found by Brent's method: the mark moves to the page reached 1, 2, 4, 8... links
    after the last mark, and a link back to the marked page is a cycle. However long the path
    into a cycle and the cycle itself, a link leads back to the mark within about twice their
    length; a link straight back to the page it is on is refused at once.
    """

    pages: int = 0  # pages of the listing read
    mark: str | None = None  # the marked page's URL, as `_url_digest`
    power: int = 1  # links from the last mark to the next
    since_mark: int = 0

    def follow(self, url: str, next_url: str) -> None:
        """The page at `url` was read and links to `next_url`: ProviderResponseInvalid if that
        leads to another path, back to a page read before, or past `MAX_LISTING_PAGES`."""
        if self.mark is None:
            self.mark = _url_digest(url)  # the listing's first page (or the first resumed)
        self.pages += 1
        if self.pages >= MAX_LISTING_PAGES:
            raise ProviderResponseInvalid("a listing has more pages than any org holds")
        if urlsplit(next_url).path != urlsplit(url).path:
            # The same listing further on; another endpoint's items would be stored as this
            # listing's, past the secret fields that endpoint's file strips.
            raise ProviderResponseInvalid("a next link leads to another listing")
        following = _url_digest(next_url)
        if next_url == url or following == self.mark:
            raise ProviderResponseInvalid("a next link leads back to a page already read")
        self.since_mark += 1
        if self.since_mark == self.power:
            self.mark, self.power, self.since_mark = following, self.power * 2, 0

    def document(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "mark": self.mark,
            "power": self.power,
            "since_mark": self.since_mark,
        }

    @classmethod
    def from_document(cls, document: Mapping[str, Any] | None) -> LinkTrail:
        """A trail as `document` stored it; a new one for none (a checkpoint made before trails:
        the cycle check starts again from where it stands, which still finds any cycle)."""
        if not document:
            return cls()
        mark = document.get("mark")
        return cls(
            pages=int(document["pages"]),
            mark=None if mark is None else str(mark),
            power=int(document["power"]),
            since_mark=int(document["since_mark"]),
        )


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_url: str | None
    # Each item's JSON text as the provider sent it (list bodies only; None for the others).
    texts: list[str] | None = None


_NEXT = re.compile(r'<([^>]*)>\s*;\s*(?:[^,]*;\s*)?rel="?next"?', re.IGNORECASE)


def next_link(headers: ResponseHeaders) -> str | None:
    for value in headers.get_all("link"):
        match = _NEXT.search(value)
        if match:
            return match.group(1)
    return None


def _body_next_link(body: bytes) -> str | None:
    """The `_links.next.href` of an iam listing's body: Okta names the next page of those there
    (a Link header, where one comes too, is taken first). A body that is not JSON is refused
    when the page is parsed; a `next` that is not a URL string is refused here."""
    try:
        document = _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    links = document.get("_links", {}) if isinstance(document, dict) else {}
    if not isinstance(links, dict):
        raise ProviderResponseInvalid("the listing's links are not an object")
    if "next" not in links:
        return None
    following = links["next"]
    href = following.get("href") if isinstance(following, dict) else None
    if not isinstance(href, str) or not href:
        raise ProviderResponseInvalid("the listing's next link is not a URL")
    return href


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ProviderResponseInvalid("a link has an invalid port") from None
    return parts.scheme, (parts.hostname or ""), port


class OktaReader:
    """Pages of an Okta org's listings, within its origin, under its rate limits."""

    def __init__(
        self,
        *,
        outbound: OutboundClient,
        base_url: str,
        authorization: Callable[[], str],
        gate: RateGate,
        sleep: Callable[[float], None] = time.sleep,
        deadline: Callable[[], float | None] = lambda: None,
    ) -> None:
        """`deadline`: when each request's retries must end by (epoch seconds), or None."""
        self.base_url = base_url.rstrip("/")
        self._origin = _origin(self.base_url)
        self._outbound = outbound
        self._authorization = authorization
        self._gate = gate
        self._sleep = sleep
        self._deadline = deadline
        self.requests = 0

    def must_wait(self, url: str) -> bool:
        """Whether a request for `url` would first wait for its bucket's window to turn."""
        return self._gate.wait_before(okta_bucket(urlsplit(url).path)) > 0

    def page(self, url: str, spec: ResourceSpec) -> Page:
        """One page of a listing (or the one object of a `single` resource)."""
        return self.fetch(url, spec).parse(spec)

    def fetch(self, url: str, spec: ResourceSpec) -> Answer:
        """The provider's answer for one page, checked but not parsed yet."""
        if _origin(url) != self._origin:
            raise ProviderResponseInvalid("a next link leaves the org's origin")
        bucket = okta_bucket(urlsplit(url).path)
        wait = self._gate.wait_before(bucket)
        if wait > 0:
            # A window that turns past the deadline is waited for only until then, as a retry
            # is: a sleep Lambda cuts short saves no checkpoint (and a far one overflows
            # Event.wait). Until then the other lanes work on, and their stop wakes this one.
            deadline = self._deadline()
            if deadline is not None and self._gate.clock() + wait > deadline:
                self._sleep(max(deadline - self._gate.clock(), 0.0))
                raise ProviderWaitTooLong("the provider's rate-limit window ends too late")
            self._gate.waited += wait
            self._sleep(wait)
            self._gate.spent(bucket)
        self.requests += 1
        try:
            response = self._outbound.get(
                url,
                headers={"Authorization": self._authorization(), "Accept": "application/json"},
                deadline=self._deadline(),
            )
        except DeadlineReached:
            raise ProviderWaitTooLong("the provider asked for too long a wait") from None
        except (MalformedResponse, ResponseTooLarge):
            raise ProviderResponseInvalid("the provider's response is unusable") from None
        except OutboundError:
            raise ProviderUnavailable("the provider did not answer usably") from None
        self._gate.observe(bucket, response.headers)
        if response.status in (401, 403):
            raise ProviderUnauthorized("the provider refused the credential")
        if response.status != 200:
            raise ProviderRefused("the provider refused a request")
        next_url = None if spec.single else next_link(response.headers)
        if next_url is None and spec.envelope is not None:
            next_url = _body_next_link(response.body)
        return Answer(response.body, next_url)


@dataclass(frozen=True)
class Answer:
    """One page as the provider sent it: the body, and the `next` link of its headers."""

    body: bytes
    next_url: str | None

    def parse(self, spec: ResourceSpec) -> Page:
        try:
            text = self.body.decode("utf-8")
            if spec.single or spec.envelope is not None:
                return Page(_items(_DECODER.decode(text), spec), self.next_url)
            items, texts = split_list(text)
        except (ValueError, RecursionError):  # not UTF-8, not JSON (or nested too deep), no list
            raise ProviderResponseInvalid("the provider's response is not JSON") from None
        return Page(items, self.next_url, texts)


class PagesAhead:
    """A reader's pages, the next one asked for while the caller works on the current one.

    `ask_ahead(url)` sends that request on a thread of its own, unless its bucket has no request
    left in this window (then `fetch` waits for the reset as before, on the caller's thread: a
    read ahead never sleeps through a window the caller might not need). `fetch(url)` takes the
    answer read ahead for `url`, or reads it now; the caller parses it, once it has asked for the
    page after. At most one request is in flight and requests go out in the caller's order.
    Leaving (`close`, or the end of a `with` block) waits for a read still in flight and drops
    it.
    """

    def __init__(self, reader: OktaReader) -> None:
        self.reader = reader
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="okta-read")
        self._ahead: tuple[str, Future[Answer]] | None = None

    def ask_ahead(self, url: str, spec: ResourceSpec) -> None:
        self._drop_ahead()
        if not self.reader.must_wait(url):
            self._ahead = (url, self._executor.submit(self.reader.fetch, url, spec))

    def fetch(self, url: str, spec: ResourceSpec) -> Answer:
        if self._ahead is not None and self._ahead[0] == url:
            ahead, self._ahead = self._ahead[1], None
            return ahead.result()
        self._drop_ahead()
        return self.reader.fetch(url, spec)

    def _drop_ahead(self) -> None:
        if self._ahead is not None:
            wait([self._ahead[1]])  # its answer (or error) is not wanted
            self._ahead = None

    def close(self) -> None:
        self._drop_ahead()
        self._executor.shutdown(wait=True)

    def __enter__(self) -> PagesAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _items(body: Any, spec: ResourceSpec) -> list[Any]:
    if spec.single:
        if not isinstance(body, dict):
            raise ProviderResponseInvalid("expected an object")
        return [body]
    if spec.envelope is not None:
        body = body.get(spec.envelope) if isinstance(body, dict) else None
    if not isinstance(body, list):
        raise ProviderResponseInvalid("expected a list")
    return body


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has neither, and a backup must stay JSON.
    raise ValueError("not JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def split_list(text: str) -> tuple[list[Any], list[str]]:
    """A JSON array's items, parsed, and each one's text exactly as it stands in `text`.

    ValueError unless `text` is one JSON array (whitespace around it allowed) and nothing else.
    Each text is exactly what the parser read for its item: valid JSON that parses to the item.
    """
    # `[ \t\n\r]*` matches anywhere (perhaps nothing), so the match is never None.
    skip = cast("Callable[[str, int], re.Match[str]]", _WHITESPACE.match)
    decode = _DECODER.raw_decode
    items: list[Any] = []
    texts: list[str] = []
    index = skip(text, 0).end()
    if text[index : index + 1] != "[":
        raise ValueError("expected a list")
    index = skip(text, index + 1).end()
    if text[index : index + 1] == "]":
        index += 1
    else:
        while True:
            item, end = decode(text, index)
            items.append(item)
            texts.append(text[index:end])
            index = skip(text, end).end()
            separator = text[index : index + 1]
            index = skip(text, index + 1).end()
            if separator == "]":
                break
            if separator != ",":
                raise ValueError("expected , or ]")
    if skip(text, index).end() != len(text):
        raise ValueError("text after the list")
    return items, texts


def parent_parameters(spec: ResourceSpec, elements: Iterable[Any] | None) -> Sequence[Parameters]:
    """Each listing's parameters: fixed, one per parent element, or a single unparameterised one."""
    if spec.fixed_parents:
        return spec.fixed_parents
    if spec.parents is None:
        return ({},)
    try:
        return [spec.parents.parameters(element) for element in elements or ()]
    except (KeyError, TypeError):
        raise ProviderResponseInvalid("a parent item has no id") from None
