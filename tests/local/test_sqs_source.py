"""SQS event sources against moto: Lambda's record shape, batches, partial failures, DLQ."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.runtime import Invocation
from strongroom_local.sqs_source import SqsEventSource, failed_message_ids
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

    def __init__(self, *, fail: set[str] | None = None, raise_all: bool = False) -> None:
        self.fail = fail or set()
        self.raise_all = raise_all
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, event: dict[str, Any]) -> Invocation:
        records = event["Records"]
        self.batches.append(records)
        if self.raise_all:
            return Invocation("r", False, error_type="RuntimeError")
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
    queues: Queues, consumer: Consumer, *, batch_size: int = 10, report: bool = True
) -> SqsEventSource:
    source = SqsSource(
        function_id="ConsumerFunction",
        event_name="Jobs",
        queue_arn=queues.queue_arn,
        batch_size=batch_size,
        batching_window_seconds=0,
        report_batch_item_failures=report,
        enabled=True,
    )
    return SqsEventSource(
        source,
        queue_url=queues.url,
        sqs=queues.sqs,
        invoke=consumer,
        region="us-east-1",
        wait_seconds=0,
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
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "backup",
        "binaryValue": None,
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
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
    assert source.poll_once() == 1  # returned at once, not after the visibility timeout
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
