"""Asynchronous invocations (what EventBridge makes of a schedule), as Lambda runs them.

Lambda queues the event and runs the function; when the function fails it retries, by default
twice, about one and then two minutes later. An event that fails every attempt goes to the
function's dead-letter queue (`DeadLetterQueue` with `Type: SQS`) with the message attributes
Lambda gives it, or is dropped when there is none. Every attempt of an event has the event's one
request id, as in Lambda (handlers record `context.aws_request_id`, e.g. in audit records).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from strongroom_local.runtime import Invocation

log = logging.getLogger("strongroom_local.async")

# Lambda's waits before its two retries of a failed asynchronous invocation.
LAMBDA_RETRY_DELAYS_SECONDS = (60.0, 120.0)


class Invoke(Protocol):
    """Runs the function once on `event` under `request_id` (a FunctionPool's invoke)."""

    def __call__(self, event: Any, *, request_id: str) -> Invocation: ...


class AsyncInvoker:
    """Runs one function's asynchronous invocations on their own threads."""

    def __init__(
        self,
        function_id: str,
        invoke: Invoke,
        *,
        retries: int,
        dead_letter_queue_url: str | None,
        sqs: Any,
        stop: threading.Event,
        retry_delays: Sequence[float] = LAMBDA_RETRY_DELAYS_SECONDS,
    ) -> None:
        self._function_id = function_id
        self._invoke = invoke
        self._retries = retries
        self._dead_letter_queue_url = dead_letter_queue_url
        self._sqs = sqs
        self._stop = stop
        self._retry_delays = retry_delays
        # The threads of the events under way, for the stack's stop to wait for.
        self._under_way: set[threading.Thread] = set()
        self._under_way_lock = threading.Lock()

    def submit(self, event: Any) -> threading.Thread:
        """Queue `event`; the returned thread ends when it succeeded or was given up."""
        thread = threading.Thread(
            target=self._run_under_way,
            args=(event,),
            name=f"async-{self._function_id}",
            daemon=True,
        )
        # Registered and started under the lock: wait() never meets a thread not yet started,
        # and one that cannot start (no threads left) is not left registered.
        with self._under_way_lock:
            self._under_way.add(thread)
            try:
                thread.start()
            except BaseException:
                self._under_way.discard(thread)
                raise
        return thread

    def _run_under_way(self, event: Any) -> None:
        try:
            self.run(event)
        finally:
            with self._under_way_lock:
                self._under_way.discard(threading.current_thread())

    def wait(self, deadline: float) -> int:
        """Wait for the events under way to end, until `deadline` (a time.monotonic() value) at
        most: how many are still under way then. A thread running a handler cannot be killed."""
        with self._under_way_lock:
            under_way = list(self._under_way)
        for thread in under_way:
            # join() raises on a thread never started: it has nothing under way.
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return sum(thread.is_alive() for thread in under_way)

    def run(self, event: Any) -> Invocation | None:
        """Every attempt `event` gets; the last invocation (None if none was made)."""
        request_id = str(uuid.uuid4())
        attempts = self._retries + 1
        invocation = None
        for attempt in range(attempts):
            if attempt and self._stop.wait(self._delay(attempt)):
                self._dropped_at_shutdown(request_id, "waiting for a retry", attempts - attempt)
                return invocation
            invocation = self._invoke(event, request_id=request_id)
            if invocation.ok:
                return invocation
            if not invocation.handler_ran and self._stop.is_set():
                # No worker was had because the stack is stopping: nothing of the function ran,
                # so this is no failure of its own to retry or dead-letter.
                self._dropped_at_shutdown(request_id, "not yet run", attempts - attempt)
                return invocation
            log.warning(
                "%s: %s failed an asynchronous invocation (attempt %d of %d): %s",
                request_id,
                self._function_id,
                attempt + 1,
                attempts,
                invocation.error_type,
            )
            if attempt + 1 == attempts and self._stop.is_set():
                # The stack's stop kills busy workers: a last attempt that failed as it stopped
                # most likely died of that, no failure of the function's to dead-letter.
                self._dropped_at_shutdown(request_id, "whose last attempt the stop cut short", 0)
                return invocation
        if invocation is not None:
            self._dead_letter(event, invocation)
        return invocation

    def _dropped_at_shutdown(self, request_id: str, state: str, attempts_left: int) -> None:
        log.warning(
            "%s: %s: an asynchronous event %s was dropped at shutdown (%d attempt(s) left)",
            request_id,
            self._function_id,
            state,
            attempts_left,
        )

    def _delay(self, attempt: int) -> float:
        return self._retry_delays[min(attempt, len(self._retry_delays)) - 1]

    def _dead_letter(self, event: Any, invocation: Invocation) -> None:
        request_id = invocation.request_id
        if self._dead_letter_queue_url is None:
            log.error(
                "%s: %s: an asynchronous event failed every attempt; dropped",
                request_id,
                self._function_id,
            )
            return
        # As Lambda sends it: the event as the body; ErrorCode is the Invoke API's status (200:
        # the function ran and failed); the message is the error type only, never its text.
        try:
            self._sqs.send_message(
                QueueUrl=self._dead_letter_queue_url,
                MessageBody=json.dumps(event),
                MessageAttributes={
                    "RequestID": {"DataType": "String", "StringValue": request_id},
                    "ErrorCode": {"DataType": "Number", "StringValue": "200"},
                    "ErrorMessage": {
                        "DataType": "String",
                        "StringValue": invocation.error_type or "Unhandled",
                    },
                },
            )
        except (ClientError, BotoCoreError) as exc:
            # The queue deleted, moto stopped: say what was lost (never the event, which may
            # hold anything), rather than end this thread on a traceback.
            code = (
                exc.response.get("Error", {}).get("Code", "Unknown")
                if isinstance(exc, ClientError)
                else type(exc).__name__
            )
            log.error(
                "%s: %s: an asynchronous event failed every attempt and could not be"
                " dead-lettered (%s); dropped",
                request_id,
                self._function_id,
                code,
            )
            return
        log.error(
            "%s: %s: an asynchronous event failed every attempt; dead-lettered",
            request_id,
            self._function_id,
        )
