"""The sandbox Okta's faults: 500s, 429 storms, hangs, truncated bodies and delays, by count or
by seeded probability, scoped by path prefix and skip."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http import client as http_client
from typing import Any

import pytest
import requests

from strongroom_local.sandbox_okta import (
    FaultPlan,
    InvalidSandboxSetting,
    OrgSpec,
    RateLimit,
    SandboxOkta,
)
from tests.support.sandbox_okta import FakeClock, okta_session

START = 1_800_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START + 5)


@pytest.fixture
def sandbox(clock: FakeClock) -> Iterator[SandboxOkta]:
    limits = {"/api/v1/users": RateLimit(50), "/api/v1/groups": RateLimit(50)}
    with SandboxOkta(OrgSpec(users=30), rate_limits=limits, clock=clock) as running:
        yield running


@pytest.fixture
def http(sandbox: SandboxOkta) -> Iterator[requests.Session]:
    with okta_session(sandbox.api_token) as session:
        yield session


def statuses(http: requests.Session, url: str, count: int) -> list[int]:
    return [http.get(url, timeout=30).status_code for _ in range(count)]


def wait_for_counter(sandbox: SandboxOkta, fault: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while sandbox.snapshot()["faults"].get(fault, 0) < count:
        assert time.monotonic() < deadline, f"{fault} never counted {count}"
        time.sleep(0.01)


def test_the_next_n_requests_fail_with_oktas_500(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(error_500=2)
    url = f"{sandbox.url}/api/v1/users"
    failed = http.get(url, timeout=30)
    assert failed.status_code == 500
    assert failed.json()["errorCode"] == "E0000009"
    assert failed.headers["X-Rate-Limit-Remaining"] == "49"  # a failed request still counts
    assert statuses(http, url, 3) == [500, 200, 200]
    assert sandbox.snapshot()["faults"] == {"error_500": 2}
    assert sandbox.faults.snapshot()["left"]["error_500"] == 0


def test_probable_faults_follow_their_seed(sandbox: SandboxOkta, http: requests.Session) -> None:
    url = f"{sandbox.url}/api/v1/groups"
    sandbox.set_faults(error_500_probability=0.5, seed=7)
    first = statuses(http, url, 20)
    sandbox.set_rate_limits({"/api/v1/groups": RateLimit(50)})  # a fresh window
    sandbox.set_faults(error_500_probability=0.5, seed=7)
    assert statuses(http, url, 20) == first
    assert {200, 500} == set(first)
    sandbox.set_rate_limits({"/api/v1/groups": RateLimit(50)})
    sandbox.set_faults(error_500_probability=0.5, seed=8)
    assert statuses(http, url, 20) != first


def test_faults_apply_to_their_path_prefix_after_skip(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(path_prefix="/api/v1/groups", skip=2, error_500=1)
    assert statuses(http, f"{sandbox.url}/api/v1/users", 3) == [200, 200, 200]
    assert statuses(http, f"{sandbox.url}/api/v1/groups", 4) == [200, 200, 500, 200]
    assert sandbox.faults.snapshot()["matched"] == 4


def test_an_honest_429_storm_says_the_bucket_is_empty_until_the_window_ends(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(storm_429=2)
    url = f"{sandbox.url}/api/v1/users"
    stormed = http.get(url, timeout=30)
    assert stormed.status_code == 429
    assert stormed.json()["errorCode"] == "E0000047"
    assert stormed.headers["X-Rate-Limit-Limit"] == "50"
    assert stormed.headers["X-Rate-Limit-Remaining"] == "0"
    assert stormed.headers["X-Rate-Limit-Reset"] == str(int(START + 60))
    assert statuses(http, url, 2) == [429, 200]
    counters = sandbox.snapshot()
    assert counters["faults"] == {"storm_429": 2}
    assert (counters["rate_limited"], counters["throttled"]) == (2, 0)  # not a spent bucket


def test_a_dishonest_429_storm_claims_budget_left_and_a_reset_already_past(
    sandbox: SandboxOkta, http: requests.Session, clock: FakeClock
) -> None:
    sandbox.set_faults(storm_429=1, storm_honest=False)
    stormed = http.get(f"{sandbox.url}/api/v1/users", timeout=30)
    assert stormed.status_code == 429
    assert int(stormed.headers["X-Rate-Limit-Remaining"]) >= 1
    assert int(stormed.headers["X-Rate-Limit-Reset"]) < clock()


def test_a_hung_request_gets_no_answer_until_the_plan_changes(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(hang=1)
    url = f"{sandbox.url}/api/v1/users"
    with pytest.raises(requests.ReadTimeout):
        http.get(url, timeout=(5, 0.3))
    sandbox.clear_faults()
    wait_for_counter(sandbox, "hang", 1)
    assert http.get(url, timeout=30).status_code == 200


def test_a_bounded_hang_closes_the_connection_without_an_answer(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(hang=1, hang_seconds=0.05)
    with pytest.raises(requests.ConnectionError):
        http.get(f"{sandbox.url}/api/v1/users", timeout=30)
    assert http.get(f"{sandbox.url}/api/v1/users", timeout=30).status_code == 200


def test_stopping_the_sandbox_frees_hung_requests() -> None:
    sandbox = SandboxOkta().start()
    sandbox.set_faults(hang=1)
    outcome: list[Any] = []

    def call() -> None:
        with okta_session(sandbox.api_token) as session:
            try:
                outcome.append(session.get(f"{sandbox.url}/api/v1/users", timeout=30))
            except requests.ConnectionError as error:
                outcome.append(error)

    thread = threading.Thread(target=call)
    thread.start()
    wait_until = time.monotonic() + 20
    while sandbox.snapshot()["in_flight"] < 1:
        assert time.monotonic() < wait_until
        time.sleep(0.01)
    sandbox.stop()
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)


def test_a_truncated_body_announces_its_full_length_then_stops(sandbox: SandboxOkta) -> None:
    sandbox.set_faults(truncate=1)
    connection = http_client.HTTPConnection("127.0.0.1", sandbox.port, timeout=30)
    headers = {"Authorization": f"SSWS {sandbox.api_token}"}
    connection.request("GET", "/api/v1/users", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    announced = int(response.headers["Content-Length"])
    with pytest.raises(http_client.IncompleteRead) as cut:
        response.read()
    assert len(cut.value.partial) == announced // 2
    connection.close()
    with okta_session(sandbox.api_token) as session:
        whole = session.get(f"{sandbox.url}/api/v1/users", timeout=30)
    assert len(whole.content) == announced
    counters = sandbox.snapshot()
    assert counters["faults"] == {"truncate": 1}
    assert counters["by_status"] == {"200": 1}  # the cut response is not counted as a 200


def test_requests_clients_see_a_truncated_body_as_an_error(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(truncate_probability=1.0)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(f"{sandbox.url}/api/v1/users", timeout=30)


def test_delayed_requests_are_still_answered(sandbox: SandboxOkta, http: requests.Session) -> None:
    sandbox.set_faults(delay_seconds=0.02, error_500=1)
    assert statuses(http, f"{sandbox.url}/api/v1/users", 3) == [500, 200, 200]
    assert sandbox.snapshot()["faults"] == {"error_500": 1, "delay": 3}


def test_counted_faults_are_used_in_order_of_precedence(
    sandbox: SandboxOkta, http: requests.Session
) -> None:
    sandbox.set_faults(storm_429=1, error_500=1, truncate=1)
    url = f"{sandbox.url}/api/v1/users"
    assert statuses(http, url, 2) == [429, 500]
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        http.get(url, timeout=30)
    assert statuses(http, url, 1) == [200]


def test_faults_never_touch_refused_requests(sandbox: SandboxOkta) -> None:
    sandbox.set_faults(error_500=5)
    with okta_session("wrong") as stranger:
        assert statuses(stranger, f"{sandbox.url}/api/v1/users", 2) == [401, 401]
    assert sandbox.faults.snapshot()["left"]["error_500"] == 5


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"error_500": -1}, "error_500"),
        ({"hang": 1.5}, "hang"),
        ({"storm_429_probability": 1.5}, "storm_429_probability"),
        ({"truncate_probability": True}, "truncate_probability"),
        ({"delay_seconds": 601}, "delay_seconds"),
        ({"hang_seconds": 0}, "hang_seconds"),
        ({"path_prefix": "api"}, "path_prefix"),
        ({"storm_honest": "yes"}, "storm_honest"),
        ({"explode": 1}, "explode"),
    ],
)
def test_bad_fault_settings_are_refused_by_name(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidSandboxSetting, match=f"^{named}:"):
        FaultPlan.from_mapping(settings)
