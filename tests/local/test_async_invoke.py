"""Scheduled (asynchronous) invocations: Lambda's retries, then the dead-letter queue."""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.async_invoke import LAMBDA_RETRY_DELAYS_SECONDS, AsyncInvoker, Invoke
from strongroom_local.runtime import FunctionPool, Invocation
from strongroom_local.stack import LocalStack, StackOptions
from strongroom_local.wiring import LocalFunction
from tests.local.conftest import FIXTURE_TEMPLATE, FIXTURES, wait_for

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "id": "e-1"}


class Function:
    """Fails its first `failures` invocations, then succeeds; records every event and the
    request id it ran under."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.events: list[Any] = []
        self.request_ids: list[str] = []

    def __call__(self, event: Any, *, request_id: str) -> Invocation:
        self.events.append(event)
        self.request_ids.append(request_id)
        if len(self.events) <= self.failures:
            return Invocation(request_id, ok=False, error_type="RuntimeError")
        return Invocation(request_id, ok=True, result={"done": True})


@pytest.fixture
def sqs() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="dead-letters")["QueueUrl"]
        yield client, url


def invoker(
    function: Invoke, sqs: Any, url: str | None, *, retries: int = 2, stop: Any = None
) -> AsyncInvoker:
    return AsyncInvoker(
        "TickFunction",
        function,
        retries=retries,
        dead_letter_queue_url=url,
        sqs=sqs,
        stop=stop or threading.Event(),
        retry_delays=(0.0, 0.0),
    )


def dead_letters(sqs: Any, url: str) -> list[dict[str, Any]]:
    received = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    messages: list[dict[str, Any]] = received.get("Messages", [])
    return messages


def typed_attributes(message: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """A message's attributes as (DataType, StringValue): a Number sent as a String differs."""
    return {
        name: (value["DataType"], value["StringValue"])
        for name, value in message["MessageAttributes"].items()
    }


def test_an_event_that_fails_every_attempt_is_dead_lettered_as_lambda_sends_it(
    sqs: tuple[Any, str],
) -> None:
    client, url = sqs
    function = Function(failures=3)
    last = invoker(function, client, url).submit(EVENT)
    last.join(10)
    assert function.events == [EVENT, EVENT, EVENT]  # the first attempt and two retries
    # Lambda retries an event under its one request id.
    (request_id,) = set(function.request_ids)
    (message,) = dead_letters(client, url)
    assert json.loads(message["Body"]) == EVENT
    assert typed_attributes(message) == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "RuntimeError"),
    }


def test_a_retry_that_succeeds_ends_it(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    function = Function(failures=1)
    result = invoker(function, client, url).run(EVENT)
    assert result is not None
    assert result.ok
    assert len(function.events) == 2
    assert result.request_id == function.request_ids[0] == function.request_ids[1]
    assert dead_letters(client, url) == []


def test_maximum_retry_attempts_is_honoured(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    function = Function(failures=5)
    invoker(function, client, url, retries=0).run(EVENT)
    assert len(function.events) == 1
    assert len(dead_letters(client, url)) == 1


def test_without_a_dead_letter_queue_the_event_is_dropped(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    function = Function(failures=5)
    result = invoker(function, client, None).run(EVENT)
    assert result is not None
    assert not result.ok
    assert len(function.events) == 3
    assert dead_letters(client, url) == []


def test_a_stopping_stack_makes_no_more_attempts(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    stop = threading.Event()
    stop.set()
    function = Function(failures=5)
    invoker(function, client, url, stop=stop).run(EVENT)
    assert len(function.events) == 1
    assert dead_letters(client, url) == []


def logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage() for record in caplog.records if record.name == "strongroom_local.async"
    ]


def test_a_dead_letter_queue_that_is_gone_drops_the_event_with_an_error_line(
    sqs: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = sqs
    client.delete_queue(QueueUrl=url)
    function = Function(failures=5)
    secret = {**EVENT, "detail": {"token": "do-not-log-me"}}
    with caplog.at_level(logging.INFO, logger="strongroom_local.async"):
        last = invoker(function, client, url, retries=0).run(secret)
    assert last is not None
    assert logged(caplog)[-1] == (
        f"{last.request_id}: TickFunction: an asynchronous event failed every attempt and could"
        " not be dead-lettered (AWS.SimpleQueueService.NonExistentQueue); dropped"
    )
    assert "do-not-log-me" not in caplog.text


def stopped_pool() -> FunctionPool:
    """TickFunction's pool once the stack has stopped it: what waited for a worker, or comes
    now, is refused unrun."""
    pool = FunctionPool(
        LocalFunction(
            logical_id="TickFunction",
            name="test-tick",
            arn="arn:aws:lambda:us-east-1:123456789012:function:test-tick",
            code_dir=FIXTURES / "scheduled",
            handler="app.handler",
            layer_dirs=(),
            timeout_seconds=10,
            memory_mb=256,
        ),
        {},
    )
    pool.close()
    return pool


def test_an_event_the_stopping_stack_never_ran_is_dropped_not_dead_lettered(
    sqs: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = sqs
    stop = threading.Event()
    stop.set()  # the stack sets it before it closes the pools
    with caplog.at_level(logging.INFO, logger="strongroom_local.async"):
        last = invoker(stopped_pool().invoke, client, url, retries=0, stop=stop).run(EVENT)
    assert last is not None
    assert not last.handler_ran
    # Not the function's failure: nothing in its dead-letter queue blames it.
    assert dead_letters(client, url) == []
    assert logged(caplog) == [
        f"{last.request_id}: TickFunction: an asynchronous event not yet run was dropped at"
        " shutdown (1 attempt(s) left)"
    ]


def test_a_retry_pending_when_the_stack_stops_is_dropped_and_said(
    sqs: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = sqs
    stop = threading.Event()
    function = Function(failures=5)

    def fails_as_the_stack_stops(event: Any, *, request_id: str) -> Invocation:
        stop.set()
        return function(event, request_id=request_id)

    with caplog.at_level(logging.INFO, logger="strongroom_local.async"):
        invoker(fails_as_the_stack_stops, client, url, retries=2, stop=stop).run(EVENT)
    assert len(function.events) == 1
    assert dead_letters(client, url) == []
    (request_id,) = function.request_ids
    assert logged(caplog)[-1] == (
        f"{request_id}: TickFunction: an asynchronous event waiting for a retry was dropped at"
        " shutdown (2 attempt(s) left)"
    )


def test_a_last_attempt_killed_by_the_stack_s_stop_is_dropped_not_dead_lettered(
    sqs: tuple[Any, str], caplog: pytest.LogCaptureFixture
) -> None:
    client, url = sqs
    stop = threading.Event()

    def killed_by_the_stop(event: Any, *, request_id: str) -> Invocation:
        # What the pool answers when the stack's stop kills the busy worker mid-handler.
        stop.set()
        return Invocation(request_id, ok=False, error_type="Runtime.ExitError", handler_ran=True)

    with caplog.at_level(logging.INFO, logger="strongroom_local.async"):
        last = invoker(killed_by_the_stop, client, url, retries=0, stop=stop).run(EVENT)
    assert last is not None
    # Nothing in the dead-letter queue blames the function for the stack's shutdown.
    assert dead_letters(client, url) == []
    assert logged(caplog)[-1] == (
        f"{last.request_id}: TickFunction: an asynchronous event whose last attempt the stop cut"
        " short was dropped at shutdown (0 attempt(s) left)"
    )


class RecordedWaits(threading.Event):
    """A stop signal that never stops and records how long each wait asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return False


def test_retries_wait_as_lambda_waits_by_default(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    stop = RecordedWaits()
    function = Function(failures=5)
    AsyncInvoker(
        "TickFunction", function, retries=2, dead_letter_queue_url=url, sqs=client, stop=stop
    ).run(EVENT)
    # One minute before the first retry, two before the second.
    assert stop.waits == [60.0, 120.0] == list(LAMBDA_RETRY_DELAYS_SECONDS)
    assert len(function.events) == 3


# ---- through the stack's own timer -------------------------------------------------------

STARTED = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def failing_tick_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, Path]]:
    """The fixture template in-process, TickFunction raising after it records each event, its
    retries not waited for, and a timer whose clock reads STARTED, then an hour later: the
    Hourly schedule (rate(1 hour)) is due at once, Nightly (03:00) is not."""
    records = tmp_path / "records"
    clock = itertools.chain([STARTED], itertools.repeat(STARTED + timedelta(hours=1)))
    stack = LocalStack(
        StackOptions(
            template_path=FIXTURE_TEMPLATE,
            state_dir=tmp_path / "state",
            api_port=0,
            parameters={"RecordDir": str(records), "TickFails": "yes"},
            sandbox_okta=None,
            max_workers=1,
            async_retry_delays=(0.0, 0.0),
            clock=lambda: next(clock),
        )
    )
    stack.start()
    try:
        yield stack, records
    finally:
        stack.stop()


def test_the_timer_s_failed_firing_is_retried_then_dead_lettered_as_lambda_sends_it(
    failing_tick_stack: tuple[LocalStack, Path],
) -> None:
    stack, records = failing_tick_stack
    sqs = boto3.client("sqs", endpoint_url=stack.ready["aws_url"], region_name="us-east-1")
    queue_url = sqs.get_queue_url(QueueName="strongroom-local-TickDeadLetterQueue")["QueueUrl"]

    def dead_letters() -> list[dict[str, Any]]:
        received = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        messages: list[dict[str, Any]] = received.get("Messages", [])
        return messages

    (message,) = wait_for(dead_letters)
    event = {"job": "hourly", "scheduled": "2026-11-23T11:00:00Z"}
    assert json.loads(message["Body"]) == event
    # EventInvokeConfig.MaximumRetryAttempts 1: the first attempt and one retry, both run
    # under the event's one request id (the handler names its record by it).
    attempts = sorted((records / "tick").glob("*.json"))
    assert [json.loads(path.read_text()) for path in attempts] == [event, event]
    (request_id,) = {path.name.split(".")[0] for path in attempts}
    assert typed_attributes(message) == {
        "RequestID": ("String", request_id),
        "ErrorCode": ("Number", "200"),
        "ErrorMessage": ("String", "RuntimeError"),
    }
    assert dead_letters() == []


def test_waiting_for_the_events_under_way_is_bounded_and_counts_the_rest(
    sqs: tuple[Any, str],
) -> None:
    client, url = sqs
    release = threading.Event()

    def held(event: Any, *, request_id: str) -> Invocation:
        release.wait(30)
        return Invocation(request_id, ok=True)

    async_invoker = invoker(held, client, url)
    thread = async_invoker.submit(EVENT)
    assert async_invoker.wait(time.monotonic() + 0.2) == 1
    assert thread.is_alive()
    release.set()
    assert async_invoker.wait(time.monotonic() + 10) == 0
    assert not thread.is_alive()
    assert async_invoker.wait(time.monotonic()) == 0  # nothing under way: nothing waited for


def test_an_event_whose_thread_cannot_start_is_not_waited_for(
    sqs: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Out of threads, submit() fails; the stack's stop still waits (then stops moto and frees
    the lock) rather than fail on a thread that never started."""
    client, url = sqs
    function = Function(failures=0)
    async_invoker = invoker(function, client, url)
    start = threading.Thread.start

    def out_of_threads(thread: threading.Thread) -> None:
        if thread.name.startswith("async-"):
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", out_of_threads)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        async_invoker.submit(EVENT)
    monkeypatch.undo()
    assert async_invoker.wait(time.monotonic() + 1) == 0
    assert function.events == []
    async_invoker.submit(EVENT).join(10)
    assert function.events == [EVENT]
    assert async_invoker.wait(time.monotonic() + 1) == 0


class SlowShutdownLines(logging.Handler):
    """The async logger's output, slow to write the lines of events dropped at shutdown: each
    takes `hold` seconds unless `let_go` is set first (as a loaded machine may leave a thread
    unscheduled that long)."""

    def __init__(self, let_go: threading.Event, *, hold: float) -> None:
        super().__init__()
        self.let_go = let_go
        self.hold = hold
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "dropped at shutdown" in record.getMessage():
            self.let_go.wait(self.hold)
        self.lines.append(record.getMessage())


@pytest.fixture
def retrying_tick_stack(tmp_path: Path) -> Iterator[tuple[LocalStack, SlowShutdownLines]]:
    """The fixture template in-process, TickFunction raising and its retry a minute away, the
    Hourly schedule due at once; the async logger's lines captured (slow at shutdown)."""
    records = tmp_path / "records"
    clock = itertools.chain([STARTED], itertools.repeat(STARTED + timedelta(hours=1)))
    let_go = threading.Event()
    lines = SlowShutdownLines(let_go, hold=3.0)
    async_log = logging.getLogger("strongroom_local.async")
    async_log.addHandler(lines)
    stack = LocalStack(
        StackOptions(
            template_path=FIXTURE_TEMPLATE,
            state_dir=tmp_path / "state",
            api_port=0,
            parameters={"RecordDir": str(records), "TickFails": "yes"},
            sandbox_okta=None,
            max_workers=1,
            async_retry_delays=(60.0, 60.0),
            clock=lambda: next(clock),
            # moto's backends outlive a stack in this process: a name of its own.
            stack_name=f"retry-{tmp_path.name}"[:40],
        )
    )
    try:
        stack.start()
        # The first attempt failed: the event waits a minute for its retry.
        wait_for(lambda: any("attempt 1 of 2" in line for line in lines.lines))
        yield stack, lines
    finally:
        stack.stop()
        let_go.set()
        async_log.removeHandler(lines)


def test_stop_waits_for_the_asynchronous_invocations_to_say_what_they_dropped(
    retrying_tick_stack: tuple[LocalStack, SlowShutdownLines],
) -> None:
    """Their threads are daemons: what they have not logged when stop() returns is lost as the
    process exits."""
    stack, lines = retrying_tick_stack
    stack.stop()
    assert any(
        "an asynchronous event waiting for a retry was dropped at shutdown (1 attempt(s) left)"
        in line
        for line in lines.lines
    )
    assert not [t for t in threading.enumerate() if t.name == "async-TickFunction"]


def test_stop_waits_a_bounded_time_and_says_how_many_it_left(
    retrying_tick_stack: tuple[LocalStack, SlowShutdownLines],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack, lines = retrying_tick_stack
    lines.hold = 30.0  # its shutdown line takes far longer than stop waits
    stack.options.async_stop_wait_seconds = 0.2
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="strongroom_local"):
        stack.stop()
    assert time.monotonic() - started < 20
    assert (
        "1 asynchronous invocation(s) still under way after the stop waited 0.2 s for them;"
        " left running (what becomes of them is not logged)"
    ) in [record.getMessage() for record in caplog.records if record.name == "strongroom_local"]
