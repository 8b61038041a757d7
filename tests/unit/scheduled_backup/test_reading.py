"""Reading pages: each item's own text kept exactly as sent, strict JSON, and the next page read
ahead (one request at a time, in order, never waiting out a rate-limit window ahead)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from backup_jobs import worker
from backup_jobs.exceptions import (
    ProviderResponseInvalid,
    ProviderUnavailable,
    ProviderWaitTooLong,
)
from backup_jobs.okta import (
    OKTA_LANES,
    OKTA_RESOURCES,
    OktaReader,
    Page,
    PagesAhead,
    RateGate,
    okta_bucket,
    split_list,
)

from strongroom.outbound import OutboundResponse, ResponseHeaders
from strongroom.outbound.exceptions import DeadlineReached
from strongroom.outbound.exceptions import ProviderUnavailable as OutboundUnavailable

BASE = "https://acme.okta.com"
SPECS = {spec.name: spec for spec in OKTA_RESOURCES}
NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "items", "texts"),
    [
        ("[]", [], []),
        (" \n[ \t]\r\n", [], []),
        ('[{"a": 1}]', [{"a": 1}], ['{"a": 1}']),
        (
            ' [ {"a" : [1, 2.50]} ,"x",\n[ ] , null,-1e3 ] ',
            [{"a": [1, 2.5]}, "x", [], None, -1000.0],
            ['{"a" : [1, 2.50]}', '"x"', "[ ]", "null", "-1e3"],
        ),
        ('["caf\\u00e9", "\\"]"]', ["café", '"]'], ['"caf\\u00e9"', '"\\"]"']),
    ],
)
def test_split_list_keeps_each_items_own_text(
    text: str, items: list[Any], texts: list[str]
) -> None:
    assert split_list(text) == (items, texts)
    for item, own in zip(items, texts, strict=True):
        assert json.loads(own) == item


@pytest.mark.parametrize(
    "text",
    ["", "  ", "{}", '"[]"', "[", "[1", "[1,]", "[,1]", "[1 2]", "[1];", "[1] []", "[NaN]",
     "[-Infinity]", '[{"a": Infinity}]', "[01]", "['a']", '["\x01"]'],
)  # fmt: skip
def test_split_list_refuses_anything_but_one_json_list(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json's own errors are ValueErrors too
        split_list(text)


class _Provider:
    """An outbound client stand-in: answers each URL from a script, records the requests."""

    def __init__(self, answers: dict[str, tuple[bytes, dict[str, str]]]) -> None:
        self.answers = answers
        self.requested: list[str] = []
        self.deadlines: list[float | None] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()
        self._active = 0
        self.most_at_once = 0

    def get(
        self, url: str, *, headers: dict[str, str], deadline: float | None = None
    ) -> OutboundResponse:
        with self._lock:
            self.requested.append(url)
            self.deadlines.append(deadline)
            self._active += 1
            self.most_at_once = max(self.most_at_once, self._active)
        self.release.wait(5)
        with self._lock:
            self._active -= 1
        body, extra = self.answers[url]
        if body == b"fail":
            raise OutboundUnavailable("provider unavailable")
        if body == b"deadline":
            raise DeadlineReached("no time left to retry")
        return OutboundResponse(
            status=200, headers=ResponseHeaders(extra.items()), body=body, url=url
        )


def _reader(provider: _Provider, *, clock: Callable[[], float] = lambda: NOW) -> OktaReader:
    slept: list[tuple[float, str]] = []
    reader = OktaReader(
        outbound=provider,  # type: ignore[arg-type]
        base_url=BASE,
        authorization=lambda: "SSWS test",
        gate=RateGate(clock=clock, random=lambda: 0.0),
        sleep=lambda seconds: slept.append((seconds, threading.current_thread().name)),
    )
    reader.slept = slept  # type: ignore[attr-defined]
    return reader


def test_a_page_keeps_the_providers_text_and_a_non_list_is_refused() -> None:
    url = f"{BASE}/api/v1/users?limit=200"
    body = b'[ {"id": "00u1", "profile": {"city": "Z\\u00fcrich"}} ]'
    page = _reader(_Provider({url: (body, {})})).page(url, SPECS["users"])
    assert page.items == [{"id": "00u1", "profile": {"city": "Zürich"}}]
    assert page.texts == ['{"id": "00u1", "profile": {"city": "Z\\u00fcrich"}}']
    for bad in (b'{"id": 1}', b"[NaN]", b"[1]]", b"\xff[]"):
        with pytest.raises(ProviderResponseInvalid):
            _reader(_Provider({url: (bad, {})})).page(url, SPECS["users"])


@pytest.mark.parametrize(
    ("name", "envelope"), [("custom_roles", "roles"), ("role_assignees", "value")]
)
def test_an_iam_listing_is_followed_by_the_next_link_of_its_body(name: str, envelope: str) -> None:
    """Okta's iam listings name their next page in the body (`_links.next.href`); one sent with
    no Link header was taken for the last page, and the backup kept only the first."""
    url = f"{BASE}{SPECS[name].path}?limit=20"
    following = f"{BASE}{SPECS[name].path}?after=cr0Fw7&limit=20"
    body = {envelope: [{"id": "cr1"}], "_links": {"next": {"href": following}}}
    answer = _reader(_Provider({url: (json.dumps(body).encode(), {})})).fetch(url, SPECS[name])
    assert answer.next_url == following
    assert answer.parse(SPECS[name]).next_url == following
    # A Link header, when there is one, is the provider's word for it.
    header = f"{BASE}{SPECS[name].path}?after=hdr"
    headers = {"link": f'<{header}>; rel="next"'}
    answer = _reader(_Provider({url: (json.dumps(body).encode(), headers)})).fetch(url, SPECS[name])
    assert answer.next_url == header
    # The last page links to nothing; a next link that is not a URL string is refused.
    last = {envelope: [], "_links": {"self": {"href": url}}}
    assert (
        _reader(_Provider({url: (json.dumps(last).encode(), {})})).fetch(url, SPECS[name]).next_url
        is None
    )
    for odd in ({"next": {"href": 5}}, {"next": "x"}, {"next": {"href": ""}}, []):
        bad = json.dumps({envelope: [], "_links": odd}).encode()
        with pytest.raises(ProviderResponseInvalid):
            _reader(_Provider({url: (bad, {})})).fetch(url, SPECS[name])
    # The body's link leaves the org's origin no more than a header's may.
    away = {envelope: [], "_links": {"next": {"href": "https://evil.example/api/v1/iam/roles"}}}
    answer = _reader(_Provider({url: (json.dumps(away).encode(), {})})).fetch(url, SPECS[name])
    with pytest.raises(ProviderResponseInvalid, match="origin"):
        _reader(_Provider({})).fetch(str(answer.next_url), SPECS[name])


def test_items_without_secret_fields_are_written_as_sent_the_others_again_without_secrets() -> None:
    users = Page([{"id": "00u1", "n": 2.5}], None, ['{"id": "00u1",  "n": 2.50}'])
    removed: set[str] = set()
    assert worker._item_texts(SPECS["users"], users, removed, None) == [
        '{"id": "00u1",  "n": 2.50}'
    ]
    app = {
        "id": "0oa1",
        "label": "Zürich",
        "credentials": {"oauthClient": {"client_id": "c", "client_secret": "s3cr3t"}},
    }
    apps = Page([app], None, [json.dumps(app)])
    texts = worker._item_texts(SPECS["apps"], apps, removed, None)
    assert texts == [
        '{"id":"0oa1","label":"Zürich","credentials":{"oauthClient":{"client_id":"c"}}}'
    ]
    assert removed == {"credentials.oauthClient.client_secret"}


@pytest.mark.parametrize(
    ("text", "written", "removed"),
    [
        # No member named like a secret field's last name, no escape: written as sent.
        (
            '{"id": "00u1", "credentials": {"userName": "a"}}',
            '{"id": "00u1", "credentials": {"userName": "a"}}',
            set(),
        ),
        (
            '{"id":"00u1","credentials":{"password":{"value":"s3cr3t"}}}',
            '{"id":"00u1","credentials":{"password":{}}}',
            {"credentials.password.value"},
        ),
        # An escaped name is the same name once parsed.
        (
            '{"id":"00u1","credentials":{"password":{"val\\u0075e":"s3cr3t"}}}',
            '{"id":"00u1","credentials":{"password":{}}}',
            {"credentials.password.value"},
        ),
        # A duplicate key: the parser keeps the last, the text holds both.
        (
            '{"credentials":{"password":{"value":"s3cr3t"}},"credentials":{}}',
            '{"credentials":{}}',
            set(),
        ),
        # The name elsewhere than the secret path: kept, but written again to be sure.
        ('{"profile": {"value": 1}}', '{"profile":{"value":1}}', set()),
    ],
)
def test_an_item_that_may_hold_a_secret_is_written_again_without_it(
    text: str, written: str, removed: set[str]
) -> None:
    page = Page([json.loads(text)], None, [text])
    seen: set[str] = set()
    assert worker._item_texts(SPECS["app_users"], page, seen, None) == [written]
    assert seen == removed
    assert "s3cr3t" not in written


def test_parented_items_are_wrapped() -> None:
    members = Page([{"id": "00u1"}], None, ['{"id": "00u1"}'])
    wrapped = worker._item_texts(SPECS["group_members"], members, set(), {"groupId": "00g1"})
    assert wrapped == ['{"parent":{"groupId":"00g1"},"item":{"id": "00u1"}}']
    assert json.loads(wrapped[0]) == {"parent": {"groupId": "00g1"}, "item": {"id": "00u1"}}


def _pages(count: int) -> dict[str, tuple[bytes, dict[str, str]]]:
    answers = {}
    for n in range(count):
        url = f"{BASE}/api/v1/users?after={n}"
        headers = {"Link": f'<{BASE}/api/v1/users?after={n + 1}>; rel="next"'}
        answers[url] = (f'[{{"id": "u{n}"}}]'.encode(), headers)
    return answers


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("okta-read")]


def test_the_next_page_is_read_ahead_in_order_and_taken_when_asked_for() -> None:
    provider = _Provider(_pages(3))
    reader = _reader(provider)
    spec = SPECS["users"]
    with PagesAhead(reader) as pages:
        first = pages.fetch(f"{BASE}/api/v1/users?after=0", spec).parse(spec)
        assert first.next_url is not None
        pages.ask_ahead(first.next_url, spec)
        second = pages.fetch(first.next_url, spec).parse(spec)
        assert second.items == [{"id": "u1"}]
        assert second.next_url is not None
        pages.ask_ahead(second.next_url, spec)
    # Leaving waited for the read ahead (answered, then dropped) and ended the thread.
    assert provider.requested == [f"{BASE}/api/v1/users?after={n}" for n in range(3)]
    assert reader.requests == 3
    assert provider.most_at_once == 1
    assert _threads() == []


def test_a_read_ahead_for_another_url_is_dropped_and_its_error_never_raised() -> None:
    answers = _pages(2)
    answers[f"{BASE}/api/v1/users?after=1"] = (b"fail", {})
    provider = _Provider(answers)
    provider.release.clear()  # the read ahead is slow to answer
    threading.Timer(0.2, provider.release.set).start()
    spec = SPECS["users"]
    with PagesAhead(_reader(provider)) as pages:
        pages.ask_ahead(f"{BASE}/api/v1/users?after=1", spec)
        page = pages.fetch(f"{BASE}/api/v1/users?after=0", spec).parse(spec)  # not read ahead
        assert page.items == [{"id": "u0"}]
        pages.ask_ahead(f"{BASE}/api/v1/users?after=1", spec)
        with pytest.raises(ProviderUnavailable):  # asked for: its error is the caller's now
            pages.fetch(f"{BASE}/api/v1/users?after=1", spec)
    assert provider.requested == [
        f"{BASE}/api/v1/users?after=1",
        f"{BASE}/api/v1/users?after=0",
        f"{BASE}/api/v1/users?after=1",
    ]
    assert provider.most_at_once == 1  # the dropped read was waited for, not overtaken


def test_a_read_ahead_never_waits_for_a_rate_limit_window() -> None:
    answers = _pages(2)
    spent = {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 30)}
    answers[f"{BASE}/api/v1/users?after=0"] = (answers[f"{BASE}/api/v1/users?after=0"][0], spent)
    provider = _Provider(answers)
    reader = _reader(provider)
    spec = SPECS["users"]
    with PagesAhead(reader) as pages:
        pages.fetch(f"{BASE}/api/v1/users?after=0", spec)
        pages.ask_ahead(f"{BASE}/api/v1/users?after=1", spec)
        assert provider.requested == [f"{BASE}/api/v1/users?after=0"]  # nothing sent ahead
        pages.fetch(f"{BASE}/api/v1/users?after=1", spec)
    # The caller waited for the window, on its own thread, as it would without reading ahead.
    assert reader.slept == [(30.0, threading.current_thread().name)]  # type: ignore[attr-defined]
    assert len(provider.requested) == 2


def test_leaving_waits_for_the_read_in_flight() -> None:
    provider = _Provider(_pages(2))
    provider.release.clear()
    spec = SPECS["users"]
    pages = PagesAhead(_reader(provider))
    pages.ask_ahead(f"{BASE}/api/v1/users?after=0", spec)
    closer = threading.Thread(target=pages.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive()  # still waiting for the provider's answer
    provider.release.set()
    closer.join(5)
    assert not closer.is_alive()
    assert _threads() == []


def test_lanes_hold_every_resource_once_in_order_with_disjoint_buckets_and_their_parents() -> None:
    assert sorted(s.name for lane in OKTA_LANES for s in lane) == sorted(SPECS)
    order = [spec.name for spec in OKTA_RESOURCES]
    buckets: list[set[str]] = []
    for lane in OKTA_LANES:
        names = [spec.name for spec in lane]
        assert names == sorted(names, key=order.index)  # each lane keeps the backup's order
        for index, spec in enumerate(lane):
            if spec.parents is not None:
                assert spec.parents.source in names[:index]  # written earlier, in this lane
        # Every parameter stands for an id: the bucket of each request the lane makes.
        paths = (spec.path.replace("{", "").replace("}", "") for spec in lane)
        buckets.append({okta_bucket(path) for path in paths})
    for index, lane_buckets in enumerate(buckets):
        for other in buckets[index + 1 :]:
            assert not lane_buckets & other  # no lane ever waits on another's window
    assert OKTA_LANES[0][0].name == "groups"  # the longest lane first


def test_each_request_carries_the_readers_deadline_and_a_cut_retry_is_a_wait_too_long() -> None:
    first, second = f"{BASE}/api/v1/users?limit=200", f"{BASE}/api/v1/groups?limit=10000"
    provider = _Provider({first: (b"[]", {}), second: (b"deadline", {})})
    ends = iter([NOW + 60, NOW + 61])
    reader = OktaReader(
        outbound=provider,  # type: ignore[arg-type]
        base_url=BASE,
        authorization=lambda: "SSWS test",
        gate=RateGate(clock=lambda: NOW),
        deadline=lambda: next(ends),
    )
    assert reader.page(first, SPECS["users"]).items == []
    with pytest.raises(ProviderWaitTooLong) as raised:
        reader.page(second, SPECS["groups"])
    assert isinstance(raised.value, ProviderUnavailable)  # retried as an outage if need be
    assert raised.value.__cause__ is None
    assert provider.deadlines == [NOW + 60, NOW + 61]


def _linked(*links: tuple[str, str | None]) -> _Provider:
    """A provider whose pages (one item each) link as given: (page, its next page or None)."""
    answers = {}
    for page, following in links:
        headers = {"Link": f'<{BASE}{following}>; rel="next"'} if following else {}
        answers[BASE + page] = (b'[{"id": "00u1"}]', headers)
    return _Provider(answers)


def _read_users(
    provider: _Provider, pages: int, *, start: str = "a", checkpointed: bool = False
) -> worker.Checkpoint:
    """Read the users listing from page `start`, at most `pages`; where it stands.
    `checkpointed`: its state goes through a checkpoint's document between pages, as it does
    between invocations."""
    url = f"{BASE}/api/v1/users?after={start}"
    state = worker.Checkpoint("users", "upload", [], 0, url, 0, [])
    with PagesAhead(_reader(provider)) as pages_ahead:
        for _ in range(pages):
            if state.parent_index == 1:
                break
            worker._read_page(pages_ahead, SPECS["users"], [{}], state)
            if checkpointed:
                state = worker.Checkpoint.from_document(state.document())
    return state


@pytest.mark.parametrize("checkpointed", [False, True])
def test_next_links_that_lead_back_to_a_page_already_read_are_refused(checkpointed: bool) -> None:
    # A -> B -> A: before, only a link to the page itself (A -> A) was refused.
    provider = _linked(("/api/v1/users?after=a", "/api/v1/users?after=b"),
                       ("/api/v1/users?after=b", "/api/v1/users?after=a"))  # fmt: skip
    with pytest.raises(ProviderResponseInvalid, match="already read"):
        _read_users(provider, 50, checkpointed=checkpointed)
    assert provider.requested == [f"{BASE}/api/v1/users?after={p}" for p in "aba"]


@pytest.mark.parametrize(
    "elsewhere",
    ["/api/v1/apps?after=b", "/api/v1/users/00u1/factors?after=b", "/api/v1/Users?after=b",
     "/api/v1/users/?after=b", "/api/v1/users/../apps?after=b"],
)  # fmt: skip
def test_a_next_link_to_another_listing_of_the_org_is_refused(elsewhere: str) -> None:
    """A next page is the same listing further on. A link to another endpoint of the org would
    be stored as this listing's items, past the secret fields that endpoint's file strips."""
    provider = _linked(("/api/v1/users?after=a", elsewhere), (elsewhere, None))
    with pytest.raises(ProviderResponseInvalid, match="another listing"):
        _read_users(provider, 5)
    assert provider.requested == [f"{BASE}/api/v1/users?after=a"]


def test_a_cycle_after_a_run_of_pages_is_found_within_twice_its_length() -> None:
    # a -> b -> ... -> j, then a cycle back to f: f -> g -> h -> i -> j -> f.
    names = "abcdefghij"
    links: list[tuple[str, str | None]] = [
        (f"/api/v1/users?after={p}", f"/api/v1/users?after={q}")
        for p, q in itertools.pairwise(names)
    ]
    links.append(("/api/v1/users?after=j", "/api/v1/users?after=f"))
    provider = _linked(*links)
    with pytest.raises(ProviderResponseInvalid, match="already read"):
        _read_users(provider, 1000)
    assert len(provider.requested) <= 2 * len(names)


def test_a_listing_whose_links_never_end_is_refused_at_its_page_ceiling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from backup_jobs import okta

    monkeypatch.setattr(okta, "MAX_LISTING_PAGES", 5, raising=False)
    provider = _Provider(_pages(50))  # every page links to a new one: no cycle to find
    with pytest.raises(ProviderResponseInvalid, match="more pages"):
        _read_users(provider, 50, start="0")
    assert len(provider.requested) == 5


def test_each_listing_has_its_own_trail_and_a_checkpoint_keeps_it() -> None:
    from backup_jobs.okta import LinkTrail

    # Two parents whose listings are the same two pages: not a cycle, two listings.
    provider = _linked(("/api/v1/groups/g/users?limit=1000", "/api/v1/groups/g/users?after=1"),
                       ("/api/v1/groups/g/users?after=1", None))  # fmt: skip
    spec = SPECS["group_members"]
    state = worker.Checkpoint("group_members", "upload", [], 0, None, 0, [])
    with PagesAhead(_reader(provider)) as pages:
        while state.parent_index < 2:
            worker._read_page(pages, spec, [{"groupId": "g"}, {"groupId": "g"}], state)
            assert worker.Checkpoint.from_document(state.document()) == state
    assert len(provider.requested) == 4
    # A checkpoint saved before trails were kept still loads (its trail starts there).
    old = {k: v for k, v in state.document().items() if k != "trail"}
    assert worker.Checkpoint.from_document(old).trail == LinkTrail()


@pytest.mark.parametrize("reset", ["inf", "-inf", "nan", "1e400"])
def test_a_rate_limit_reset_that_is_no_time_is_not_waited_for(reset: str) -> None:
    # Event.wait(inf) raises OverflowError: such a header is read as no header.
    gate = RateGate(clock=lambda: 1000.0, random=lambda: 0.0)
    gate.observe("users", {"x-rate-limit-remaining": "0", "x-rate-limit-reset": reset})
    assert gate.wait_before("users") == 0.0
    gate.observe("users", {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "1010"})
    assert gate.wait_before("users") == 10.0


@pytest.mark.parametrize("reset_in", [600, 10**12])
def test_a_rate_limit_window_that_ends_past_the_deadline_is_a_wait_too_long(reset_in: int) -> None:
    # Okta said the bucket is spent until `reset_in` seconds from now: waiting for it would run
    # past the reader's deadline (Lambda would end the invocation mid-sleep, its checkpoint
    # unsaved; past threading.TIMEOUT_MAX, Event.wait raises OverflowError). It waits only until
    # the deadline and then checkpoints, as a retry asked to wait too long does.
    first, second = f"{BASE}/api/v1/users?after=0", f"{BASE}/api/v1/users?after=1"
    spent = {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + reset_in)}
    provider = _Provider({first: (b"[]", spent), second: (b"[]", {})})
    slept: list[float] = []
    reader = OktaReader(
        outbound=provider,  # type: ignore[arg-type]
        base_url=BASE,
        authorization=lambda: "SSWS test",
        gate=RateGate(clock=lambda: NOW, random=lambda: 0.0),
        sleep=slept.append,
        deadline=lambda: NOW + 60,
    )
    reader.page(first, SPECS["users"])
    with pytest.raises(ProviderWaitTooLong):
        reader.page(second, SPECS["users"])
    assert slept == [60.0]
    assert provider.requested == [first]


def test_a_rate_limit_window_that_ends_before_the_deadline_is_waited_for() -> None:
    first, second = f"{BASE}/api/v1/users?after=0", f"{BASE}/api/v1/users?after=1"
    spent = {"X-Rate-Limit-Remaining": "0", "X-Rate-Limit-Reset": str(int(NOW) + 30)}
    provider = _Provider({first: (b"[]", spent), second: (b"[]", {})})
    slept: list[float] = []
    reader = OktaReader(
        outbound=provider,  # type: ignore[arg-type]
        base_url=BASE,
        authorization=lambda: "SSWS test",
        gate=RateGate(clock=lambda: NOW, random=lambda: 0.0),
        sleep=slept.append,
        deadline=lambda: NOW + 60,
    )
    reader.page(first, SPECS["users"])
    reader.page(second, SPECS["users"])
    assert slept == [30.0]
    assert provider.requested == [first, second]
