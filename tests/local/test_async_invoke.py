"""Scheduled (asynchronous) invocations: Lambda's retries, then the dead-letter queue."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.async_invoke import LAMBDA_RETRY_DELAYS_SECONDS, AsyncInvoker
from strongroom_local.runtime import Invocation

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "id": "e-1"}


class Function:
    """Fails its first `failures` invocations, then succeeds; records every event."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.events: list[Any] = []

    def __call__(self, event: Any) -> Invocation:
        self.events.append(event)
        attempt = len(self.events)
        if attempt <= self.failures:
            return Invocation(f"req-{attempt}", ok=False, error_type="RuntimeError")
        return Invocation(f"req-{attempt}", ok=True, result={"done": True})


@pytest.fixture
def sqs() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="dead-letters")["QueueUrl"]
        yield client, url


def invoker(
    function: Function, sqs: Any, url: str | None, *, retries: int = 2, stop: Any = None
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


def test_an_event_that_fails_every_attempt_is_dead_lettered_as_lambda_sends_it(
    sqs: tuple[Any, str],
) -> None:
    client, url = sqs
    function = Function(failures=3)
    last = invoker(function, client, url).submit(EVENT)
    last.join(10)
    assert function.events == [EVENT, EVENT, EVENT]  # the first attempt and two retries
    (message,) = dead_letters(client, url)
    assert json.loads(message["Body"]) == EVENT
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {"RequestID": "req-3", "ErrorCode": "200", "ErrorMessage": "RuntimeError"}


def test_a_retry_that_succeeds_ends_it(sqs: tuple[Any, str]) -> None:
    client, url = sqs
    function = Function(failures=1)
    result = invoker(function, client, url).run(EVENT)
    assert result is not None
    assert result.ok
    assert len(function.events) == 2
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
