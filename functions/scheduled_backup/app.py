"""scheduled_backup: backups of each connection's identity-provider configuration.

Two functions share this code (template.yaml):
- BackupDispatcherFunction (`lambda_handler`): the EventBridge schedule (start the backups that
  are due) and `POST /orgs/{org_id}/connections/{connection_id}/backups` (start one now);
- BackupWorkerFunction (`worker_handler`): the backup queue, one job per record, reporting
  partial batch failures so only failed jobs are retried (and dead-lettered after the queue's
  maxReceiveCount);
- BackupDeadLetterFunction (`dead_letter_handler`): the dead-letter queue, where a job lands when
  no attempt could record an end (timeouts, out of memory, crashes): its backup is failed.

Handlers stay thin: parse, one call into `backup_jobs`, a response.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.utilities.typing import LambdaContext
from backup_jobs import runs, worker
from backup_jobs.models import BackupJob, BackupStarted
from backup_jobs.services import Services, services
from pydantic import ValidationError

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.redaction import get_logger
from strongroom.schedules import is_scheduled_invocation
from strongroom.tracing import create_tracer

logger = get_logger(service="scheduled_backup")
tracer = create_tracer("scheduled_backup")
app = create_resolver(logger)

OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]
ConnectionId = Annotated[str, Path(pattern=r"^conn_[a-z2-7]{26}$", max_length=31)]


@app.post("/orgs/<org_id>/connections/<connection_id>/backups", tags=["backups"])
def start_backup(org_id: OrgId, connection_id: ConnectionId) -> tuple[BackupStarted, int]:
    caller = caller_from_event(app.current_event.raw_event)
    started = runs.start_on_demand(
        services(),
        caller,
        org_id,
        connection_id,
        now=_now(),
        request_id=str(app.current_event.request_context.request_id),
    )
    logger.info(
        "backup requested",
        extra={
            "org_id": org_id,
            "connection_id": connection_id,
            "backup_id": started.backup_id,
            "new": started.new,
        },
    )
    return BackupStarted(backup_id=started.backup_id), 202


def _now() -> datetime:
    return datetime.now(UTC)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The HTTP route, or the dispatcher's schedule."""
    if is_scheduled_invocation(event):
        report = runs.on_schedule(
            services(),
            now=_now(),
            request_id=context.aws_request_id,
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
        )
        logger.info("dispatch done", extra={"report": report})
        return report
    return handle_request(app, event, context)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def worker_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Backup jobs from the queue; failed ones are reported for retry."""
    built = services()

    def run(job: BackupJob, record: dict[str, Any]) -> worker.Outcome:
        budget = worker.Budget(
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
            reserve_seconds=worker.RESERVE_SECONDS,
            part_size=worker.PART_SIZE,
        )
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        return worker.run_job(
            built, job, budget=budget, receive_count=receives, request_id=context.aws_request_id
        )

    return _each_job(event, built, run, queue="backup")


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def dead_letter_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Dead-lettered backup jobs: their backups are marked failed; AWS trouble is retried."""
    built = services()

    def abandon(job: BackupJob, _record: dict[str, Any]) -> worker.Outcome:
        outcome = worker.abandon(built, job, now=_now(), request_id=context.aws_request_id)
        if outcome.status == "failed":
            built.metrics.add_metric(name="LostBackupJobs", unit="Count", value=1)
        return outcome

    return _each_job(event, built, abandon, queue="dead_letter")


def _each_job(
    event: dict[str, Any],
    built: Services,
    step: Callable[[BackupJob, dict[str, Any]], worker.Outcome],
    *,
    queue: str,
) -> dict[str, Any]:
    """One job per SQS record. A malformed one is dropped (it cannot become valid, and its body
    is not logged); any failure of one job is reported so that the queue retries it alone."""
    failures = []
    try:
        for record in event.get("Records", []):
            message_id = record.get("messageId", "")
            try:
                job = BackupJob.model_validate_json(record.get("body", ""))
            except ValidationError:
                logger.error(
                    "malformed job dropped", extra={"queue": queue, "message_id": message_id}
                )
                continue
            try:
                outcome = step(job, record)
            except Exception as exc:  # noqa: BLE001 - any failure of one job is retried alone
                logger.warning(
                    "job will be retried",
                    extra={"queue": queue, "backup_id": job.backup_id, "error": type(exc).__name__},
                )
                failures.append({"itemIdentifier": message_id})
                continue
            logger.info(
                "job done",
                extra={"queue": queue, "backup_id": job.backup_id, "outcome": outcome.status},
            )
    finally:
        built.metrics.flush_metrics()
    return {"batchItemFailures": failures}
