"""The backup worker: one job from the queue, run until the backup is complete, failed, or
checkpointed to continue in the next invocation.

Each resource type is streamed to its own file, `{"resource": "<name>", "items": [...]}`, as a
multipart upload: items are written as they arrive (an item that may hold a secret field is
serialised again without it; every other item is kept exactly as Okta sent it) and a part is
sent whenever the buffer passes `part_size`, always at a page boundary. Items of per-parent
resources (group members, app users, policy rules...) are
`{"parent": {<path parameters>}, "item": {...}}`; parents are read back from their own file.

The resources are read in lanes (`okta.OKTA_LANES`, split by rate-limit bucket), side by side,
each on a thread of its own with its own reader and rate gate; within a lane, one resource after
another. S3 work runs on each lane's background thread (`objects.BackgroundWrites`) while its
reading goes on: a part uploads while the next one fills, and a finished file is completed and
read back while the next resource is read. At most one part per lane is in flight, so memory
stays at two parts plus one page per lane. A file goes into the record's `files` only once
verified; a part counts for a checkpoint only once stored; every way out of a run (checkpoint,
failure, the end) first waits for every lane and its background.

Checkpoint: when less than `reserve_seconds` are left, every lane stops at its next page and the
worker records where each lane's last part ended (resource, upload id and parts so far, which
parent, the next page's URL as the provider gave it, items so far) on the backup's record,
queues the job again and returns. The next invocation continues the same uploads from there,
re-reading any pages after those parts. Part boundaries depend only on the content, so an
interrupted run writes the same bytes as an uninterrupted one. An upload that is gone when it is
continued (completed by an invocation that then lost its checkpoint, or aborted) is started again
from its file's first page (`_write_file`). The checkpoint also holds each listing's `LinkTrail`,
so next links that lead back to a page already read fail the backup even across invocations.
An invocation always makes progress (a part or a file) before it checkpoints. A lane that fails
stops the others the same way, and the failure is what the run reports. A request's retries
never wait past half the reserve (`Budget.retries_end`): a provider that asks for a longer wait
(a 429 from another client spending the same bucket) checkpoints the run instead.

Every file is read back and checked before the manifest is written, and the manifest before the
record is marked complete, in one conditional update: a failure anywhere marks the backup failed
with a fixed reason (`exceptions.reason_of`) and nothing is ever marked complete by halves.
Transient failures (provider outage, S3/DynamoDB trouble) save the last checkpoint and go back to
the queue, which retries up to its maxReceiveCount; the last attempt marks the backup failed, as
it does for a failure nobody expected (`internal_error`).

One message carries a backup at a time: the record's `continuation` names it, a checkpoint moves
it on to the message it queues, and any other delivery is skipped. One invocation runs a step at a
time: it claims the step on the record (`_claim`) before it reads or writes anything, so a second
delivery of the same message, or a duplicate of it, does nothing. When that message is
dead-lettered (every attempt timed out, ran out of memory or crashed, so no attempt could record
anything), `abandon` fails the backup (`worker_lost`) so it never stays "running" for ever.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from backup_jobs import exceptions as errors
from backup_jobs.models import BackupJob
from backup_jobs.objects import (
    BackgroundWrites,
    BackupObjects,
    PartRecord,
    StoredFile,
    abort_upload,
)
from backup_jobs.okta import (
    OKTA_LANES,
    OKTA_RESOURCES,
    SECRET_FIELDS,
    LinkTrail,
    OktaReader,
    Page,
    PagesAhead,
    Parameters,
    RateGate,
    ResourceSpec,
    first_url,
    parent_parameters,
    without_secrets,
)
from backup_jobs.runs import ACTOR, RUN_KIND, RUN_TTL, backup_entry, enqueue
from backup_jobs.services import Services
from strongroom.audit import AuditError
from strongroom.audit.events import AuditAction, AuditEntry
from strongroom.audit.events import Outcome as AuditOutcome
from strongroom.backups import (
    BACKUP_KIND,
    BackupStatus,
    FileEntry,
    Manifest,
    backup_listing,
    object_key,
)
from strongroom.crypto.exceptions import CryptoError
from strongroom.oauth import (
    AccessToken,
    ConnectionUnusable,
    OAuthError,
    api_base_url,
)
from strongroom.oauth import NeedsReauthorization as TokenNeedsReauthorization
from strongroom.redaction import get_logger
from strongroom.tenancy import ConditionFailed, ItemNotFound, TenancyError, Update

# The queue's RedrivePolicy maxReceiveCount (template.yaml): the last attempt fails the backup.
MAX_RECEIVES: Final = 3
# S3 parts are 5 MiB at least (but the last). Module settings, so that tests can shrink them.
PART_SIZE = 8 * 1024 * 1024
RESERVE_SECONDS = 120.0  # one rate-limit window and a part upload to spare
# The next page is read ahead only after a page this large: a smaller one is parsed and written
# in less time than it takes to hand a request to another thread and back.
READ_AHEAD_BYTES = 16 * 1024
# A sharp drop: a resource that held at least SUSPECT_BASELINE items now holds under half.
SUSPECT_BASELINE: Final = 10
SUSPECT_RATIO: Final = 0.5
_TOKEN_MARGIN_SECONDS = 120
# How often a step looks its connection up again while its token is still good (an API token
# never expires): a connection deleted meanwhile stops being used within this.
_CONNECTION_RECHECK_SECONDS = 60
# A claimed step is its invocation's until that invocation's end (Lambda stops it there) and this
# margin for clocks: long before the queue's visibility timeout (5,400 s, template.yaml) brings a
# dead invocation's message back, so that its retry always finds the claim run out.
LEASE_MARGIN: Final = timedelta(seconds=60)

logger = get_logger(service="scheduled_backup")


@dataclass
class Budget:
    """How the worker spends its invocation: seconds left, and how much to keep in reserve."""

    time_left: Callable[[], float]
    reserve_seconds: float = RESERVE_SECONDS
    part_size: int = PART_SIZE
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def retries_end(self) -> float:
        """When a request's retries must end (epoch seconds): half the reserve before the end,
        the other half left to checkpoint (a request that waited longer would run into it)."""
        return self.clock().timestamp() + self.time_left() - self.reserve_seconds / 2


@dataclass
class Checkpoint:
    resource: str
    upload_id: str
    parts: list[PartRecord]
    parent_index: int
    url: str | None
    items: int
    removed: list[str]
    trail: LinkTrail = field(default_factory=LinkTrail)  # the current listing's links so far

    def document(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "upload_id": self.upload_id,
            "parts": [part.document() for part in self.parts],
            "parent_index": self.parent_index,
            "url": self.url,
            "items": self.items,
            "removed": list(self.removed),
            "trail": self.trail.document(),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Checkpoint:
        return cls(
            resource=str(document["resource"]),
            upload_id=str(document["upload_id"]),
            parts=[PartRecord.from_document(p) for p in document.get("parts", [])],
            parent_index=int(document["parent_index"]),
            url=document.get("url"),
            items=int(document["items"]),
            removed=[str(path) for path in document.get("removed", [])],
            trail=LinkTrail.from_document(document.get("trail")),
        )


@dataclass
class Outcome:
    status: str  # complete, failed, checkpointed, skipped
    reason: str | None = None
    suspect: bool = False


@dataclass
class _PendingFile:
    """A file handed to the background writer: completed, read back and verified there."""

    name: str
    items: int
    removed: list[str]
    stored: Future[StoredFile]


@dataclass
class _SentPart:
    """A part in flight, and where its file stands once the part is stored."""

    record: Future[PartRecord]
    after: Checkpoint


@dataclass
class _Lane:
    """One lane of resources, read one after another on a thread of its own."""

    specs: tuple[ResourceSpec, ...]
    reader: OktaReader
    writes: BackgroundWrites
    pending_files: list[_PendingFile] = field(default_factory=list)  # in the order written
    in_flight: Checkpoint | None = None  # the resource being written, as of its last stored part
    done: bool = False  # every resource of the lane written


@dataclass
class _Run:
    """One invocation's view of a running backup."""

    job: BackupJob
    record: dict[str, Any]
    seq: int
    files: dict[str, dict[str, Any]]  # verified files only
    checkpoints: dict[str, Checkpoint]  # by resource: where the last invocation stopped
    request_id: str
    continuation: int = 0  # the message that carries this backup on
    objects: BackupObjects | None = None
    lanes: list[_Lane] = field(default_factory=list)
    progress: bool = False  # a part or a file written in this invocation
    stop: threading.Event = field(default_factory=threading.Event)  # every lane stops
    failures: list[BaseException] = field(default_factory=list)  # in the order they happened

    def nap(self, seconds: float) -> None:
        """Sleep; if the run stops meanwhile, stop the lane at once (`_Stopped`)."""
        if self.stop.wait(seconds):
            raise _Stopped


class _Stopped(Exception):  # a signal between a lane's reader and its loop
    """A lane's wait for its rate-limit window was cut short: the run is stopping."""


class StepHeld(Exception):  # a state, as the queue sees it: never a backup's failure reason
    """Another invocation holds the backup's step (`_claim`) and its claim has not run out: the
    message goes back to the queue, which brings it again once it has."""


def run_job(
    services: Services,
    job: BackupJob,
    *,
    budget: Budget,
    receive_count: int,
    request_id: str,
) -> Outcome:
    """Run (or continue) one backup. Raises only for a transient failure that the queue should
    retry (or StepHeld); every other end is recorded on the backup and returned."""
    run = _claim(services, job, request_id=request_id, budget=budget, receive_count=receive_count)
    if run is None:
        return Outcome("skipped")  # a duplicate delivery, or a message a continuation replaced
    try:
        try:
            return _run(services, run, budget)
        except ConditionFailed:
            raise
        except (TenancyError, ClientError, BotoCoreError):
            # DynamoDB, SQS or S3 outside the file writer (which maps its own).
            raise errors.StorageFailed("AWS failed during the backup") from None
    except errors.BackupError as error:
        if isinstance(error, errors.TRANSIENT) and receive_count < MAX_RECEIVES:
            _save_for_retry(services, run, budget)
            raise
        return _fail(services, run, errors.reason_of(error), now=budget.clock())
    except ConditionFailed:
        # The backup moved on without this invocation (failed meanwhile): not its to record.
        return Outcome("skipped")
    except Exception:
        # A defect: retried like an outage, but the last attempt records it rather than
        # leaving the backup running until the queue gives up.
        if receive_count < MAX_RECEIVES:
            with contextlib.suppress(TenancyError):
                _give_up_claim(services, run, budget.clock())  # the retry may claim it at once
            raise
        logger.exception("backup job failed unexpectedly", extra={"backup_id": job.backup_id})
        return _fail(services, run, errors.reason_of(errors.InternalError()), now=budget.clock())


def abandon(services: Services, job: BackupJob, *, now: datetime, request_id: str) -> Outcome:
    """A job the queue dead-lettered: fail its backup (`worker_lost`) and abort the uploads its
    last checkpoint left open, unless the backup has ended or another message carries it on.
    Raises only for a transient AWS failure, or StepHeld, for the dead-letter queue to retry."""
    try:
        run = _running(services, job, request_id=request_id, now=now)
    except (TenancyError, ClientError, BotoCoreError):
        raise errors.StorageFailed("the backup record could not be read") from None
    if run is None:
        return Outcome("skipped")
    if _held(run, now):
        # Whoever holds it is alive, or its claim runs out soon (an invocation that died
        # without giving it up): failed then, unless it has moved the backup on meanwhile.
        raise StepHeld("another invocation holds the backup's step")
    return _fail(services, run, errors.reason_of(errors.WorkerLost()), now=now)


def _claim(
    services: Services, job: BackupJob, *, request_id: str, budget: Budget, receive_count: int
) -> _Run | None:
    """The backup `job` carries on (`_running`), claimed for this invocation before it reads the
    provider or writes anything; None if another invocation claims it first or holds it.

    Two deliveries of one step happen (SQS delivers at least once; a SendMessage retried after
    a timeout queues the same continuation twice): one claim succeeds, a conditional update of
    the `seq` both read; the other does nothing. The claim lasts until this invocation's end
    (`lease_until`): every way out of a step that returns gives it up, and one that dies leaves it
    to run out before the queue hands its message to another attempt.

    A step held by another invocation drops a message on its first delivery (a second message of
    the same step), but not one delivered again (StepHeld): it may be the holder's own message,
    back before its claim ran out (its last attempt could not give it up) or handed out twice,
    and deleting it would leave the step with no message should the holder fail and need it.
    """
    now = budget.clock()
    lease_until = now + timedelta(seconds=budget.time_left()) + LEASE_MARGIN
    # Twice: a claim lost to one made (and perhaps given up again) since the read is read anew.
    for _ in range(2):
        run = _running(services, job, request_id=request_id, now=now)
        if run is None:
            return None  # ended, gone, or carried on by another message
        if _held(run, now):
            if receive_count > 1:
                raise StepHeld("another invocation holds the backup's step")
            logger.info("backup step run by another invocation", extra={"backup_id": job.backup_id})
            return None
        try:
            services.table.update(
                job.org_id,
                BACKUP_KIND,
                job.backup_id,
                changes={"seq": run.seq + 1, "lease_until": _iso(lease_until)},
                expect={
                    "status": BackupStatus.RUNNING.value,
                    "seq": run.seq,
                    "continuation": job.continuation,
                },
                now=now,
            )
        except (ConditionFailed, ItemNotFound):
            continue
        run.seq += 1
        _keep_run_item(services, job, now)
        return run
    # Lost twice: a message delivered again is kept (it may be the only one left to carry the
    # step); a first delivery is a second message of it.
    if receive_count > 1:
        raise StepHeld("the backup's step kept changing hands")
    logger.info("backup step claimed by another invocation", extra={"backup_id": job.backup_id})
    return None


def _keep_run_item(services: Services, job: BackupJob, now: datetime) -> None:
    """Move the connection's run item (`runs.RUN_KIND`) to expire `RUN_TTL` after this step's
    claim, so that a backup outlasting its first TTL keeps the connection to itself. Best
    effort: the step goes on whatever happens here, and a later claim tries again."""
    try:
        services.table.update(
            job.org_id,
            RUN_KIND,
            job.connection_id,
            expect={"backup_id": job.backup_id},
            ttl=RUN_TTL,
            now=now,
        )
        return
    except ItemNotFound:
        pass  # expired (it is deleted only once the backup has ended): taken back below
    except TenancyError:
        logger.warning("backup run item not kept", extra={"backup_id": job.backup_id})
        return
    try:
        services.table.create(
            job.org_id,
            RUN_KIND,
            job.connection_id,
            attributes={"backup_id": job.backup_id},
            ttl=RUN_TTL,
            now=now,
        )
    except TenancyError:
        # ItemExists: a start took the connection meanwhile; that backup runs beside this one.
        logger.warning("backup run item not kept", extra={"backup_id": job.backup_id})


def _give_up_claim(services: Services, run: _Run, now: datetime) -> None:
    """End this invocation's claim, changing nothing else (TenancyError if it cannot)."""
    services.table.update(
        run.job.org_id,
        BACKUP_KIND,
        run.job.backup_id,
        changes={"seq": run.seq + 1},
        remove=["lease_until"],
        expect={"status": BackupStatus.RUNNING.value, "seq": run.seq},
        now=now,
    )
    run.seq += 1


def _held(run: _Run, now: datetime) -> bool:
    """Whether another invocation's claim on the step (`_claim`) has not run out yet."""
    lease_until = run.record.get("lease_until")
    return lease_until is not None and _parse(str(lease_until)) > now


def _running(services: Services, job: BackupJob, *, request_id: str, now: datetime) -> _Run | None:
    """The backup `job` carries on, or None: gone, ended, or carried by another message."""
    try:
        item = services.table.get(job.org_id, BACKUP_KIND, job.backup_id, now=now)
    except ItemNotFound:
        return None
    record = dict(item.attributes)
    if (
        record.get("status") != BackupStatus.RUNNING.value
        or record.get("connection_id") != job.connection_id
        or int(record.get("continuation", 0)) != job.continuation
    ):
        return None
    checkpoints = [Checkpoint.from_document(dict(c)) for c in record.get("checkpoints", [])]
    return _Run(
        job=job,
        record=record,
        seq=int(record.get("seq", 0)),
        files={name: dict(entry) for name, entry in dict(record.get("files", {})).items()},
        checkpoints={checkpoint.resource: checkpoint for checkpoint in checkpoints},
        request_id=request_id,
        continuation=job.continuation,
    )


def _run(services: Services, run: _Run, budget: Budget) -> Outcome:
    job = run.job
    now = budget.clock()
    try:
        connection = services.tokens.connection(job.org_id, job.connection_id, now=now)
    except ConnectionUnusable:
        raise errors.ConnectionGone("the connection is gone") from None
    if connection.provider != "okta":
        raise errors.UnsupportedProvider("no reader for this provider")
    try:
        kms_key_arn = services.keyrings.kms_key_arn(job.org_id)
    except CryptoError:
        raise errors.StorageFailed("the org's key could not be read") from None
    try:
        base_url = api_base_url(connection, services.settings.dev_allow_hosts)
    except ConnectionUnusable:
        raise errors.ProviderRefused("the connection names no usable domain") from None
    started_at = _parse(str(run.record["started_at"]))
    retain_until = started_at + timedelta(days=services.settings.backup_retention_days)
    run.objects = BackupObjects(
        s3=services.s3,
        bucket=services.settings.backup_bucket,
        kms_key_arn=kms_key_arn,
        retain_until=retain_until,
    )
    credential = _Credential(services, job, run.request_id, budget)
    credential.authorization()  # fail before writing anything if there is no credential
    for specs in OKTA_LANES:
        reader = OktaReader(
            outbound=services.provider,
            base_url=base_url,
            authorization=credential.authorization,
            gate=RateGate(),
            sleep=run.nap,  # a lane waiting for its window wakes when the run stops
            deadline=budget.retries_end,
        )
        run.lanes.append(_Lane(specs, reader, BackgroundWrites(run.objects)))
    try:
        with ThreadPoolExecutor(len(run.lanes), thread_name_prefix="backup-lane") as lanes:
            wait([lanes.submit(_read_lane, run, lane, budget) for lane in run.lanes])
    finally:
        for lane in run.lanes:
            lane.writes.close()
    if run.failures:
        raise run.failures[0]
    if not all(lane.done for lane in run.lanes):
        _save_checkpoint(services, run, budget)
        return Outcome("checkpointed")
    return _finish(services, run, budget)


def _read_lane(run: _Run, lane: _Lane, budget: Budget) -> None:
    """Write the lane's resources, until the last (`lane.done`) or until the run stops: then
    `lane.in_flight` names where its unfinished file stands, if it has one. A failure stops the
    run, goes into `run.failures`, and leaves only verified files behind."""
    try:
        lane.done = _write_lane(run, lane, budget)
        _collect_files(run, lane)
    except BaseException as error:  # noqa: BLE001 - the run's thread raises it (`_run`)
        run.failures.append(error)
        run.stop.set()
        _keep_verified_files(run, lane)  # for the retry; nothing is left running


def _write_lane(run: _Run, lane: _Lane, budget: Budget) -> bool:
    """True once every resource of the lane is written; False if the run stops first."""
    try:
        for spec in lane.specs:
            if spec.name in run.files:
                continue
            if _stopping(run, budget):
                return False
            if _write_file(run, lane, spec, budget) is not None:
                return False  # stopped mid-file
            lane.in_flight = None
            run.progress = True
    except _Stopped:
        return False  # its file stands where its last stored part ended (`lane.in_flight`)
    except errors.ProviderWaitTooLong:
        if not run.progress:
            raise  # nothing to checkpoint: retried through the queue as an outage
        run.stop.set()  # out of time waiting on the provider: the run checkpoints
        return False
    return True


def _stopping(run: _Run, budget: Budget) -> bool:
    """Whether the run stops here: another lane stopped it, or time is short (after progress)."""
    if not run.stop.is_set() and run.progress and budget.time_left() < budget.reserve_seconds:
        run.stop.set()
    return run.stop.is_set()


def _checkpoints(run: _Run) -> list[Checkpoint]:
    """Every unfinished file: where the lanes stand, and checkpoints no lane took up."""
    in_flight = [lane.in_flight for lane in run.lanes if lane.in_flight is not None]
    return [*run.checkpoints.values(), *in_flight]


# ---- one file ---------------------------------------------------------------------------------


def _write_file(run: _Run, lane: _Lane, spec: ResourceSpec, budget: Budget) -> Checkpoint | None:
    """`_write_resource`, from the resource's checkpoint if it has one. A checkpoint whose upload
    is gone cannot be continued: an invocation completed it and then lost its own checkpoint
    (the save failed, or it died), or it was aborted. A completed object cannot be taken instead
    either, as nothing records the hashes of its parts after the checkpoint's, nor its items: the
    file starts again from its first page, in a new upload, and is verified as any other."""
    resume = run.checkpoints.get(spec.name)
    try:
        return _write_resource(run, lane, spec, resume, budget)
    except errors.UploadGone:
        if resume is None:
            raise  # the upload this invocation started: storage trouble, retried as such
        logger.info("a resumed upload is gone: its file starts again", extra={"file": spec.name})
        lane.in_flight = None  # nothing of the gone upload may go into a checkpoint
        return _write_resource(run, lane, spec, None, budget)


def _write_resource(
    run: _Run,
    lane: _Lane,
    spec: ResourceSpec,
    resume: Checkpoint | None,
    budget: Budget,
) -> Checkpoint | None:
    """Read one resource into its file. None once the file is handed to the lane's background
    writer (`_collect_files` moves it into `run.files` once verified); a Checkpoint when the run
    stops, with every file of the lane written so far verified and every part it names stored."""
    writes = lane.writes
    key = object_key(str(run.record["prefix"]), spec.name)
    parents = parent_parameters(spec, _parent_elements(run, lane, spec))
    state, removed, buffer = _open_file(run, lane, spec, key, resume)
    parented = spec.parents is not None or bool(spec.fixed_parents)
    sent: _SentPart | None = None
    try:
        with PagesAhead(lane.reader) as pages:
            while state.parent_index < len(parents):
                _collect_files(run, lane, wait=False)  # a failure in the background stops it
                if _stopping(run, budget):
                    _confirm(lane, state, sent)
                    sent = None
                    _collect_files(run, lane)
                    return lane.in_flight
                parameters = parents[state.parent_index]
                page = _read_page(pages, spec, parents, state)
                texts = _item_texts(spec, page, removed, parameters if parented else None)
                if texts:
                    buffer += _utf8(("," if state.items else "") + ",".join(texts))
                    state.items += len(texts)
                if len(buffer) < budget.part_size:
                    continue
                _confirm(lane, state, sent)  # at most one part in flight
                state.removed = sorted(removed)
                sent = _send_part(writes, key, state, buffer)
                buffer.clear()
                run.progress = True
        buffer += b"]}"
        _confirm(lane, state, sent)
        sent = None
        last = writes.upload_part(key, state.upload_id, len(state.parts) + 1, bytes(buffer))
        if resume is not None and state.parts == resume.parts:
            # No part of this invocation is stored: the upload may be gone (`_write_file`),
            # and it must be known before the file is handed on to be completed.
            last.result()
        stored = writes.finish(key, state.upload_id, [*state.parts, last])
    except BaseException:
        # Nothing may still be writing when the run fails or retries; a part that did get
        # stored moves the checkpoint on (less to read again).
        writes.drain()
        with contextlib.suppress(errors.BackupError):
            _confirm(lane, state, sent)
        raise
    lane.pending_files.append(_PendingFile(spec.name, state.items, sorted(removed), stored))
    return None


def _read_page(
    pages: PagesAhead, spec: ResourceSpec, parents: Sequence[Parameters], state: Checkpoint
) -> Page:
    """The page where `state` stands; `state` moves past it, and the page after is asked for
    ahead, to be read while this one is parsed and written."""
    parameters = parents[state.parent_index]
    url = state.url or first_url(pages.reader.base_url, spec, parameters)
    answer = pages.fetch(url, spec)
    if answer.next_url is not None:
        state.trail.follow(url, answer.next_url)  # a cycle, or no end, fails the backup here
    state.url = answer.next_url
    if state.url is None:
        state.parent_index += 1
        state.trail = LinkTrail()  # the next parent's listing
    if state.parent_index < len(parents) and len(answer.body) >= READ_AHEAD_BYTES:
        following = parents[state.parent_index]
        pages.ask_ahead(state.url or first_url(pages.reader.base_url, spec, following), spec)
    return answer.parse(spec)


def _open_file(
    run: _Run, lane: _Lane, spec: ResourceSpec, key: str, resume: Checkpoint | None
) -> tuple[Checkpoint, set[str], bytearray]:
    """Where writing the file starts (a new upload, or the checkpoint's), the secret paths
    removed so far, and the buffer of the next part."""
    if resume is not None:
        state = Checkpoint.from_document(resume.document())
    else:
        state = Checkpoint(spec.name, _objects(run).start_upload(key), [], 0, None, 0, [])
    lane.in_flight = Checkpoint.from_document(state.document())
    run.checkpoints.pop(spec.name, None)  # the lane's from now on
    removed = set(state.removed)
    buffer = bytearray()
    if not state.parts:
        # A checkpoint always ends at a part boundary; with no part yet, start from the top.
        state.parent_index, state.url, state.items, removed = 0, None, 0, set()
        state.trail = LinkTrail()
        buffer += b'{"resource":' + json.dumps(spec.name).encode() + b',"items":['
    return state, removed, buffer


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _encode(value: Any) -> str:
    try:
        return _ENCODER.encode(value)
    except ValueError:  # a number too large for a float: not writable as JSON once parsed
        raise errors.ProviderResponseInvalid("an item holds a number out of range") from None


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (an escaped \ud800) in a string
        raise errors.ProviderResponseInvalid("an item holds an unpaired surrogate") from None


# The last name of each secret path, as JSON text. An item whose text holds none of these and no
# escape (`\u0076alue` is "value" too) has no member of that name at any depth, duplicate keys
# included: it holds no secret field and may be written as sent.
_SECRET_NAMES: Final = {
    resource: tuple(json.dumps(path.rsplit(".", 1)[-1]) for path in paths)
    for resource, paths in SECRET_FIELDS.items()
}


def _item_texts(
    spec: ResourceSpec, page: Page, removed: set[str], parent: dict[str, str] | None
) -> list[str]:
    """Each element of `page` as JSON text, wrapped with its `parent` if it has one. An item is
    written as the provider sent it unless it may hold a secret field: then the parsed item,
    without its secret fields, is written again (the paths it held go into `removed`)."""
    names = _SECRET_NAMES.get(spec.name, ())
    if page.texts is not None and not names:
        texts = page.texts
    else:
        sent = page.texts if page.texts is not None else [None] * len(page.items)
        texts = []
        for item, text in zip(page.items, sent, strict=True):
            if text is not None and "\\" not in text and not any(n in text for n in names):
                texts.append(text)
                continue
            clean, paths = without_secrets(spec.name, item)
            removed.update(paths)
            texts.append(_encode(clean))
    if parent is None:
        return texts
    head = '{"parent":' + _encode(parent) + ',"item":'
    return [head + text + "}" for text in texts]


def _send_part(
    writes: BackgroundWrites, key: str, state: Checkpoint, buffer: bytearray
) -> _SentPart:
    """Hand the buffer to the background writer as the next part (after the one in flight)."""
    after = Checkpoint.from_document(state.document())
    number = len(state.parts) + 1
    return _SentPart(writes.upload_part(key, state.upload_id, number, bytes(buffer)), after)


def _confirm(lane: _Lane, state: Checkpoint, sent: _SentPart | None) -> None:
    """Wait for the part in flight (StorageFailed if it failed); the checkpoint moves past it."""
    if sent is None:
        return
    record = sent.record.result()
    state.parts.append(record)
    sent.after.parts.append(record)
    lane.in_flight = sent.after


def _collect_files(run: _Run, lane: _Lane, *, wait: bool = True) -> None:
    """Move the lane's verified files from its background writer into `run.files`, in order,
    and raise the first failure (StorageFailed, VerificationFailed). wait=False: only those
    already done."""
    while lane.pending_files:
        pending = lane.pending_files[0]
        if not wait and not pending.stored.done():
            return
        stored = pending.stored.result()
        lane.pending_files.pop(0)
        run.files[pending.name] = {
            "key": stored.key,
            "version_id": stored.version_id,
            "sha256": stored.sha256,
            "bytes": stored.size,
            "items": pending.items,
            "removed": pending.removed,
        }


def _keep_verified_files(run: _Run, lane: _Lane) -> None:
    """On the way out of a failed lane: wait for its background, keep what it verified."""
    lane.writes.drain()
    verified = [p for p in lane.pending_files if p.stored.exception() is None]
    failed = len(lane.pending_files) - len(verified)
    lane.pending_files = verified
    _collect_files(run, lane)
    if failed:
        logger.info("a backup file was not verified", extra={"files": failed})


def _parent_elements(run: _Run, lane: _Lane, spec: ResourceSpec) -> list[Any] | None:
    """The items of the parent file, read back from S3. Not kept: a child needs only their ids,
    and thousands of groups or apps, parsed, would stay in memory for the lane's whole run."""
    if spec.parents is None:
        return None
    source = spec.parents.source  # always in the same lane, and written before
    if source not in run.files:
        _collect_files(run, lane)  # the parent file was just written: wait until verified
    entry = run.files[source]
    document = _objects(run).read_json(str(entry["key"]), str(entry["version_id"]))
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise errors.VerificationFailed("a parent file has no items")
    return items


# ---- the end ------------------------------------------------------------------------------------


def _finish(services: Services, run: _Run, budget: Budget) -> Outcome:
    objects = _objects(run)
    job, record = run.job, run.record
    now = budget.clock()
    # A connection deleted while the run read on (its step began before the deletion) ends the
    # backup as one deleted while queued does: not complete, and no manifest written for it.
    try:
        services.tokens.connection(job.org_id, job.connection_id, now=now)
    except ConnectionUnusable:
        raise errors.ConnectionGone("the connection was deleted during the backup") from None
    # Listed by resource name, as signed_url_issuer rebuilds the manifest from the record.
    files = [
        FileEntry(
            resource=name,
            key=str(run.files[name]["key"]),
            sha256=str(run.files[name]["sha256"]),
            bytes=int(run.files[name]["bytes"]),
            items=int(run.files[name]["items"]),
        )
        for name in sorted(spec.name for spec in OKTA_RESOURCES)
    ]
    removed_fields = {
        name: list(entry["removed"]) for name, entry in run.files.items() if entry.get("removed")
    }
    manifest = Manifest(
        backup_id=job.backup_id,
        org_id=job.org_id,
        connection_id=job.connection_id,
        provider=str(record["provider"]),
        started_at=str(record["started_at"]),
        finished_at=_iso(now),
        files=files,
        removed_fields=dict(sorted(removed_fields.items())),
    )
    body = manifest.model_dump_json().encode("utf-8")
    manifest_key = str(record["manifest_key"])
    manifest_version = objects.put(manifest_key, body)
    manifest_sha256 = objects.verify_whole(manifest_key, manifest_version, body)
    suspect_resources = _sharp_drops(services, run, now)
    total = sum(int(entry["items"]) for entry in run.files.values())
    completed = _entry(
        run,
        AuditAction.BACKUP_COMPLETE,
        "success",
        {
            "backup_id": job.backup_id,
            "files": len(files),
            "items": total,
            "suspect": bool(suspect_resources),
        },
    )
    try:
        _settle(
            services,
            run,
            completed,
            now=now,
            changes={
                "status": BackupStatus.COMPLETE.value,
                "finished_at": _iso(now),
                "files": {
                    name: {k: v for k, v in entry.items() if k != "removed"}
                    for name, entry in run.files.items()
                },
                "removed_fields": removed_fields,
                "manifest_version_id": manifest_version,
                "manifest_sha256": manifest_sha256,
                "suspect": bool(suspect_resources),
                "suspect_resources": suspect_resources,
                "seq": run.seq + 1,
            },
        )
    except ItemNotFound:
        return Outcome("skipped")  # the org or the record went away meanwhile
    except TenancyError as error:
        if isinstance(error, ConditionFailed):
            raise
        raise errors.StorageFailed("the backup record could not be completed") from None
    _release(services, run, now)
    services.audit.flush_after_commit(job.org_id, now=now)
    if suspect_resources:
        services.metrics.add_metric(name="SuspectBackups", unit="Count", value=1)
    logger.info(
        "backup complete",
        extra={
            "org_id": job.org_id,
            "backup_id": job.backup_id,
            "items": total,
            "suspect": bool(suspect_resources),
        },
    )
    return Outcome("complete", suspect=bool(suspect_resources))


def _sharp_drops(services: Services, run: _Run, now: datetime) -> list[str]:
    """Resources whose item count fell sharply against the previous complete backup."""
    job = run.job
    cursor = None
    for _ in range(10):
        page = services.table.query_index(
            job.org_id,
            backup_listing(job.connection_id),
            now=now,
            limit=25,
            cursor=cursor,
            newest_first=True,
        )
        for item in page.items:
            if item.item_id == job.backup_id:
                continue
            if item.attributes.get("status") == BackupStatus.COMPLETE.value:
                before = dict(item.attributes.get("files", {}))
                return sorted(
                    name
                    for name, entry in run.files.items()
                    if name in before
                    and int(before[name]["items"]) >= SUSPECT_BASELINE
                    and int(entry["items"]) < int(before[name]["items"]) * SUSPECT_RATIO
                )
        cursor = page.cursor
        if cursor is None:
            break
    return []


def _fail(services: Services, run: _Run, reason: str, *, now: datetime) -> Outcome:
    job = run.job
    for checkpoint in _checkpoints(run):
        key = object_key(str(run.record["prefix"]), checkpoint.resource)
        abort_upload(services.s3, services.settings.backup_bucket, key, checkpoint.upload_id)
    failed = _entry(
        run, AuditAction.BACKUP_FAIL, "failure", {"backup_id": job.backup_id, "reason": reason}
    )
    try:
        _settle(
            services,
            run,
            failed,
            now=now,
            changes={
                "status": BackupStatus.FAILED.value,
                "failure_reason": reason,
                "finished_at": _iso(now),
                "seq": run.seq + 1,
            },
        )
    except (ConditionFailed, ItemNotFound):
        return Outcome("skipped")
    _release(services, run, now)
    services.audit.flush_after_commit(job.org_id, now=now)
    logger.warning(
        "backup failed",
        extra={"org_id": job.org_id, "backup_id": job.backup_id, "reason": reason},
    )
    return Outcome("failed", reason=reason)


def _save_checkpoint(services: Services, run: _Run, budget: Budget) -> None:
    """Record the checkpoints and hand the backup on to a new message (see `BackupJob`)."""
    checkpoints = _checkpoints(run)
    following = run.continuation + 1
    _store_progress(services, run, checkpoints, budget.clock(), continuation=following)
    try:
        enqueue(services, run.job.model_copy(update={"continuation": following}))
    except (ClientError, BotoCoreError):
        # Not sent (or not known to be): hand the backup back to this job's message, which the
        # queue retries; a continuation that did arrive is then skipped.
        with contextlib.suppress(errors.BackupError, TenancyError):
            _store_progress(
                services, run, checkpoints, budget.clock(), continuation=run.continuation
            )
        raise errors.StorageFailed("the continuation could not be queued") from None
    run.continuation = following
    logger.info(
        "backup checkpointed",
        extra={
            "org_id": run.job.org_id,
            "backup_id": run.job.backup_id,
            "resources": sorted(checkpoint.resource for checkpoint in checkpoints),
        },
    )


def _save_for_retry(services: Services, run: _Run, budget: Budget) -> None:
    """Before a transient failure goes back to the queue: keep what is whole and give up the
    claim, so that the retry may claim the step (best effort: in Lambda the retry comes a
    visibility timeout later, when the claim has run out anyway)."""
    with contextlib.suppress(errors.BackupError, TenancyError):
        if run.progress:
            _store_progress(services, run, _checkpoints(run), budget.clock())
        else:
            _give_up_claim(services, run, budget.clock())


def _store_progress(
    services: Services,
    run: _Run,
    checkpoints: list[Checkpoint],
    now: datetime,
    *,
    continuation: int | None = None,
) -> None:
    changes: dict[str, Any] = {
        "files": run.files,
        "seq": run.seq + 1,
        "continuation": run.continuation if continuation is None else continuation,
    }
    remove = ["lease_until"]  # every save ends a step: the next one is claimed anew
    if checkpoints:
        changes["checkpoints"] = [checkpoint.document() for checkpoint in checkpoints]
    else:
        remove.append("checkpoints")
    try:
        services.table.update(
            run.job.org_id,
            BACKUP_KIND,
            run.job.backup_id,
            changes=changes,
            remove=remove,
            expect={"status": BackupStatus.RUNNING.value, "seq": run.seq},
            now=now,
        )
    except ConditionFailed:
        raise
    except TenancyError:
        raise errors.StorageFailed("the checkpoint could not be saved") from None
    run.seq += 1


def _release(services: Services, run: _Run, now: datetime) -> None:
    # The TTL frees it anyway; never delete another backup's run item.
    with contextlib.suppress(TenancyError):
        services.table.delete(
            run.job.org_id,
            RUN_KIND,
            run.job.connection_id,
            expect={"backup_id": run.job.backup_id},
            now=now,
        )


def _objects(run: _Run) -> BackupObjects:
    if run.objects is None:
        raise errors.StorageFailed("the backup's storage is not set up")
    return run.objects


def _entry(
    run: _Run, action: AuditAction, outcome: AuditOutcome, details: dict[str, Any]
) -> AuditEntry:
    return backup_entry(
        run.job.connection_id,
        actor=ACTOR,
        action=action,
        outcome=outcome,
        details=details,
        request_id=run.request_id,
    )


def _settle(
    services: Services, run: _Run, entry: AuditEntry, *, changes: dict[str, Any], now: datetime
) -> None:
    """Write the running backup's final state and its audit entry in one transaction: a backup
    never ends without its entry (errors: those of the record's conditional update)."""
    job = run.job
    update = Update(
        BACKUP_KIND,
        job.backup_id,
        changes=changes,
        remove=["checkpoints", "lease_until"],
        expect={"status": BackupStatus.RUNNING.value, "seq": run.seq},
    )
    writes = services.audit.prepare(job.org_id, entry, now=now)
    services.table.transact(job.org_id, [update, *writes], now=now)


# ---- credentials ------------------------------------------------------------------------------


class _Credential:
    """The connection's access token, renewed through the token service before it expires
    (once, for every lane)."""

    def __init__(self, services: Services, job: BackupJob, request_id: str, budget: Budget):
        self._services = services
        self._job = job
        self._request_id = request_id
        self._budget = budget
        self._token: AccessToken | None = None
        self._looked_up = 0.0  # when the connection was last read (epoch seconds)
        self._renewing = threading.Lock()

    def authorization(self) -> str:
        with self._renewing:
            now = self._budget.clock()
            token = self._token
            if token is None or (
                token.expires_at is not None
                and token.expires_at - now.timestamp() < _TOKEN_MARGIN_SECONDS
            ):
                token = self._token = self._fetch(now)
                self._looked_up = now.timestamp()
            elif now.timestamp() - self._looked_up >= _CONNECTION_RECHECK_SECONDS:
                self._still_there(now)
                self._looked_up = now.timestamp()
            return token.authorization

    def _still_there(self, now: datetime) -> None:
        """ConnectionGone once the connection is deleted (one read: no decryption, no use)."""
        try:
            self._services.tokens.connection(self._job.org_id, self._job.connection_id, now=now)
        except ConnectionUnusable:
            raise errors.ConnectionGone("the connection was deleted during the backup") from None
        except (TenancyError, ClientError, BotoCoreError):
            raise errors.CredentialsUnavailable("the connection could not be read") from None

    def _fetch(self, now: datetime) -> AccessToken:
        try:
            return self._services.tokens.access_token(
                self._job.org_id,
                self._job.connection_id,
                now=now,
                request_id=self._request_id,
                actor=ACTOR,
            )
        except TokenNeedsReauthorization:
            raise errors.NeedsReauthorization("the connection needs authorizing") from None
        except ConnectionUnusable:
            raise errors.ConnectionGone("the connection is unusable") from None
        except (OAuthError, CryptoError, TenancyError, AuditError, ClientError, BotoCoreError):
            # AuditError: the use could not be recorded, so the credential was not used.
            raise errors.CredentialsUnavailable("no credential could be obtained") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def resources() -> Sequence[str]:
    """The files of every Okta backup, in the order they are written."""
    return [spec.name for spec in OKTA_RESOURCES]
