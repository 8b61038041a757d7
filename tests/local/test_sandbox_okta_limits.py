"""The sandbox Okta's rate limits (buckets, headers, 429s, windows on an injected clock) and its
request counters."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from strongroom_local.sandbox_okta import (
    DEFAULT_RATE_LIMITS,
    InvalidSandboxSetting,
    OrgSpec,
    RateLimit,
    SandboxOkta,
    bucket_for,
)
from tests.support.sandbox_okta import FakeClock, okta_session

START = 1_800_000_000.0  # a multiple of 60: the first window ends at START + 60


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 10)


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[SandboxOkta]:
    limits = {"/api/v1/users": RateLimit(3), "/api/v1/groups": RateLimit(2, window_seconds=10)}
    with SandboxOkta(OrgSpec(users=30), rate_limits=limits, clock=clock) as running:
        yield running


@pytest.fixture
def http(sandbox: SandboxOkta) -> Iterator[requests.Session]:
    with okta_session(sandbox.api_token) as session:
        yield session


def rate_headers(response: requests.Response) -> tuple[int, int, int]:
    return (
        int(response.headers["X-Rate-Limit-Limit"]),
        int(response.headers["X-Rate-Limit-Remaining"]),
        int(response.headers["X-Rate-Limit-Reset"]),
    )


@pytest.mark.parametrize(
    ("path", "bucket"),
    [
        ("/api/v1/users", "/api/v1/users"),
        ("/api/v1/users/00u1", "/api/v1/users/{id}"),
        ("/api/v1/users/00u1/roles", "/api/v1"),
        ("/api/v1/groups", "/api/v1/groups"),
        ("/api/v1/groups/rules", "/api/v1/groups"),
        ("/api/v1/groups/00g1", "/api/v1/groups/{id}"),
        ("/api/v1/groups/00g1/users", "/api/v1/groups"),
        ("/api/v1/apps", "/api/v1/apps"),
        ("/api/v1/apps/0oa1", "/api/v1/apps/{id}"),
        ("/api/v1/apps/0oa1/users", "/api/v1/apps"),
        ("/api/v1/apps/0oa1/groups", "/api/v1/apps"),
        ("/api/v1/policies", "/api/v1"),
        ("/api/v1/authorizationServers/default/scopes", "/api/v1"),
        ("/api/v1/meta/schemas/user/default", "/api/v1"),
    ],
)
def test_requests_count_against_oktas_buckets(path: str, bucket: str) -> None:
    assert bucket_for(path) == bucket


def test_default_limits_are_oktas_per_minute_figures() -> None:
    assert {bucket: limit.limit for bucket, limit in DEFAULT_RATE_LIMITS.items()} == {
        "/api/v1/users": 600,
        "/api/v1/users/{id}": 2_000,
        "/api/v1/groups": 500,
        "/api/v1/groups/{id}": 1_000,
        "/api/v1/apps": 100,
        "/api/v1/apps/{id}": 500,
        "/api/v1": 1_200,
    }
    assert {limit.window_seconds for limit in DEFAULT_RATE_LIMITS.values()} == {60.0}


def test_a_spent_bucket_answers_429_until_its_window_resets(
    sandbox: SandboxOkta, http: requests.Session, clock: FakeClock
) -> None:
    users = f"{sandbox.url}/api/v1/users?limit=1"
    reset = int(START + 60)
    seen = [rate_headers(http.get(users, timeout=30)) for _ in range(3)]
    assert seen == [(3, 2, reset), (3, 1, reset), (3, 0, reset)]
    refused = http.get(users, timeout=30)
    assert refused.status_code == 429
    assert refused.json()["errorCode"] == "E0000047"
    assert refused.json()["errorSummary"] == (
        "API call exceeded rate limit due to too many requests."
    )
    assert rate_headers(refused) == (3, 0, reset)
    # Other buckets are counted apart.
    one_user = http.get(f"{sandbox.url}/api/v1/users/{sandbox.org.user_id(0)}", timeout=30)
    assert one_user.status_code == 200
    assert rate_headers(one_user)[:2] == (2_000, 1_999)
    clock.advance(49.9)  # still inside the window
    assert http.get(users, timeout=30).status_code == 429
    clock.advance(0.1)
    fresh = http.get(users, timeout=30)
    assert fresh.status_code == 200
    assert rate_headers(fresh) == (3, 2, reset + 60)


def test_short_windows_reset_on_their_own_boundaries(
    sandbox: SandboxOkta, http: requests.Session, clock: FakeClock
) -> None:
    groups = f"{sandbox.url}/api/v1/groups"
    assert [rate_headers(http.get(groups, timeout=30)) for _ in range(2)] == [
        (2, 1, int(START + 20)),
        (2, 0, int(START + 20)),
    ]
    assert http.get(groups, timeout=30).status_code == 429
    clock.advance(10)
    assert rate_headers(http.get(groups, timeout=30)) == (2, 1, int(START + 30))


def test_counters_show_requests_per_bucket_route_and_path_and_every_429(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    org = sandbox.org
    for _ in range(4):
        http.get(f"{sandbox.url}/api/v1/users", timeout=30)
    for group in (0, 1):
        http.get(f"{sandbox.url}/api/v1/groups/{org.group_id(group)}/users", timeout=30)
    http.get(f"{sandbox.url}/api/v1/zones", timeout=30)
    http.get(f"{sandbox.url}/api/v1/nowhere", timeout=30)
    with okta_session("not-the-token") as stranger:
        stranger.get(f"{sandbox.url}/api/v1/users", timeout=30)
    counters = sandbox.snapshot()
    assert counters["requests"] == 9
    assert counters["by_bucket"] == {"/api/v1/users": 4, "/api/v1/groups": 2, "/api/v1": 2}
    assert counters["by_route"] == {
        "/api/v1/users": 3,
        "/api/v1/groups/{groupId}/users": 2,
        "/api/v1/zones": 1,
    }
    assert counters["by_path"][f"/api/v1/groups/{org.group_id(1)}/users"] == 1
    assert counters["by_path"]["/api/v1/users"] == 5
    assert counters["by_status"] == {"200": 6, "401": 1, "404": 1, "429": 1}
    assert (counters["rate_limited"], counters["throttled"]) == (1, 1)
    assert counters["throttled_by_bucket"] == {"/api/v1/users": 1}
    assert counters["unauthorized"] == 1
    assert counters["rate_limits"]["/api/v1/users"]["peak_window_usage"] == 3
    assert counters["rate_limits"]["/api/v1/groups"]["peak_window_usage"] == 2
    sandbox.reset_counters()
    cleared = sandbox.snapshot()
    assert (cleared["requests"], cleared["by_path"], cleared["max_concurrent"]) == (0, {}, 0)
    assert cleared["rate_limits"]["/api/v1/users"]["peak_window_usage"] == 0
    # Resetting the counters does not refill a bucket.
    assert http.get(f"{sandbox.url}/api/v1/users", timeout=30).status_code == 429


def test_the_largest_number_of_requests_in_flight_is_counted(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_rate_limits({"/api/v1": RateLimit(100)})
    sandbox.set_faults(hang=3, path_prefix="/api/v1/zones")
    statuses: list[int | str] = []

    def call() -> None:
        with okta_session(sandbox.api_token) as own:
            try:
                statuses.append(own.get(f"{sandbox.url}/api/v1/zones", timeout=30).status_code)
            except requests.ConnectionError:
                statuses.append("closed")

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while sandbox.snapshot()["in_flight"] < 3:
        assert time.monotonic() < deadline, "the three requests never overlapped"
        time.sleep(0.01)
    sandbox.clear_faults()  # frees the hung requests: their connections close unanswered
    for thread in threads:
        thread.join(30)
    assert statuses == ["closed"] * 3
    counters = sandbox.snapshot()
    assert (counters["max_concurrent"], counters["in_flight"]) == (3, 0)
    assert counters["faults"] == {"hang": 3}


def test_rate_limits_are_validated() -> None:
    for bad in ({"limit": 0}, {"limit": 1.5}, {"limit": 5, "window_seconds": 0}):
        with pytest.raises(InvalidSandboxSetting):
            RateLimit(**bad)  # type: ignore[arg-type]
    with SandboxOkta() as sandbox, pytest.raises(InvalidSandboxSetting, match="bucket"):
        sandbox.set_rate_limits({"/api/v2/users": RateLimit(1)})
