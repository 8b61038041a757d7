"""SQS event sources against moto: Lambda's record shape, batches, partial failures, DLQ."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from moto import mock_aws

from strongroom_local import stack as stack_module
from strongroom_local.runtime import Invocation
from strongroom_local.sqs_source import (
    SqsEventSource,
    failed_message_ids,
    pollers_for,
    retry_delay,
)
from strongroom_local.wiring import SqsSource


class Queues:
    def __init__(self) -> None:
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.dlq_url = self.sqs.create_queue(QueueName="jobs-dlq")["QueueUrl"]
        dlq_arn = self.arn(self.dlq_url)
        redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
        self.url = self.sqs.create_queue(
            QueueName="jobs", Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "300"}
        )["QueueUrl"]
        self.queue_arn = self.arn(self.url)

    def arn(self, url: str) -> str:
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])

    def send(self, *ids: str, **attributes: Any) -> None:
        for message_id in ids:
            self.sqs.send_message(
                QueueUrl=self.url, MessageBody=json.dumps({"id": message_id}), **attributes
            )

    def count(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())


@pytest.fixture
def queues() -> Iterator[Queues]:
    with mock_aws():
        yield Queues()


class Consumer:
    """A fake function: records batches, fails the ids it is told to."""

    def __init__(
        self,
        *,
        fail: set[str] | None = None,
        raise_all: bool = False,
        error_type: str = "RuntimeError",
        handler_ran: bool = True,
    ) -> None:
        self.fail = fail or set()
        self.raise_all = raise_all
        self.error_type = error_type
        self.handler_ran = handler_ran
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, event: dict[str, Any]) -> Invocation:
        records = event["Records"]
        self.batches.append(records)
        if self.raise_all:
            return Invocation("r", False, error_type=self.error_type, handler_ran=self.handler_ran)
        failures = [
            {"itemIdentifier": record["messageId"]}
            for record in records
            if json.loads(record["body"])["id"] in self.fail
        ]
        return Invocation("r", True, {"batchItemFailures": failures})

    def deliveries(self, message_id: str) -> list[str]:
        return [
            record["attributes"]["ApproximateReceiveCount"]
            for batch in self.batches
            for record in batch
            if json.loads(record["body"])["id"] == message_id
        ]


def source_for(
    queues: Queues,
    consumer: Callable[[dict[str, Any]], Invocation],
    *,
    batch_size: int = 10,
    report: bool = True,
    window: int = 0,
    first_retry_seconds: int = 0,
    queue_url: str | None = None,
    sqs: Any = None,
    timeout_seconds: int = 3,
) -> SqsEventSource:
    """A poller of the jobs queue; returned messages come back at once unless told otherwise."""
    source = SqsSource(
        function_id="ConsumerFunction",
        event_name="Jobs",
        queue_arn=queues.queue_arn,
        batch_size=batch_size,
        batching_window_seconds=window,
        report_batch_item_failures=report,
        enabled=True,
    )
    return SqsEventSource(
        source,
        queue_url=queue_url or queues.url,
        sqs=sqs or queues.sqs,
        invoke=consumer,
        region="us-east-1",
        wait_seconds=0,
        first_retry_seconds=first_retry_seconds,
        timeout_seconds=timeout_seconds,
    )


def test_records_have_the_shape_lambda_sends(queues: Queues) -> None:
    queues.send(
        "m1",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "backup"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )
    consumer = Consumer()
    assert source_for(queues, consumer).poll_once() == 1
    ((record,),) = consumer.batches
    assert list(record) == [
        "messageId",
        "receiptHandle",
        "body",
        "attributes",
        "messageAttributes",
        "md5OfMessageAttributes",
        "md5OfBody",
        "eventSource",
        "eventSourceARN",
        "awsRegion",
    ]
    assert record["body"] == json.dumps({"id": "m1"})
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()  # noqa: S324
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queues.queue_arn
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    # Lambda leaves out the value an attribute does not have.
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "backup",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"] == {
        "binaryValue": "AAE=",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "Binary",
    }
    assert queues.count(queues.url) == 0


def test_batches_respect_the_batch_size(queues: Queues) -> None:
    queues.send(*[f"m{i}" for i in range(7)])
    consumer = Consumer()
    source = source_for(queues, consumer, batch_size=5)
    assert source.poll_once() == 5
    assert source.poll_once() == 2
    assert source.poll_once() == 0
    assert [len(batch) for batch in consumer.batches] == [5, 2]


def test_reported_failures_are_retried_then_dead_lettered(queues: Queues) -> None:
    queues.send("ok-1", "bad", "ok-2")
    consumer = Consumer(fail={"bad"})
    source = source_for(queues, consumer)
    assert source.poll_once() == 3
    assert source.poll_once() == 1  # returned (with no back-off in this test)
    assert source.poll_once() == 0  # the receive after maxReceiveCount moves it to the DLQ
    assert consumer.deliveries("ok-1") == ["1"]
    assert consumer.deliveries("ok-2") == ["1"]
    assert consumer.deliveries("bad") == ["1", "2"]
    assert queues.count(queues.url) == 0
    (dead,) = queues.sqs.receive_message(QueueUrl=queues.dlq_url)["Messages"]
    assert json.loads(dead["Body"]) == {"id": "bad"}


def test_a_failed_invocation_returns_the_whole_batch(queues: Queues) -> None:
    queues.send("a", "b")
    consumer = Consumer(raise_all=True)
    source = source_for(queues, consumer)
    assert source.poll_once() == 2
    assert source.poll_once() == 2
    assert source.poll_once() == 0
    assert queues.count(queues.url) == 0
    assert queues.count(queues.dlq_url) == 2


def test_without_report_batch_item_failures_a_success_deletes_everything(
    queues: Queues,
) -> None:
    queues.send("a", "b")
    consumer = Consumer(fail={"a"})
    assert source_for(queues, consumer, report=False).poll_once() == 2
    assert queues.count(queues.url) == 0
    assert queues.count(queues.dlq_url) == 0


@pytest.mark.parametrize(
    ("result", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        # Unusable reports fail the whole batch, as Lambda does.
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "unknown"}]}, {"m1", "m2"}),
        ({"batchItemFailures": [{"id": "m1"}]}, {"m1", "m2"}),
        ({"batchItemFailures": "m1"}, {"m1", "m2"}),
        ("not an object", {"m1", "m2"}),
    ],
)
def test_partial_batch_responses_are_read_as_lambda_reads_them(
    result: Any, failed: set[str]
) -> None:
    invocation = Invocation("r", True, result)
    assert failed_message_ids(invocation, ["m1", "m2"], report_batch_item_failures=True) == failed
    assert failed_message_ids(invocation, ["m1", "m2"], report_batch_item_failures=False) == set()
    failure = Invocation("r", False, error_type="RuntimeError")
    assert failed_message_ids(failure, ["m1", "m2"], report_batch_item_failures=True) == {
        "m1",
        "m2",
    }


# ---- Returned messages are hidden for a back-off, not retried in a busy loop ---------------


@pytest.mark.parametrize(
    ("receives", "visibility", "first", "delay"),
    [
        (1, 300, 1, 1),
        (2, 300, 1, 2),
        (3, 300, 1, 4),
        (9, 300, 1, 256),
        (10, 300, 1, 300),  # never longer than the queue's visibility timeout
        (10_000, 5400, 1, 5400),
        (0, 300, 1, 1),
        (5, 300, 0, 0),  # no back-off: returned at once
        (3, 0, 1, 0),
    ],
)
def test_the_retry_delay_doubles_up_to_the_visibility_timeout(
    receives: int, visibility: int, first: int, delay: int
) -> None:
    assert retry_delay(receives, visibility, first_seconds=first) == delay


def test_a_returned_message_stays_hidden_for_its_back_off(queues: Queues) -> None:
    queues.send("bad")
    consumer = Consumer(fail={"bad"})
    source = source_for(queues, consumer, first_retry_seconds=1)
    assert source.poll_once() == 1
    assert source.poll_once() == 0  # hidden for 1 s after its first receive
    time.sleep(1.2)
    assert source.poll_once() == 1
    assert consumer.deliveries("bad") == ["1", "2"]


def test_failing_messages_do_not_stand_in_front_of_the_others(queues: Queues) -> None:
    failing = [f"bad-{i}" for i in range(10)]
    queues.send(*failing)
    queues.send("good")
    consumer = Consumer(fail=set(failing))
    source = source_for(queues, consumer, first_retry_seconds=1)
    for _ in range(3):
        source.poll_once()
    assert consumer.deliveries("good") == ["1"]
    assert all(consumer.deliveries(message) == ["1"] for message in failing)


def test_a_message_failing_for_good_does_not_spin_the_poller(queues: Queues) -> None:
    # No redrive policy (as the backup dead-letter queue): it is retried for ever, but at the
    # pace of its back-off, not as fast as the emulator answers.
    url = queues.sqs.create_queue(QueueName="no-redrive", Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    queues.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": "bad"}))
    consumer = Consumer(fail={"bad"})
    source = source_for(queues, consumer, first_retry_seconds=1, queue_url=url)
    source.idle_seconds = 0.05
    stop = threading.Event()
    poller = threading.Thread(target=source.run, args=(stop,))
    poller.start()
    time.sleep(2.5)
    stop.set()
    poller.join(timeout=5)
    # Received at 0 s, 1 s and 3 s: within 2.5 s, twice, give or take one on a loaded machine
    # (it was hundreds when returned at once).
    assert 1 <= len(consumer.deliveries("bad")) <= 3


# ---- An invocation cut off by the runtime keeps its messages hidden past its leases ---------


class RecordingSqs:
    """The SQS client, recording the visibility each returned message is given."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.hidden_for: list[int] = []

    def change_message_visibility_batch(self, **kwargs: Any) -> Any:
        self.hidden_for += [entry["VisibilityTimeout"] for entry in kwargs["Entries"]]
        return self._sqs.change_message_visibility_batch(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)


def queue_with_visibility(queues: Queues, name: str, visibility: int) -> str:
    response = queues.sqs.create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": str(visibility)}
    )
    return str(response["QueueUrl"])


CUT_OFF = ["Sandbox.Timedout", "Runtime.ExitError", "Runtime.InvalidResponse"]


@pytest.mark.parametrize("error_type", CUT_OFF)
@pytest.mark.parametrize(
    ("timeout", "visibility", "hidden"),
    [
        (10, 300, 70),  # the function's Timeout + 60 s
        (900, 5400, 960),  # the backup worker on the backup queue
        (900, 300, 300),  # never longer than the queue's visibility timeout
    ],
)
def test_a_cut_off_invocation_hides_its_batch_past_its_leases(
    queues: Queues, error_type: str, timeout: int, visibility: int, hidden: int
) -> None:
    url = queue_with_visibility(queues, "cut-off", visibility)
    for message_id in ("a", "b"):
        queues.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": message_id}))
    sqs = RecordingSqs(queues.sqs)
    consumer = Consumer(raise_all=True, error_type=error_type)
    source = source_for(
        queues, consumer, first_retry_seconds=1, queue_url=url, sqs=sqs, timeout_seconds=timeout
    )
    assert source.poll_once() == 2
    assert sqs.hidden_for == [hidden, hidden]
    assert source.poll_once() == 0


@pytest.mark.parametrize("error_type", ["Sandbox.Timedout", "Runtime.ExitError"])
def test_an_init_that_failed_keeps_the_short_back_off(queues: Queues, error_type: str) -> None:
    # The worker died or timed out starting: no handler ran, so nothing is held.
    url = queue_with_visibility(queues, "init-failed", 5400)
    queues.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": "a"}))
    sqs = RecordingSqs(queues.sqs)
    consumer = Consumer(raise_all=True, error_type=error_type, handler_ran=False)
    source = source_for(
        queues, consumer, first_retry_seconds=1, queue_url=url, sqs=sqs, timeout_seconds=900
    )
    assert source.poll_once() == 1
    assert sqs.hidden_for == [1]


@pytest.mark.parametrize("error_type", ["Sandbox.Timedout", "Runtime.ExitError"])
def test_a_cut_off_invocation_is_retried_only_after_timeout_plus_a_minute(
    queues: Queues, error_type: str
) -> None:
    # Timeout + 60 s is 61 s, capped by the queue's 2 s: hidden past the 1 s back-off, not longer.
    url = queue_with_visibility(queues, "cut-off", 2)
    queues.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"id": "job"}))
    consumer = Consumer(raise_all=True, error_type=error_type)
    source = source_for(queues, consumer, first_retry_seconds=1, queue_url=url, timeout_seconds=1)
    started = time.monotonic()
    assert source.poll_once() == 1
    time.sleep(max(0.0, started + 1.4 - time.monotonic()))
    assert source.poll_once() == 0
    time.sleep(max(0.0, started + 2.4 - time.monotonic()))
    assert source.poll_once() == 1
    assert consumer.deliveries("job") == ["1", "2"]


@pytest.mark.parametrize(
    "consumer",
    [Consumer(raise_all=True, error_type="RuntimeError"), Consumer(fail={"a", "b"})],
    ids=["handler-raised", "batch-item-failures"],
)
def test_failures_the_function_reports_keep_the_short_back_off(
    queues: Queues, consumer: Consumer
) -> None:
    queues.send("a", "b")
    sqs = RecordingSqs(queues.sqs)
    source = source_for(queues, consumer, first_retry_seconds=1, sqs=sqs, timeout_seconds=900)
    assert source.poll_once() == 2
    assert sqs.hidden_for == [1, 1]
    time.sleep(1.2)
    assert source.poll_once() == 2
    assert sqs.hidden_for == [1, 1, 2, 2]


def test_the_batching_window_gathers_messages_sent_after_the_first(queues: Queues) -> None:
    queues.send("first")
    consumer = Consumer()
    source = source_for(queues, consumer, batch_size=4, window=2)
    late = threading.Timer(0.3, queues.send, args=("second", "third", "fourth"))
    late.start()
    try:
        assert source.poll_once() == 4
    finally:
        late.join()
    ((*_,),) = consumer.batches
    assert sorted(json.loads(record["body"])["id"] for record in consumer.batches[0]) == [
        "first",
        "fourth",
        "second",
        "third",
    ]


def test_the_batching_window_ends_when_the_stack_stops(queues: Queues) -> None:
    queues.send("only")
    consumer = Consumer()
    source = source_for(queues, consumer, batch_size=4, window=300)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    assert source.poll_once(stop) == 1
    assert time.monotonic() - started < 5


# ---- Batches of one mapping run side by side ----------------------------------------------


@pytest.mark.parametrize(
    ("maximum", "workers", "pollers"), [(None, 4, 4), (20, 4, 4), (2, 4, 2), (None, 1, 1)]
)
def test_pollers_follow_maximum_concurrency_within_the_workers(
    maximum: int | None, workers: int, pollers: int
) -> None:
    source = SqsSource(
        function_id="F",
        event_name="E",
        queue_arn="arn",
        batch_size=1,
        batching_window_seconds=0,
        report_batch_item_failures=True,
        enabled=True,
        maximum_concurrency=maximum,
    )
    assert pollers_for(source, workers) == pollers


def test_pollers_of_one_mapping_run_batches_at_once(queues: Queues) -> None:
    queues.send(*[f"job-{i}" for i in range(4)])
    running, most = 0, 0
    lock = threading.Lock()

    def slow(event: dict[str, Any]) -> Invocation:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.4)
        with lock:
            running -= 1
        return Invocation("r", True, None)

    source = source_for(queues, slow, batch_size=1)
    stop = threading.Event()
    threads = [threading.Thread(target=source.run, args=(stop,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while queues.count(queues.url) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join(timeout=5)
    assert queues.count(queues.url) == 0
    assert most == 2


def test_the_stack_gives_each_poller_its_function_s_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[str, int]] = []

    class Recorder:
        def __init__(self, source: SqsSource, **kwargs: Any) -> None:
            made.append((source.function_id, kwargs["timeout_seconds"]))

        def run(self, stop: threading.Event) -> None:
            pass

    monkeypatch.setattr(stack_module, "SqsEventSource", Recorder)
    monkeypatch.setattr(stack_module, "_queue_url", lambda sqs, arn: "http://127.0.0.1/q")
    local = stack_module.LocalStack(stack_module.StackOptions(max_workers=1))
    worker = SimpleNamespace(function=SimpleNamespace(timeout_seconds=900), invoke=None)
    monkeypatch.setattr(local, "_pools", {"BackupWorker": worker})
    monkeypatch.setattr(local, "_thread", lambda *args: None)
    source = SqsSource(
        function_id="BackupWorker",
        event_name="Jobs",
        queue_arn="arn:aws:sqs:us-east-1:123456789012:backup",
        batch_size=1,
        batching_window_seconds=0,
        report_batch_item_failures=True,
        enabled=True,
    )
    local._start_pollers(None, cast(Any, SimpleNamespace(queues=[source])))
    assert made == [("BackupWorker", 900)]
