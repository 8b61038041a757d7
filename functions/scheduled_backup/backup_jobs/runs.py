"""Starting backups: by hand (POST .../backups) or when a connection's schedule comes due.

One running backup per connection: a `BACKUP_RUN#<connection_id>` item names it, created in the
same transaction as the backup's record, so two starts can never both create one. While it
exists, a start answers with the running backup's id (idempotent). The worker moves its expiry
on at each step and deletes it when the backup completes or fails; its TTL frees the connection
if a worker died without doing so.

The dispatcher reads the platform index of due schedules (strongroom.backups.schedule), moves
each due entry to its next run (no sooner than the plan's minimum interval after the run it
starts) with a compare-and-swap, or deletes it if the run due is its schedule's last, and only
the dispatcher that moved it starts the run. A run whose start wrote nothing (a store or audit
outage) is put back, due again at the next tick. One entry's fault, whatever it is, never holds
up the others.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from backup_jobs import exceptions as errors
from backup_jobs.models import BackupJob
from backup_jobs.services import Services
from strongroom.api import Caller
from strongroom.audit import AuditError, AuditUnavailable
from strongroom.audit.events import AuditAction, AuditEntry
from strongroom.audit.events import Outcome as AuditOutcome
from strongroom.backups import (
    BACKUP_KIND,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    BackupStatus,
    ScheduleEntry,
    backup_index,
    backup_prefix,
    new_backup_id,
    next_run_after,
)
from strongroom.errors import Conflict, NotFound
from strongroom.oauth import CONNECTION_KIND
from strongroom.plans import Plan, plan_named, use_on_demand_backup
from strongroom.redaction import get_logger
from strongroom.roles import Role, require_role, still_allowed
from strongroom.schedules import InvalidScheduleExpression, parse_schedule_expression
from strongroom.shredded_orgs import (
    BEING_DELETED,
    ORG_KIND,
    is_shredded,
    refuse_if_shredded,
    unshredded,
)
from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    Item,
    ItemExists,
    ItemNotFound,
    Operation,
    StoreUnavailable,
    TenancyError,
    Update,
)

RUN_KIND: Final = "BACKUP_RUN"
# Longer than a backup's step may take through every retry of the queue (3 receives of 15
# minutes), short enough that a dead run does not block a day's backup: each step's claim moves
# the expiry on (worker._keep_run_item), so a long backup keeps it.
RUN_TTL: Final = timedelta(hours=6)
SCHEDULER: Final = "system:scheduler"
# Who the audit log names for what the function does by itself (failing a backup, say).
ACTOR: Final = "system:scheduled_backup"
_ONE_SECOND = timedelta(seconds=1)
# What a scheduled start may fail with that the next tick can cure.
_TRANSIENT = (StoreUnavailable, AuditUnavailable, Conflict)

logger = get_logger(service="scheduled_backup")


@dataclass(frozen=True)
class Started:
    backup_id: str
    new: bool  # False: the connection's running backup


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_backup(
    services: Services, org_id: str, connection_id: str, *, now: datetime
) -> str | None:
    """The id of the connection's running backup, if one runs.

    A run item naming a backup that has ended (its worker could not delete the item) is stale:
    it is deleted here, so that it holds up neither a start nor the schedule until its TTL.
    """
    try:
        item = services.table.get(org_id, RUN_KIND, connection_id, now=now)
    except ItemNotFound:
        return None
    backup_id = str(item.attributes["backup_id"])
    try:
        backup = services.table.get(org_id, BACKUP_KIND, backup_id, now=now)
    except ItemNotFound:
        backup = None
    if backup is not None and backup.attributes.get("status") == BackupStatus.RUNNING.value:
        return backup_id
    # Only the item as read: a start that replaced it meanwhile keeps its own.
    with contextlib.suppress(ConditionFailed, ItemNotFound):
        services.table.delete(
            org_id, RUN_KIND, connection_id, expect={"backup_id": backup_id}, now=now
        )
    return None


def start_on_demand(
    services: Services,
    caller: Caller,
    org_id: str,
    connection_id: str,
    *,
    now: datetime,
    request_id: str,
) -> Started:
    """Start a backup now (admin); the running one's id if one runs; RateLimited past the
    plan's on-demand backups of the day (a start that finds one running is not counted)."""
    require_role(services.table, caller, org_id, Role.ADMIN, now=now)
    _connection(services, org_id, connection_id, now=now)
    org = _org(services, org_id, now=now)
    # Its deletion would pass over a backup started now; the start's condition covers a
    # shredding after this read.
    refuse_if_shredded(org)
    running = running_backup(services, org_id, connection_id, now=now)
    if running is not None:
        return Started(running, new=False)
    use_on_demand_backup(
        services.table, org_id, plan=plan_named(org.attributes.get("plan")), now=now
    )
    try:
        started = start_backup(
            services,
            org_id,
            connection_id,
            trigger="on_demand",
            requested_by=caller.sub,
            now=now,
            request_id=request_id,
            guard=still_allowed(caller.sub, Role.ADMIN),
        )
    except Exception:
        _refund_on_demand_use(services, org_id, now=now)  # nothing ran: not a use
        raise
    if not started.new:
        # Another request started one between our check and our start: this one is not a use.
        _refund_on_demand_use(services, org_id, now=now)
    return started


def _refund_on_demand_use(services: Services, org_id: str, *, now: datetime) -> None:
    with contextlib.suppress(TenancyError):
        services.table.increment(
            org_id,
            "USAGE",
            f"on_demand_backups:{now.astimezone(UTC).date().isoformat()}",
            attribute="count",
            by=-1,
            now=now,
        )


def start_backup(
    services: Services,
    org_id: str,
    connection_id: str,
    *,
    trigger: str,
    requested_by: str,
    now: datetime,
    request_id: str,
    guard: Check | None = None,
) -> Started:
    """Create the backup's record (running) and queue its job, unless one already runs.

    `guard` must hold when the record is written (the user who asked is still an admin):
    NotFound if they were removed meanwhile, Conflict if demoted; nothing is written. NotFound
    too if the connection was deleted meanwhile, Conflict if the org's deletion has shredded
    its key (the deletion could pass over the record).
    """
    connection = _connection(services, org_id, connection_id, now=now)
    backup_id = new_backup_id()
    prefix = backup_prefix(org_id, connection_id, now, backup_id)
    attributes: dict[str, Any] = {
        "connection_id": connection_id,
        "provider": str(connection["provider"]),
        "trigger": trigger,
        "requested_by": requested_by,
        "status": BackupStatus.RUNNING.value,
        "suspect": False,
        "started_at": _iso(now),
        "prefix": prefix,
        "manifest_key": prefix + MANIFEST_FILE,
        "files": {},
        "removed_fields": {},
        "schema_version": SCHEMA_VERSION,
        "seq": 0,
        "continuation": 0,  # the job message that carries it on (BackupJob.continuation)
    }
    # Recorded with the backup's record: a start whose audit cannot be recorded is not made
    # (it would otherwise hold the connection "running" with no job), and one made is audited.
    started_entry = backup_entry(
        connection_id,
        actor=requested_by,
        action=AuditAction.BACKUP_START,
        outcome="success",
        details={"backup_id": backup_id, "trigger": trigger},
        request_id=request_id,
    )
    audit_writes = services.audit.prepare(org_id, started_entry, now=now)
    writes: list[Operation] = [
        # First: when the caller lost their role, that decides the answer, whatever else fails
        # (a backup already running would otherwise hand them its id).
        *([] if guard is None else [guard]),
        # The connection read above is still there: one deleted meanwhile (alone, or with its
        # org) gets no backup record that nothing would ever remove. Nor does one whose org's
        # deletion, which may have passed the record's place already, is under way.
        Check(CONNECTION_KIND, connection_id),
        unshredded(),
        Create(RUN_KIND, connection_id, attributes={"backup_id": backup_id}, ttl=RUN_TTL),
        Create(
            BACKUP_KIND,
            backup_id,
            attributes=attributes,
            index=backup_index(connection_id, now, backup_id),
        ),
        *audit_writes,
    ]
    # Twice at most: a run item found stale is deleted by running_backup, and the start retried.
    for attempt in range(2):
        try:
            services.table.transact(org_id, writes, now=now)
            break
        except ItemNotFound:  # the guard's member item, or the connection, is gone
            raise NotFound() from None
        except ConditionFailed:
            if is_shredded(services.table, org_id, now=now):
                raise Conflict(BEING_DELETED) from None
            raise Conflict("Your role changed meanwhile; read it again and retry.") from None
        except ItemExists:
            running = running_backup(services, org_id, connection_id, now=now)
            if running is not None:
                return Started(running, new=False)
            if attempt:
                raise Conflict("A backup of this connection just ended; try again.") from None
    try:
        enqueue(
            services, BackupJob(org_id=org_id, connection_id=connection_id, backup_id=backup_id)
        )
    except (ClientError, BotoCoreError):
        _not_queued(services, org_id, connection_id, backup_id, now=now, request_id=request_id)
        raise
    # After the job is queued: however long the audit takes, the backup is not left waiting.
    services.audit.flush_after_commit(org_id, now=now)
    return Started(backup_id, new=True)


def _not_queued(
    services: Services,
    org_id: str,
    connection_id: str,
    backup_id: str,
    *,
    now: datetime,
    request_id: str,
) -> None:
    """The job could not be queued: fail the backup at once (nothing was read or written) and
    free its connection, rather than leave a backup "running" that nothing runs. Best effort:
    a job that did arrive finds the backup failed and skips it."""
    reason = errors.reason_of(errors.NotQueued())
    failed = backup_entry(
        connection_id,
        actor=ACTOR,
        action=AuditAction.BACKUP_FAIL,
        outcome="failure",
        details={"backup_id": backup_id, "reason": reason},
        request_id=request_id,
    )
    update = Update(
        BACKUP_KIND,
        backup_id,
        changes={
            "status": BackupStatus.FAILED.value,
            "failure_reason": reason,
            "finished_at": _iso(now),
            "seq": 1,
        },
        expect={"status": BackupStatus.RUNNING.value, "seq": 0},
    )
    try:
        writes = services.audit.prepare(org_id, failed, now=now)
        services.table.transact(org_id, [update, *writes], now=now)
        services.table.delete(
            org_id, RUN_KIND, connection_id, expect={"backup_id": backup_id}, now=now
        )
    except (TenancyError, AuditError, ClientError, BotoCoreError):
        # The queue's own error is the answer; this one is only logged.
        logger.warning("unqueued backup left running", extra={"backup_id": backup_id})
        return
    services.audit.flush_after_commit(org_id, now=now)


def backup_entry(
    connection_id: str,
    *,
    actor: str,
    action: AuditAction,
    outcome: AuditOutcome,
    details: dict[str, Any],
    request_id: str,
) -> AuditEntry:
    """A backup's audit entry (start, completion, failure)."""
    return AuditEntry(
        actor=actor,
        action=action.value,
        request_id=request_id,
        outcome=outcome,
        target_kind="connection",
        target_id=connection_id,
        details=details,
    )


def enqueue(services: Services, job: BackupJob) -> None:
    """Send the job to the backup queue (StorageFailed-like errors propagate as ClientError)."""
    services.sqs.send_message(
        QueueUrl=services.settings.backup_queue_url,
        MessageBody=json.dumps(job.model_dump(), separators=(",", ":")),
    )


# ---- the dispatcher -------------------------------------------------------------------------


@dataclass
class DispatchReport:
    started: int = 0
    already_running: int = 0
    dropped: int = 0
    lost_race: int = 0
    failed: int = 0
    # Entries whose run now due was their schedule's last (started above, then gone).
    ended: int = 0


def on_schedule(
    services: Services, *, now: datetime, request_id: str, time_left: Callable[[], float]
) -> dict[str, Any]:
    """The dispatcher's tick: the backups that are due, then, in the time left (seconds), the
    audit sweep (entries recorded with their change whose request did not append them)."""
    report = dispatch_due(services, now=now, request_id=request_id)
    swept = services.audit.sweep(now=now, time_left=time_left)
    return {**vars(report), "audit_sweep": asdict(swept)}


def dispatch_due(services: Services, *, now: datetime, request_id: str) -> DispatchReport:
    """Start a backup for every connection whose schedule is due (see the module docstring)."""
    report = DispatchReport()
    for entry in services.schedules.due(now=now):
        try:
            _dispatch_one(services, entry, now=now, request_id=request_id, report=report)
        except Exception as exc:  # noqa: BLE001 - one connection's fault stops no other
            # An outage or a race is expected and mends itself; anything else is a defect that
            # this entry's stored data reaches, for people to look at, while the others still run.
            report.failed += 1
            expected = isinstance(exc, (*_TRANSIENT, ClientError, BotoCoreError, NotFound))
            (logger.warning if expected else logger.exception)(
                "scheduled backup not started",
                extra={
                    "org_id": entry.org_id,
                    "connection_id": entry.connection_id,
                    "error": type(exc).__name__,
                },
            )
    return report


def _dispatch_one(
    services: Services,
    entry: ScheduleEntry,
    *,
    now: datetime,
    request_id: str,
    report: DispatchReport,
) -> None:
    try:
        connection = _connection(services, entry.org_id, entry.connection_id, now=now)
    except NotFound:
        services.schedules.remove(entry.org_id, entry.connection_id, now=now)
        report.dropped += 1
        return
    plan = _plan(services, entry.org_id, now=now)
    try:
        expression = parse_schedule_expression(str(connection["schedule"]))
    except InvalidScheduleExpression:
        # Stored before the parser refused its form: the connection is not backed up on a
        # schedule again until it is given one that parses, so people must hear of it.
        logger.warning(
            "a connection's schedule does not parse; it is no longer scheduled",
            extra={"org_id": entry.org_id, "connection_id": entry.connection_id},
        )
        services.schedules.remove(entry.org_id, entry.connection_id, now=now)
        report.dropped += 1
        return
    next_run = next_run_after(
        expression, anchor=entry.anchor, after=_not_before(entry, plan, now) - _ONE_SECOND
    )
    try:
        if next_run is None:
            services.schedules.end(entry, now=now)
        else:
            services.schedules.advance(entry, next_run=next_run, now=now)
    except (ConditionFailed, ItemNotFound):
        report.lost_race += 1
        return
    try:
        started = start_backup(
            services,
            entry.org_id,
            entry.connection_id,
            trigger="schedule",
            requested_by=SCHEDULER,
            now=now,
            request_id=request_id,
        )
    except _TRANSIENT:
        # Nothing was written (an outage of the start's transaction or of the audit mark
        # before it, or a start that raced a run's end): the run is due again rather than lost
        # until the schedule's next firing. Faults that would recur are not put back.
        with contextlib.suppress(TenancyError):
            services.schedules.restore(entry, moved_to=next_run, now=now)
        raise
    if next_run is None:
        report.ended += 1
    if started.new:
        report.started += 1
    else:
        report.already_running += 1


def _not_before(entry: ScheduleEntry, plan: Plan, now: datetime) -> datetime:
    """The earliest next run: after now, and the plan's minimum interval after the run now
    due (measured from when it was due, so a late dispatcher does not push the schedule)."""
    return max(now + _ONE_SECOND, entry.next_run + plan.min_schedule_interval)


# ---- reading ----------------------------------------------------------------------------------


def _connection(
    services: Services, org_id: str, connection_id: str, *, now: datetime
) -> dict[str, Any]:
    try:
        item = services.table.get(org_id, CONNECTION_KIND, connection_id, now=now)
    except ItemNotFound:
        raise NotFound() from None
    return dict(item.attributes)


def _org(services: Services, org_id: str, *, now: datetime) -> Item:
    try:
        return services.table.get(org_id, ORG_KIND, now=now)
    except ItemNotFound:
        raise NotFound() from None


def _plan(services: Services, org_id: str, *, now: datetime) -> Plan:
    return plan_named(_org(services, org_id, now=now).attributes.get("plan"))
