"""SQS event source mappings: queues drained to their functions in batches, as Lambda does.

A batch is up to `BatchSize` messages gathered for at most `MaximumBatchingWindowInSeconds`
after the first one, delivered as Lambda's `{"Records": [...]}` event. Messages of a successful
invocation are deleted. With `ReportBatchItemFailures`, the ids listed in `batchItemFailures`
are returned to the queue and the rest deleted; an invalid failure report fails the whole batch.
A failed invocation returns every message. A returned message stays hidden for a short back-off
rather than the queue's whole visibility timeout (90 minutes for the backup queue), so a retry
comes soon locally: 1 s after the first receive, doubling with each receive, never longer than
the queue's visibility timeout. The messages of an invocation the runtime cut off (timed out
or crashed) stay hidden for the function's Timeout + 60 s instead, at most the visibility
timeout, as what it held may still be leased. Hidden, a message neither spins the poller nor
stands in front of the messages behind it, as in AWS. The queue's RedrivePolicy then moves a
message to its dead-letter queue on the receive after `maxReceiveCount`, which moto's SQS
implements on receive as SQS does. Up to `ScalingConfig.MaximumConcurrency` batches of one
mapping run at once (at most the function's workers), so jobs of one queue meet each other as
they do in AWS.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from strongroom_local.runtime import Invocation
from strongroom_local.wiring import SqsSource

log = logging.getLogger("strongroom_local.sqs")

_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
    "AWSTraceHeader",
)


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # Lambda leaves out the value an attribute does not have (no `binaryValue` on a String).
    attribute: dict[str, Any] = {}
    if value.get("StringValue") is not None:
        attribute["stringValue"] = value["StringValue"]
    if value.get("BinaryValue") is not None:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [
        base64.b64encode(item).decode("ascii") for item in value.get("BinaryListValues", [])
    ]
    attribute["dataType"] = value.get("DataType")
    return attribute


# Failures the runtime reports rather than the handler: the invocation was cut off (timed out,
# crashed, killed) and released nothing it held. The backup worker's step claims last until its
# deadline + 60 s, so a retry any sooner meets its own claim (StepHeld) and, after a few
# seconds of back-off, dead-letters a backup that AWS, retrying after the whole visibility
# timeout, would carry on.
CUT_OFF_ERRORS = frozenset({"Sandbox.Timedout", "Runtime.ExitError", "Runtime.InvalidResponse"})
CUT_OFF_GRACE_SECONDS = 60


def retry_delay(receive_count: int, visibility_timeout: int, *, first_seconds: int = 1) -> int:
    """Seconds a returned message stays hidden: `first_seconds` after its first receive,
    doubling with each receive, at most the queue's visibility timeout."""
    if first_seconds <= 0:
        return 0
    doublings = min(max(receive_count, 1) - 1, 20)
    return min(first_seconds << doublings, max(visibility_timeout, 0))


def sqs_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda sends for an SQS batch."""
    attributes = message.get("Attributes", {})
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {k: attributes[k] for k in _RECORD_ATTRIBUTES if k in attributes},
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        {
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
    )
    return record


def _reported_failures(result: Any, message_ids: set[str]) -> set[str] | None:
    """The ids in a `batchItemFailures` report; None when the report is unusable."""
    failures = result.get("batchItemFailures") if isinstance(result, dict) else None
    if result is None or (isinstance(result, dict) and failures is None):
        return set()
    if not isinstance(failures, list):
        return None
    failed = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or identifier not in message_ids:
            return None
        failed.add(identifier)
    return failed


def failed_message_ids(
    invocation: Invocation, message_ids: Sequence[str], *, report_batch_item_failures: bool
) -> set[str]:
    """The messages to return to the queue after `invocation`."""
    everything = set(message_ids)
    if not invocation.ok:
        return everything
    if not report_batch_item_failures:
        return set()
    reported = _reported_failures(invocation.result, everything)
    # Lambda treats an unusable report as a failure of the whole batch.
    return everything if reported is None else reported


def pollers_for(source: SqsSource, max_workers: int) -> int:
    """How many batches of `source` run at once: its MaximumConcurrency, at most the workers."""
    cap = source.maximum_concurrency or max_workers
    return max(1, min(cap, max_workers))


class SqsEventSource:
    """Polls one queue for one function."""

    def __init__(
        self,
        source: SqsSource,
        *,
        queue_url: str,
        sqs: Any,
        invoke: Callable[[dict[str, Any]], Invocation],
        region: str,
        wait_seconds: int = 0,
        idle_seconds: float = 0.2,
        first_retry_seconds: int = 1,
        timeout_seconds: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self._queue_url = queue_url
        self._sqs = sqs
        self._invoke = invoke
        self._region = region
        self._wait_seconds = wait_seconds
        self.idle_seconds = idle_seconds
        self._first_retry_seconds = first_retry_seconds
        self._timeout_seconds = timeout_seconds
        self._visibility_timeout: int | None = None
        self._clock = clock
        self._sleep = sleep

    def _queue_visibility_timeout(self) -> int:
        if self._visibility_timeout is None:
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["VisibilityTimeout"]
            )["Attributes"]
            self._visibility_timeout = int(attributes["VisibilityTimeout"])
        return self._visibility_timeout

    def _hidden_for(self, message: Mapping[str, Any], invocation: Invocation) -> int:
        visibility = self._queue_visibility_timeout()
        # An init that failed ran none of the handler, so it holds nothing: the short back-off.
        if invocation.handler_ran and not invocation.ok and invocation.error_type in CUT_OFF_ERRORS:
            return min(self._timeout_seconds + CUT_OFF_GRACE_SECONDS, visibility)
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        return retry_delay(
            int(receives) if str(receives).isdigit() else 1,
            visibility,
            first_seconds=self._first_retry_seconds,
        )

    def _receive(self, count: int, wait_seconds: int) -> list[dict[str, Any]]:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=min(10, count),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def receive_batch(self, stop: threading.Event | None = None) -> list[dict[str, Any]]:
        """Up to BatchSize messages, waiting at most the batching window after the first (and
        no longer once `stop` is set)."""
        batch = self._receive(self.source.batch_size, self._wait_seconds)
        if not batch:
            return []
        deadline = self._clock() + self.source.batching_window_seconds
        while (
            len(batch) < self.source.batch_size
            and (remaining := deadline - self._clock()) > 0
            and not (stop is not None and stop.is_set())
        ):
            more = self._receive(self.source.batch_size - len(batch), 0)
            if more:
                batch += more
            else:
                self._sleep(min(self.idle_seconds / 4, remaining))
        return batch

    def poll_once(self, stop: threading.Event | None = None) -> int:
        """Receive one batch, invoke the function, settle the messages; how many were handled."""
        messages = self.receive_batch(stop)
        if not messages:
            return 0
        records = [
            sqs_record(message, queue_arn=self.source.queue_arn, region=self._region)
            for message in messages
        ]
        invocation = self._invoke({"Records": records})
        failed = failed_message_ids(
            invocation,
            [message["MessageId"] for message in messages],
            report_batch_item_failures=self.source.report_batch_item_failures,
        )
        done = [m for m in messages if m["MessageId"] not in failed]
        returned = [m for m in messages if m["MessageId"] in failed]
        for chunk in _chunks(done):
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
        for chunk in _chunks(returned):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": self._hidden_for(m, invocation),
                    }
                    for i, m in enumerate(chunk)
                ],
            )
        if returned:
            log.info(
                "%s: %d of %d messages returned to the queue",
                self.source.function_id,
                len(returned),
                len(messages),
            )
        return len(messages)

    def run(self, stop: threading.Event) -> None:
        """Poll until `stop` is set; errors of the emulator are logged and retried."""
        # Short polls with a pause when the queue is empty, so that stopping never waits
        # for a long poll to end.
        while not stop.is_set():
            try:
                handled = self.poll_once(stop)
            except (BotoCoreError, ClientError) as exc:
                if stop.is_set():
                    return
                log.warning("%s: polling failed: %s", self.source.function_id, exc)
                stop.wait(1.0)
                continue
            if not handled:
                stop.wait(self.idle_seconds)


def _chunks(messages: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [messages[i : i + 10] for i in range(0, len(messages), 10)]
