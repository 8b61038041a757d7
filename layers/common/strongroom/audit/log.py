"""The append-only audit log: one hash chain per org, events in S3 under Object Lock.

Layout:

    s3://<audit bucket>/audit/<org_id>/<seq, 12 digits>.json   one event, canonical JSON,
        written only if absent (If-None-Match: *), COMPLIANCE retention until now + N days
    table pk=<org_id> sk="AUDIT#HEAD"                            seq (N), hash (S)

Append: read the head (seq n, hash h); write event n+1 (prev_hash h) only if its key is absent;
then move the head from (n, h) to (n+1, hash) by a conditional update. S3's conditional create
decides which writer owns position n+1, so concurrent appends cannot fork the chain; the head
is an index that may lag by one event. A writer that crashed (or lost the connection) between
the two steps leaves event n+1 in S3 with the head still at n: the next appender finds the key
taken, checks that the event there links to the head, moves the head over it, and retries, so
there is neither a fork nor a gap. An event that does not link is never built upon: the append
raises `AuditChainBroken`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from strongroom.audit.events import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    canonical_json,
    event_hash,
    same_hash,
    seal_event,
)
from strongroom.audit.exceptions import (
    AuditChainBroken,
    AuditContention,
    AuditError,
    AuditUnavailable,
    InvalidAuditCursor,
    InvalidAuditEvent,
)
from strongroom.audit.objects import EventObjects, event_key, parse_event_document
from strongroom.audit.pending import (
    PENDING_KIND,
    SWEEP_GRACE,
    SWEEP_KIND,
    SWEEP_RETRY,
    PendingEntry,
    SweepReport,
    new_entry_id,
    pending_attributes,
    pending_from_item,
    sweep_index,
    sweep_partitions,
)
from strongroom.redaction import redact as _redact_with_layer_rules
from strongroom.settings import Settings
from strongroom.tenancy import (
    ConditionFailed,
    Create,
    ItemExists,
    ItemNotFound,
    PlatformTable,
    StoreUnavailable,
    TenancyError,
    TenantTable,
    validate_org_id,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_s3.client import S3Client

    from strongroom.audit.verify import ChainReport

_LOGGER = logging.getLogger(__name__)
_HEAD_KIND, _HEAD_ID = "AUDIT", "HEAD"
_HASH = re.compile(r"[0-9a-f]{64}")
# Each lost round means another writer's event went in (or is going in). A loser backs off
# with full jitter so that a burst of writers on one org spreads out instead of retrying in step.
_MAX_ATTEMPTS = 64
_BACK_OFF_BASE_SECONDS = 0.005
_BACK_OFF_CAP_SECONDS = 0.2
_JITTER = secrets.SystemRandom()
_MAX_CURSOR_LENGTH = 512
# A request appends a few pending entries at most (its own, and any left before it); the sweep
# takes a page per org and leaves time for the dispatcher to end cleanly.
_REQUEST_FLUSH_LIMIT = 10
_SWEEP_FLUSH_LIMIT = 100
_SWEEP_PAGE = 100
_SWEEP_RESERVE_SECONDS = 10.0

Redactor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last anchored event of an org: its seq (0: none yet) and hash."""

    seq: int
    hash: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Events newest first; `missing` lists seqs in the page's range that could not be read
    (deleted or unreadable), `tampered` the listed events edited since written: their stored
    hash is not their content's, or not the one the head or the event above them names, or the
    first does not start from genesis, or one above the head does not follow it. Either: run
    the verifier, which checks every link. `cursor` continues (None: nothing older)."""

    events: tuple[AuditEvent, ...]
    cursor: str | None
    missing: tuple[int, ...] = ()
    tampered: tuple[int, ...] = ()


class AuditLog:
    """Appends, lists and verifies the audit events of orgs.

    `redact` cleans each event's `details` before it is stored; it defaults to the layer's
    `strongroom.redaction.redact` and is a parameter only so that a stricter one can be given.
    """

    def __init__(
        self,
        *,
        s3: S3Client,
        dynamodb: DynamoDBClient,
        settings: Settings,
        redact: Redactor = _redact_with_layer_rules,
    ) -> None:
        self._objects = EventObjects(s3=s3, bucket=settings.audit_bucket)
        self._retention = timedelta(days=settings.audit_retention_days)
        self._table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
        self._platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
        self._redact = redact

    # ---- append ---------------------------------------------------------------------------

    def append(self, org_id: str, entry: AuditEntry, *, now: datetime) -> AuditEvent:
        """Append `entry` to the org's chain at `now` and return the stored event.

        It returns once the event object is stored: from then on the event is in the chain,
        even if moving the head fails (the next append anchors it).
        AuditUnavailable: S3 or DynamoDB failed before the event was stored (nothing appended;
        or, if every attempt of the put lost its answer after S3 stored it, the event is in the
        chain though this call failed: the chain may hold an action its caller then refused,
        never lack one it made).
        AuditChainBroken: the stored chain does not extend from its head (tampering).
        InvalidAuditEvent: the redacted details, or `now`, do not make a valid event.
        """
        org_id = validate_org_id(org_id)
        details = self._redact(dict(entry.details))
        retain_until = now + self._retention
        # Tells this append's event from another's when a retried put finds its seq taken: the
        # first put may have been stored with its answer lost.
        entry_id = new_entry_id(now)
        for attempt in range(_MAX_ATTEMPTS):
            head = self._read_head(org_id, now)
            try:
                event = seal_event(
                    entry,
                    org_id=org_id,
                    seq=head.seq + 1,
                    prev_hash=head.hash,
                    occurred_at=now,
                    details=details,
                    entry_id=entry_id,
                )
            except ValidationError as exc:
                raise _invalid(exc) from None
            key = event_key(org_id, event.seq)
            if self._objects.create(
                key, canonical_json(event.document()), retain_until=retain_until
            ):
                self._anchor_written(org_id, head, event, now)
                return event
            # The seq is taken: by another writer that has not moved the head yet (it crashed,
            # or lost its connection), or by this append's own put. Anchor the holder (it must
            # extend the head), and stop if it is ours.
            holder = self._objects.read(key)
            if holder is not None and self._anchor_holder(org_id, head, holder, now) == entry_id:
                return event
            _back_off(attempt)
        raise AuditContention("concurrent appends to this org kept winning")

    def _anchor_written(
        self, org_id: str, head: ChainHead, event: AuditEvent, now: datetime
    ) -> None:
        # The event is stored and owns its seq; if moving the head fails, the next append (or
        # one that already ran) anchors it, so the append has still succeeded.
        try:
            self._move_head(org_id, head, ChainHead(event.seq, event.hash), now)
        except AuditUnavailable:
            _LOGGER.warning(
                "audit event stored but the chain head was not moved; the next append anchors it",
                extra={"org_id": org_id, "seq": event.seq},
            )

    def _anchor_holder(self, org_id: str, head: ChainHead, body: bytes, now: datetime) -> object:
        """The event `body` holds seq head+1 though our put lost it (another writer's that has
        not moved the head yet, or our own earlier put's): check that it extends the head,
        anchor it, and return its entry_id."""
        seq = head.seq + 1
        document = self._linked_document(org_id, seq, body)
        if not same_hash(document.get("prev_hash"), head.hash):
            raise AuditChainBroken(f"audit event {seq} does not extend the chain head")
        self._move_head(org_id, head, ChainHead(seq, document["hash"]), now)
        return document.get("entry_id")

    # ---- entries recorded with their change -----------------------------------------------

    def prepare(self, org_id: str, *entries: AuditEntry, now: datetime) -> list[Create]:
        """The writes that record `entries` as pending, to put in the change's own transaction.

        The change and its audit entries then commit together; `flush` (the request's own, the
        org's next one, or the sweep's) appends each entry to the chain exactly once, in the
        order given here. The org is first marked for the sweep, so entries whose request stops
        before flushing are still appended. Details are redacted here: the table never holds
        more than the events will.
        AuditUnavailable: the mark could not be written (nothing recorded).
        InvalidAuditEvent: an entry would not make a valid event.
        """
        org_id = validate_org_id(org_id)
        writes = []
        for entry in entries:
            details = self._redact(dict(entry.details))
            entry_id = new_entry_id(now)
            try:
                # Refused now, not when appended: an invalid entry would block the org's flush.
                seal_event(
                    entry,
                    org_id=org_id,
                    seq=1,
                    prev_hash=GENESIS_HASH,
                    occurred_at=now,
                    details=details,
                    entry_id=entry_id,
                )
            except ValidationError as exc:
                raise _invalid(exc) from None
            attributes = pending_attributes(entry, details=details, occurred_at=now)
            writes.append(Create(PENDING_KIND, entry_id, attributes=attributes))
        self._mark_for_sweep(org_id, now)
        return writes

    def record(self, org_id: str, *entries: AuditEntry, now: datetime) -> None:
        """Record entries that have no change to join (an outcome learnt after a commit, such as
        a revocation at the provider) in a transaction of their own; `flush` appends them.

        AuditUnavailable: nothing was recorded. InvalidAuditEvent: as `prepare`.
        """
        writes = self.prepare(org_id, *entries, now=now)
        try:
            self._table.transact(org_id, writes, now=now)
        except TenancyError as exc:
            raise AuditUnavailable(f"recording audit entries failed ({exc})") from exc

    def record_outcome(self, org_id: str, *entries: AuditEntry, now: datetime) -> bool:
        """`record` for an outcome that must not change the request's answer: learnt after its
        change committed (a revocation at the provider), or of an attempt that changed nothing
        (an OAuth flow that failed, whose state is spent). A failure is logged, not raised;
        whether the entries were recorded (`flush_after_commit` then appends them)."""
        try:
            self.record(org_id, *entries, now=now)
        except AuditError as exc:
            # Enough for an operator to write the entries again by hand; never their details.
            _LOGGER.error(
                "an audit entry could not be recorded",
                extra={
                    "org_id": org_id,
                    "actions": sorted({entry.action for entry in entries}),
                    "entries": [
                        {
                            "actor": entry.actor,
                            "action": entry.action,
                            "outcome": entry.outcome,
                            "target": f"{entry.target_kind}:{entry.target_id}",
                            "request_id": entry.request_id,
                        }
                        for entry in entries
                    ],
                    "error_type": type(exc).__name__,
                },
            )
            return False
        return True

    def flush(self, org_id: str, *, now: datetime, limit: int = 100) -> int:
        """Append the org's pending entries (up to `limit`), oldest first; how many this call
        appended (entries another flush appended meanwhile are not counted).

        AuditUnavailable / AuditChainBroken / AuditContention: as `append`; entries not yet
        appended stay pending.
        """
        return self._flush(validate_org_id(org_id), now, limit)[0]

    def _flush(self, org_id: str, now: datetime, limit: int) -> tuple[int, bool]:
        """(appended, whether every entry pending when listed is now in the chain)."""
        try:
            page = self._table.query(org_id, PENDING_KIND, now=now, limit=limit)
        except StoreUnavailable as exc:
            raise AuditUnavailable(f"listing pending audit entries failed ({exc})") from exc
        appended = 0
        for item in page.items:
            pending = pending_from_item(item)
            if pending is None:
                raise AuditChainBroken("a pending audit entry is malformed")
            appended += self._append_pending(org_id, pending, now)
        return appended, page.cursor is None

    def flush_after_commit(self, org_id: str, *, now: datetime) -> None:
        """`flush` for a request whose change has committed with its entries: a few entries at
        most (its own, and any left before it), and a failure is logged, not raised (the
        change is done and its entries are safe; the org's next flush or the sweep appends
        them)."""
        try:
            self.flush(org_id, now=now, limit=_REQUEST_FLUSH_LIMIT)
        except Exception as exc:  # noqa: BLE001 - the change is done: it must not answer 500
            # A broken chain is tampering, for people to look at; an outage mends itself;
            # anything else is a defect the stored data reached.
            if not isinstance(exc, AuditError):
                log = _LOGGER.exception
            elif isinstance(exc, AuditChainBroken):
                log = _LOGGER.error
            else:
                log = _LOGGER.warning
            log(
                "audit entries recorded but not yet appended; the sweep appends them",
                extra={"org_id": org_id, "error_type": type(exc).__name__},
            )

    def sweep(
        self,
        *,
        now: datetime,
        time_left: Callable[[], float] = lambda: math.inf,
        max_orgs: int = 1000,
    ) -> SweepReport:
        """Flush the orgs marked for the sweep whose grace has passed, and drop the mark of each
        org left with nothing pending; up to `max_orgs`, while `time_left()` (seconds) allows.

        Failures are counted, not raised: one org's outage or broken chain does not stop the
        others; its mark is put back for a later sweep, behind the marks that are due now.
        Shards are visited from a random one, so marks that keep failing cannot starve others.
        """
        orgs = appended = failed = 0
        partitions = list(sweep_partitions(now))
        first = _JITTER.randrange(len(partitions))
        for partition, sort_at_most in partitions[first:] + partitions[:first]:
            cursor: dict[str, str] | None = None
            while orgs < max_orgs and time_left() > _SWEEP_RESERVE_SECONDS:
                try:
                    marks, cursor = self._platform.query_index(
                        partition,
                        now=now,
                        sort_at_most=sort_at_most,
                        limit=min(_SWEEP_PAGE, max_orgs - orgs),
                        start=cursor,
                    )
                except TenancyError:
                    failed += 1
                    break
                for mark in marks:
                    if orgs >= max_orgs or time_left() <= _SWEEP_RESERVE_SECONDS:
                        break
                    orgs += 1
                    try:
                        appended += self._sweep_org(mark.attributes, now)
                    except Exception as exc:  # noqa: BLE001 - one org's fault stops no other
                        # Whatever it is (an outage, tampering, a defect its stored data
                        # reaches), the org's mark goes back and the sweep goes on.
                        failed += 1
                        expected = isinstance(exc, AuditError | TenancyError)
                        (_LOGGER.warning if expected else _LOGGER.exception)(
                            "pending audit entries not appended; a later sweep retries",
                            extra={"org_id": mark.item_id, "error": type(exc).__name__},
                        )
                        self._defer_mark(mark.attributes, now)
                if cursor is None:
                    break
        return SweepReport(orgs=orgs, appended=appended, failed=failed)

    def _sweep_org(self, mark: Mapping[str, Any], now: datetime) -> int:
        org_id = validate_org_id(mark.get("org_id"))
        appended, drained = self._flush(org_id, now, _SWEEP_FLUSH_LIMIT)
        if not drained:
            return appended  # more than one page: the mark stays for the next sweep
        try:
            # Only the mark as read: a request that marked the org again since (its entries
            # may not have been listed) keeps its mark.
            expect = {"token": mark.get("token")}
            self._platform.delete(SWEEP_KIND, org_id, now=now, expect=expect)
        except (ConditionFailed, ItemNotFound):
            pass
        except TenancyError as exc:
            raise AuditUnavailable(f"clearing the sweep mark failed ({exc})") from exc
        return appended

    def _defer_mark(self, mark: Mapping[str, Any], now: datetime) -> None:
        """Put a failing org's mark back a few minutes, unless a request marked it since."""
        org_id = mark.get("org_id")
        # If this fails, the mark stays where it was: swept again next time.
        with contextlib.suppress(TenancyError):
            self._platform.put(
                SWEEP_KIND,
                validate_org_id(org_id),
                attributes=dict(mark),
                index=sweep_index(str(org_id), due=now + SWEEP_RETRY),
                expect={"token": mark.get("token")},
                now=now,
            )

    def _mark_for_sweep(self, org_id: str, now: datetime) -> None:
        try:
            self._platform.put(
                SWEEP_KIND,
                org_id,
                attributes={"org_id": org_id, "token": secrets.token_hex(16)},
                index=sweep_index(org_id, due=now + SWEEP_GRACE),
                now=now,
            )
        except TenancyError as exc:
            raise AuditUnavailable(f"marking the org for the audit sweep failed ({exc})") from exc

    def _append_pending(self, org_id: str, pending: PendingEntry, now: datetime) -> int:
        """Append one pending entry unless it is already in the chain; 1 if this call did.

        Exactly once, with no lock: before writing event n+1 the entry is claimed for seq n+1
        (a conditional update). A claim is always the head's next seq when it is made, so two
        flushes of one entry can only race for the same seq, which S3's conditional create gives
        to one of them; the loser reads the event there and finds the entry's id in it. A claim
        the head has moved past was taken by another event, unless that event is the entry's
        own: then the entry is in the chain and its item is deleted; else it is claimed again
        further on. Only events known to exist are read (a role without s3:ListBucket gets 403,
        not 404, for a missing key).
        """
        current: PendingEntry | None = pending  # as just listed (a consistent read)
        for attempt in range(_MAX_ATTEMPTS):
            if attempt:
                current = self._read_pending(org_id, pending.entry_id, now)
            if current is None:
                return 0  # appended (and deleted) by another flush
            head = self._read_head(org_id, now)
            claim = current.claim_seq
            if claim is not None and claim <= head.seq and self._holds(org_id, claim, pending):
                self._discard_pending(org_id, pending.entry_id, claim, now)
                return 0
            target = head.seq + 1
            if claim != target and not self._claim(org_id, pending.entry_id, claim, target, now):
                continue
            try:
                event = seal_event(
                    pending.entry,
                    org_id=org_id,
                    seq=target,
                    prev_hash=head.hash,
                    occurred_at=pending.occurred_at,
                    details=dict(pending.entry.details),
                    entry_id=pending.entry_id,
                )
            except ValidationError as exc:
                raise _invalid(exc) from None
            body = canonical_json(event.document())
            key = event_key(org_id, target)
            if self._objects.create(key, body, retain_until=now + self._retention):
                self._anchor_written(org_id, head, event, now)
                self._discard_pending(org_id, pending.entry_id, target, now)
                return 1
            # Another event holds the seq (or ours, from a flush that stopped after writing it):
            # anchor it, and stop if it is ours.
            holder = self._objects.read(key)
            if holder is not None and (
                self._anchor_holder(org_id, head, holder, now) == pending.entry_id
            ):
                self._discard_pending(org_id, pending.entry_id, target, now)
                return 0
            _back_off(attempt)
        raise AuditContention("concurrent appends to this org kept winning")

    def _holds(self, org_id: str, seq: int, pending: PendingEntry) -> bool:
        """Whether the chain's event at `seq` (at or below the head, so stored) is the entry's."""
        body = self._objects.read(event_key(org_id, seq))
        if body is None:
            return False  # missing below the head: the verifier reports it; append again
        return self._linked_document(org_id, seq, body).get("entry_id") == pending.entry_id

    def _read_pending(self, org_id: str, entry_id: str, now: datetime) -> PendingEntry | None:
        try:
            item = self._table.get(org_id, PENDING_KIND, entry_id, now=now)
        except ItemNotFound:
            return None
        except StoreUnavailable as exc:
            raise AuditUnavailable(f"reading a pending audit entry failed ({exc})") from exc
        pending = pending_from_item(item)
        if pending is None:
            raise AuditChainBroken("a pending audit entry is malformed")
        return pending

    def _claim(
        self, org_id: str, entry_id: str, claim: int | None, target: int, now: datetime
    ) -> bool:
        """Move the entry's claim from `claim` to `target`; False if it changed meanwhile."""
        try:
            self._table.update(
                org_id,
                PENDING_KIND,
                entry_id,
                changes={"claim_seq": target},
                expect={"claim_seq": claim},
                now=now,
            )
        except (ConditionFailed, ItemNotFound):
            return False
        except StoreUnavailable as exc:
            raise AuditUnavailable(f"claiming a pending audit entry failed ({exc})") from exc
        return True

    def _discard_pending(self, org_id: str, entry_id: str, seq: int, now: datetime) -> None:
        # The entry is in the chain at `seq`; if this delete fails, the next flush finds the
        # event at the claimed seq and deletes it then.
        try:
            self._table.delete(org_id, PENDING_KIND, entry_id, expect={"claim_seq": seq}, now=now)
        except (ConditionFailed, ItemNotFound):
            pass
        except StoreUnavailable:
            _LOGGER.warning(
                "audit event appended but its pending entry was not deleted; the next flush does",
                extra={"org_id": org_id, "seq": seq},
            )

    def _linked_document(self, org_id: str, seq: int, body: bytes) -> dict[str, Any]:
        """The stored event at `seq` as a document, if it is a well-formed event of the org at
        that seq with its own hash; AuditChainBroken otherwise (tampering: build on nothing)."""
        document = parse_event_document(body)
        if (
            document is None
            or document.get("seq") != seq
            or document.get("org_id") != org_id
            or not same_hash(document.get("hash"), event_hash(document))
        ):
            raise AuditChainBroken(f"audit event {seq} is not a valid event of the org")
        return document

    # ---- head -----------------------------------------------------------------------------

    def read_head(self, org_id: str, *, now: datetime) -> ChainHead:
        """The org's chain head (seq 0 and the genesis hash before the first event)."""
        return self._read_head(validate_org_id(org_id), now)

    def _read_head(self, org_id: str, now: datetime) -> ChainHead:
        try:
            item = self._table.get(org_id, _HEAD_KIND, _HEAD_ID, now=now)
        except ItemNotFound:
            return ChainHead(0, GENESIS_HASH)
        except StoreUnavailable as exc:
            raise AuditUnavailable(f"reading the chain head failed ({exc})") from exc
        seq, digest = item.attributes.get("seq"), item.attributes.get("hash")
        if (
            not isinstance(seq, int)
            or seq < 1
            or not isinstance(digest, str)
            or not _HASH.fullmatch(digest)
        ):
            raise AuditChainBroken("the chain head is malformed")
        return ChainHead(seq, digest)

    def _move_head(self, org_id: str, old: ChainHead, new: ChainHead, now: datetime) -> None:
        """Move the head from `old` to `new`; losing to another writer is fine."""
        attributes = {"seq": new.seq, "hash": new.hash}
        try:
            if old.seq == 0:
                self._table.create(org_id, _HEAD_KIND, _HEAD_ID, attributes=attributes, now=now)
            else:
                self._table.update(
                    org_id,
                    _HEAD_KIND,
                    _HEAD_ID,
                    changes=attributes,
                    expect={"seq": old.seq, "hash": old.hash},
                    now=now,
                )
        except (ItemExists, ConditionFailed, ItemNotFound):
            return  # another writer moved it first; the caller re-reads it
        except StoreUnavailable as exc:
            raise AuditUnavailable(f"moving the chain head failed ({exc})") from exc

    # ---- reading --------------------------------------------------------------------------

    def list_events(
        self, org_id: str, *, now: datetime, limit: int = 50, cursor: str | None = None
    ) -> AuditPage:
        """The org's events newest first, `limit` per page (1-100)."""
        org_id = validate_org_id(org_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
            raise ValueError("limit must be 1 to 100")
        head = self._read_head(org_id, now)
        # An event whose writer did not get to move the head is still an event.
        top = head.seq + 1
        if cursor is not None:
            # A cursor cannot reach past the chain (it would list phantom missing events).
            top = min(_decode_cursor(cursor, org_id), top)
        # One listing tells which of the page's events are stored; only those are read. It
        # reaches one past a later page's newest: that event names the hash its newest must have.
        stored = self._objects.stored_seqs(org_id, max(1, top - limit), min(top + 1, head.seq + 1))
        start = top if cursor is not None or top in stored else top - 1
        events: list[AuditEvent] = []
        missing: list[int] = []
        tampered: list[int] = []
        stop = max(0, start - limit)
        # The hash each seq must have, as the head or a trustworthy event above it names it.
        named = {head.seq: head.hash} if head.seq else {}
        if start < head.seq and start + 1 in stored:
            self._name_below(org_id, start + 1, named, head)
        for seq in range(start, stop, -1):
            read = self._read(org_id, seq) if seq in stored else None
            # An object that names another org or seq (copied in from elsewhere) is not this
            # event: it is never shown to this org.
            if read is None or (read[0].org_id, read[0].seq) != (org_id, seq):
                missing.append(seq)
                continue
            event, document = read
            events.append(event)
            if _holds(event, document, named, head):
                # Only an event that holds names the one below it: after one that does not, the
                # next link is left to the verifier.
                named.setdefault(seq - 1, event.prev_hash)
            else:
                tampered.append(seq)
        next_cursor = _encode_cursor(org_id, stop) if stop > 0 else None
        return AuditPage(
            events=tuple(events),
            cursor=next_cursor,
            missing=tuple(missing),
            tampered=tuple(tampered),
        )

    def _name_below(self, org_id: str, seq: int, named: dict[int, str], head: ChainHead) -> None:
        """Learn from event `seq` (just above a later page) the hash of the event below it, if
        it holds (as far as this one read can tell)."""
        read = self._read(org_id, seq)
        if read is None or (read[0].org_id, read[0].seq) != (org_id, seq):
            return
        event, document = read
        if _holds(event, document, named, head):
            named.setdefault(seq - 1, event.prev_hash)

    def read_event(
        self, org_id: str, seq: int, *, version_id: str | None = None
    ) -> AuditEvent | None:
        """Event `seq` of the org as stored, or None if it is absent or not a valid event."""
        read = self._read(org_id, seq, version_id=version_id)
        return None if read is None else read[0]

    def _read(
        self, org_id: str, seq: int, *, version_id: str | None = None
    ) -> tuple[AuditEvent, dict[str, Any]] | None:
        """The event and the document it was read from (what its hash covers)."""
        body = self._objects.read(event_key(validate_org_id(org_id), seq), version_id=version_id)
        document = parse_event_document(body) if body is not None else None
        if document is None:
            return None
        try:
            return AuditEvent.model_validate(document), document
        except ValidationError:
            return None

    # ---- verification ---------------------------------------------------------------------

    def verify_chain(self, org_id: str, *, now: datetime) -> ChainReport:
        """Check every stored event of the org and its head; see `strongroom.audit.verify`.

        Findings are in the report; AuditUnavailable if S3 or DynamoDB fails.
        """
        # Imported here: no function verifies at run time, so their cold starts skip it.
        from strongroom.audit.verify import check_chain  # noqa: PLC0415

        org_id = validate_org_id(org_id)
        try:
            head: tuple[int, str] | None = astuple(self._read_head(org_id, now))
        except AuditChainBroken:
            head = None
        return check_chain(self._objects, org_id, head)


def _back_off(attempt: int) -> None:
    ceiling = min(_BACK_OFF_CAP_SECONDS, _BACK_OFF_BASE_SECONDS * 2 ** min(attempt, 10))
    time.sleep(_JITTER.uniform(0, ceiling))


def _invalid(exc: ValidationError) -> InvalidAuditEvent:
    fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
    return InvalidAuditEvent("invalid audit event fields: " + ", ".join(fields))


def _encode_cursor(org_id: str, before_or_at: int) -> str:
    text = json.dumps({"o": org_id, "s": before_or_at}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def _holds(
    event: AuditEvent, document: dict[str, Any], named: dict[int, str], head: ChainHead
) -> bool:
    """Whether a listed event is as written: its hash is its content's and the one named for its
    seq; the first starts from genesis; one above the head (its writer did not get to move the
    head) follows the head."""
    seq = event.seq
    return (
        same_hash(event.hash, event_hash(document))
        and (seq not in named or same_hash(event.hash, named[seq]))
        and (seq != 1 or same_hash(event.prev_hash, GENESIS_HASH))
        and (seq != head.seq + 1 or seq == 1 or same_hash(event.prev_hash, head.hash))
    )


def _decode_cursor(cursor: str, org_id: str) -> int:
    if not isinstance(cursor, str) or not 0 < len(cursor) <= _MAX_CURSOR_LENGTH:
        raise InvalidAuditCursor("the cursor is malformed")
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidAuditCursor("the cursor is malformed") from None
    if not isinstance(document, dict):
        raise InvalidAuditCursor("the cursor is malformed")
    if document.get("o") != org_id:
        raise InvalidAuditCursor("the cursor belongs to another org")
    seq = document.get("s")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise InvalidAuditCursor("the cursor is malformed")
    return seq
