"""A local timer for the template's Schedule and ScheduleV2 events.

Each enabled schedule fires at its expression's times with the event EventBridge sends: the
schedule's `Input` when it has one, else a "Scheduled Event" (`source` `aws.events` for
EventBridge rules, `aws.scheduler` for EventBridge Scheduler, whose `detail` is the string
"{}"). Missed firings (the machine slept) are not replayed: the next one is the first after now.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from strongroom_local.wiring import ScheduleSource, fill_scheduler_placeholders

log = logging.getLogger("strongroom_local.scheduler")


def scheduled_event(
    source: ScheduleSource, *, scheduled_time: datetime, account_id: str, region: str
) -> Any:
    """The event a schedule delivers to its function at `scheduled_time`."""
    time_text = scheduled_time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    event_id = str(uuid.uuid4())
    if source.input is not None:
        # JSON text: the wiring refused any other, as EventBridge does.
        text = source.input
        if source.kind == "ScheduleV2":
            text = fill_scheduler_placeholders(text, (source.arn, time_text, event_id, "1"))
        return json.loads(text)
    scheduler = source.kind == "ScheduleV2"
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if scheduler else "aws.events",
        "account": account_id,
        "time": time_text,
        "region": region,
        "resources": [source.arn],
        "detail": "{}" if scheduler else {},
    }


class Scheduler:
    """Decides which schedules are due; `fire` is called for each firing."""

    def __init__(
        self,
        sources: Sequence[ScheduleSource],
        fire: Callable[[ScheduleSource, datetime], None],
        *,
        started_at: datetime,
    ) -> None:
        self._sources = [source for source in sources if source.enabled]
        self._fire = fire
        self._anchor = started_at
        self._next = [
            source.expression.next_after(started_at, anchor=started_at) for source in self._sources
        ]

    def next_due(self) -> datetime | None:
        pending = [due for due in self._next if due is not None]
        return min(pending) if pending else None

    def tick(self, now: datetime) -> list[tuple[ScheduleSource, datetime]]:
        """Fire every schedule due at `now`; return what was fired."""
        fired = []
        for index, source in enumerate(self._sources):
            due = self._next[index]
            if due is not None and due <= now:
                fired.append((source, due))
                self._next[index] = source.expression.next_after(now, anchor=self._anchor)
        for source, due in fired:
            log.info("%s.%s fires (%s)", source.function_id, source.event_name, due.isoformat())
            self._fire(source, due)
        return fired

    def run(self, stop: threading.Event, clock: Callable[[], datetime]) -> None:
        while not stop.is_set():
            self.tick(clock())
            due = self.next_due()
            wait = 60.0 if due is None else (due - clock()).total_seconds()
            stop.wait(min(max(wait, 0.05), 60.0))
