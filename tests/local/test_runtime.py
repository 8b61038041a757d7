"""Functions run like Lambdas: own worker processes and modules, warm, concurrent, contained."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from strongroom_local.http_api import HttpApiGateway, HttpRequest
from strongroom_local.runtime import FunctionPool, InvocationCancelled, lambda_environment
from strongroom_local.template import REPO_ROOT
from strongroom_local.wiring import HttpApiDefinition, HttpRoute, LocalFunction
from tests.local.conftest import FIXTURES

LAYER = (REPO_ROOT / "layers" / "common").resolve()


def function(name: str, *, handler: str = "app.lambda_handler", timeout: int = 10) -> LocalFunction:
    return LocalFunction(
        logical_id=f"{name.title()}Function",
        name=f"test-{name}",
        arn=f"arn:aws:lambda:us-east-1:123456789012:function:test-{name}",
        code_dir=FIXTURES / name,
        handler=handler,
        layer_dirs=(LAYER,),
        timeout_seconds=timeout,
        memory_mb=256,
    )


@pytest.fixture
def pools(tmp_path: Path) -> Iterator[dict[str, FunctionPool]]:
    created: dict[str, FunctionPool] = {}

    def make(key: str, spec: LocalFunction) -> FunctionPool:
        environment = lambda_environment(
            spec,
            {"RECORD_DIR": str(tmp_path), "FIXTURE_NAME": key},
            aws_endpoint_url="http://127.0.0.1:9",
            region="eu-west-1",
        )
        created[key] = FunctionPool(spec, environment, max_workers=4)
        return created[key]

    make("echo", function("echo"))
    make("shapes", function("shapes"))
    make("sleepy", function("shapes", timeout=1))
    make("broken", function("echo", handler="missing_module.handler"))
    yield created
    for pool in created.values():
        pool.close()


def echo_event(**query: str) -> dict[str, Any]:
    return {"rawPath": "/echo", "queryStringParameters": query}


def shapes_event(kind: str) -> dict[str, Any]:
    return {"pathParameters": {"kind": kind}}


def answer(result: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(result["body"])
    return body


def test_each_function_has_its_own_app_module_environment_and_layer(
    pools: dict[str, FunctionPool],
) -> None:
    echo = pools["echo"].invoke(echo_event(), request_id="req-1")
    shapes = pools["shapes"].invoke(shapes_event("helper"))
    assert echo.ok
    assert shapes.ok
    seen = answer(echo.result)
    assert seen["helper"] == "echo-helper"
    assert shapes.result["helper"] == "shapes-helper"
    assert Path(seen["module"]) == FIXTURES / "echo" / "app.py"
    assert Path(shapes.result["module"]) == FIXTURES / "shapes" / "app.py"
    assert seen["pid"] != shapes.result["pid"] != os.getpid()
    assert Path(seen["layer"]).is_relative_to(LAYER)
    assert Path(seen["cwd"]) == FIXTURES / "echo"
    assert seen["environ"]["FIXTURE_NAME"] == "echo"
    assert seen["environ"]["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert seen["environ"]["AWS_REGION"] == "eu-west-1"
    assert seen["environ"]["AWS_PROFILE"] is None
    assert seen["context"]["aws_request_id"] == "req-1"
    assert seen["context"]["function_name"] == "test-echo"
    assert seen["context"]["function_version"] == "$LATEST"
    assert seen["context"]["memory_limit_in_mb"] == "256"
    assert seen["context"]["invoked_function_arn"].endswith(":function:test-echo")
    assert seen["context"]["log_group_name"] == "/aws/lambda/test-echo"
    assert 0 < seen["context"]["remaining_ms"] <= 10_000


def test_workers_stay_warm_and_survive_handler_exceptions(
    pools: dict[str, FunctionPool],
) -> None:
    shapes = pools["shapes"]
    first = shapes.invoke(shapes_event("helper")).result["pid"]
    failed = shapes.invoke(shapes_event("raise"))
    assert not failed.ok
    assert failed.error_type == "RuntimeError"
    assert failed.result is None
    assert shapes.invoke(shapes_event("helper")).result["pid"] == first
    assert shapes.worker_count() == 1


@pytest.mark.parametrize(
    ("pool", "kind", "error_type"),
    [
        ("shapes", "exit", "Runtime.ExitError"),
        ("shapes", "unserializable", "Runtime.MarshalError"),
        ("sleepy", "sleep", "Sandbox.Timedout"),
    ],
)
def test_crashes_timeouts_and_unmarshallable_results_fail_the_invocation(
    pools: dict[str, FunctionPool], pool: str, kind: str, error_type: str
) -> None:
    failed = pools[pool].invoke(shapes_event(kind))
    assert (failed.ok, failed.error_type) == (False, error_type)
    # The function still serves the next invocation (a fresh worker where the old one died).
    again = pools[pool].invoke(shapes_event("helper"))
    assert again.ok
    assert again.result["helper"] == "shapes-helper"


def test_an_unimportable_handler_fails_every_invocation(pools: dict[str, FunctionPool]) -> None:
    for _ in range(2):
        failed = pools["broken"].invoke(echo_event())
        assert (failed.ok, failed.error_type) == (False, "Runtime.ImportModuleError")
    assert pools["broken"].worker_count() == 0


def test_concurrent_invocations_run_in_parallel_workers(pools: dict[str, FunctionPool]) -> None:
    results: list[Any] = []

    def call() -> None:
        results.append(pools["echo"].invoke(echo_event(rendezvous="pair")))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pids = [answer(result.result)["pid"] for result in results]
    # Each handler waited until the other one was running in another process.
    assert len(set(pids)) == 2
    for result in results:
        assert answer(result.result)["rendezvous"] == sorted(pids)
    assert pools["echo"].worker_count() == 2


def test_closing_the_pool_stops_its_workers(pools: dict[str, FunctionPool]) -> None:
    pid = answer(pools["echo"].invoke(echo_event()).result)["pid"]
    os.kill(pid, 0)  # alive and warm
    pools["echo"].close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    refused = pools["echo"].invoke(echo_event())
    assert not refused.ok


def test_after_a_gateway_timeout_the_worker_finishes_and_is_reused(tmp_path: Path) -> None:
    spec = function("shapes")
    environment = lambda_environment(
        spec,
        {"RECORD_DIR": str(tmp_path)},
        aws_endpoint_url="http://127.0.0.1:9",
        region="eu-west-1",
    )
    pool = FunctionPool(spec, environment, max_workers=1)
    routes = (
        HttpRoute(spec.logical_id, "Hurried", "GET", "/hurried/{kind}", None, timeout_ms=100),
        HttpRoute(spec.logical_id, "Shapes", "GET", "/shapes/{kind}", None),
    )
    api = HttpApiDefinition("HttpApi", "abcdefghij", "$default", {}, routes)
    gateway = HttpApiGateway(
        [api],
        lambda _, event, **kwargs: pool.invoke(event, **kwargs),
        authorizers={},
        account_id="123456789012",
    )

    def get(path: str) -> tuple[int, Any]:
        request = HttpRequest("GET", path, [("Host", "127.0.0.1")], b"", "127.0.0.1", 3000)
        response = gateway.handle(request)
        return response.status, json.loads(response.body)

    try:
        status, warm = get("/shapes/helper")
        assert status == 200
        assert get("/hurried/nap") == (503, {"message": "Service Unavailable"})
        started = time.monotonic()
        status, again = get("/shapes/helper")
        # The one worker was still napping: the next request waited for it, then reused it.
        assert time.monotonic() - started > 0.5
        assert (status, again["pid"]) == (200, warm["pid"])
        assert pool.worker_count() == 1
        # A request that waits past its own timeout for the held worker is answered 503 and
        # dropped: it never runs after its caller was answered (and perhaps retried).
        assert get("/hurried/nap") == (503, {"message": "Service Unavailable"})
        assert get("/hurried/helper") == (503, {"message": "Service Unavailable"})
        time.sleep(1.5)
        ran = sorted(p.name.partition("-")[0] for p in (tmp_path / "shapes").iterdir())
        assert ran == ["helper", "helper", "nap", "nap"]
    finally:
        pool.close()


class _LiveWorker:
    """Stands in for a worker process that is alive (the pool looks at nothing else here)."""

    process = SimpleNamespace(poll=lambda: None)


def test_a_cancelled_waiter_passes_on_the_wake_up_it_took(tmp_path: Path) -> None:
    """A gateway request dropped at its timeout may be the waiter a released worker's notify()
    woke: a scheduled invocation waiting beside it (no deadline) must still get the worker."""
    pool = FunctionPool(function("echo"), {}, max_workers=1)
    busy = _LiveWorker()
    pool._all.add(busy)  # type: ignore[arg-type]  # the one worker, held by a run-on invocation
    for _ in range(10):
        gave_up = threading.Event()
        got: list[object] = []

        def gateway(gave_up: threading.Event = gave_up) -> None:
            with contextlib.suppress(InvocationCancelled):
                pool._acquire(gave_up)

        def scheduled(got: list[object] = got) -> None:
            got.append(pool._acquire())

        waiting = [
            threading.Thread(target=gateway, daemon=True),
            threading.Thread(target=scheduled, daemon=True),
        ]
        for thread in waiting:
            thread.start()
            time.sleep(0.01)  # the gateway's request waits first
        with pool._condition:
            gave_up.set()  # its integration timeout passed
        pool._release(busy)  # type: ignore[arg-type]  # and the run-on invocation ends
        waiting[1].join(2)
        assert got == [busy]
        waiting[0].join(2)
        pool._idle.clear()


def test_an_idle_worker_that_died_is_replaced_not_handed_the_event(
    pools: dict[str, FunctionPool],
) -> None:
    """Lambda gives an invocation a fresh sandbox: a warm worker killed while idle (out of
    memory, a signal) must not turn the next invocation into a crash that never ran."""
    shapes = pools["shapes"]
    first = shapes.invoke({"pathParameters": {"kind": "helper"}})
    assert first.ok
    (idle,) = shapes._idle
    idle.process.kill()
    idle.process.wait(5)
    again = shapes.invoke({"pathParameters": {"kind": "helper"}})
    assert again.ok
    assert again.result["pid"] != first.result["pid"]
    assert shapes.worker_count() == 1


def test_an_event_that_never_reached_its_worker_is_reported_as_not_run(
    pools: dict[str, FunctionPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died between the pool's look at it and the event's delivery: a failure, but
    one whose handler never ran (so the SQS source gives it the short back-off)."""
    shapes = pools["shapes"]
    assert shapes.invoke({"pathParameters": {"kind": "helper"}}).ok
    (idle,) = shapes._idle
    idle.process.kill()
    idle.process.wait(5)
    monkeypatch.setattr(idle.process, "poll", lambda: None)  # it looked alive a moment ago
    invocation = shapes.invoke({"pathParameters": {"kind": "helper"}})
    assert (invocation.ok, invocation.error_type) == (False, "Runtime.ExitError")
    assert invocation.handler_ran is False
