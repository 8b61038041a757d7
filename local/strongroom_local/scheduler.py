"""A local timer for the template's Schedule and ScheduleV2 events.

Each enabled schedule fires at its expression's times with the event EventBridge sends: the
schedule's `Input` when it has one, else a "Scheduled Event" (`source` `aws.events` for
EventBridge rules, `aws.scheduler` for EventBridge Scheduler, whose `detail` is the string
"{}"). A firing the timer sees a little late (less than FIRING_GRACE) fires with its scheduled
time; later ones (the machine slept) are skipped, logged, and not replayed: the next one is the
first after now.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from strongroom.schedules import ScheduleExpression
from strongroom_local.wiring import ScheduleSource, fill_scheduler_placeholders

log = logging.getLogger("strongroom_local.scheduler")

# How late a firing may be seen and still fire: a timer tick's lateness (a busy machine, another
# schedule's firing first), not a sleep. EventBridge itself fires within the minute a firing is
# due; and no schedule fires more often than once a minute, so only one firing can be this late.
FIRING_GRACE = timedelta(seconds=60)
# Skipped firings are counted up to this many (a per-minute cron after a month asleep would
# keep the timer counting for seconds).
_MAX_COUNTED = 1000


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
            if due is None or due > now:
                continue
            expression = source.expression
            if now - due >= FIRING_GRACE:
                # Missed (the machine slept): skipped, not replayed, but a firing due within
                # the grace still fires.
                missed_until = now - FIRING_GRACE
                skipped = _count_firings(expression, due, missed_until, anchor=self._anchor)
                log.info(
                    "%s.%s: %s missed firing(s) skipped (due from %s)",
                    source.function_id,
                    source.event_name,
                    f"{skipped}+" if skipped >= _MAX_COUNTED else skipped,
                    due.isoformat(),
                )
                recent = expression.next_after(missed_until, anchor=self._anchor)
                due = recent if recent is not None and recent <= now else None
            if due is not None:
                fired.append((source, due))
            self._next[index] = expression.next_after(now, anchor=self._anchor)
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


def _count_firings(
    expression: ScheduleExpression, first: datetime, last: datetime, *, anchor: datetime
) -> int:
    """How many firings from `first` (a firing) to `last`, both included; at most _MAX_COUNTED."""
    count = 0
    when: datetime | None = first
    while when is not None and when <= last and count < _MAX_COUNTED:
        count += 1
        when = expression.next_after(when, anchor=anchor)
    return count
