"""The chain verifier: every stored event of an org, every version of it, and the head.

Given the head (read first), it lists every version and delete marker under the org's prefix
(Object Lock keeps the original of an overwritten or "deleted" event, so the listing shows that
it happened), reads the current version of every event and reports, per seq:

- missing:       no current event where the chain needs one (up to the head or the last event)
- deleted:       a delete marker hides the event (the locked original is still retained)
- overwritten:   the key holds more than one version (the locked original is still retained)
- edited:        the content does not hash to its own `hash`, or is not a valid event
- reordered:     the object holds the event of another seq or another org
- broken_link:   `prev_hash` is not the hash of the event before it
- head_mismatch: the head is malformed, or names a seq or hash the chain does not hold
- unexpected_object: a key under the org's prefix that is not an event key (seq 0)

Events after the head that link correctly are not problems: they are the work of a writer that
stopped before moving the head (or one running right now), and the next append anchors them;
the report lists them as `unanchored`. An S3 or DynamoDB failure raises `AuditUnavailable`; it
never produces a finding.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from strongroom.audit.events import GENESIS_HASH, AuditEvent, event_hash, same_hash
from strongroom.audit.objects import (
    EventObjects,
    event_key,
    org_prefix,
    parse_event_document,
    seq_of_key,
)

# Past this many missing seqs in one run, the rest of the run is one problem.
_MAX_LISTED_MISSING = 100


class ProblemKind(enum.StrEnum):
    """What is wrong at a seq (see the module docstring)."""

    MISSING = "missing"
    DELETED = "deleted"
    OVERWRITTEN = "overwritten"
    EDITED = "edited"
    REORDERED = "reordered"
    BROKEN_LINK = "broken_link"
    HEAD_MISMATCH = "head_mismatch"
    UNEXPECTED_OBJECT = "unexpected_object"


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """One finding: its kind, the seq it concerns (0: none) and a short safe explanation."""

    kind: ProblemKind
    seq: int
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The verifier's result for one org; `ok` when there is no problem."""

    org_id: str
    head_seq: int
    last_seq: int
    checked: int
    problems: tuple[ChainProblem, ...]
    unanchored: tuple[int, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds_at(self, seq: int) -> set[ProblemKind]:
        """The kinds of problem found at `seq`."""
        return {problem.kind for problem in self.problems if problem.seq == seq}


@dataclass
class _KeyState:
    current_version: str | None = None  # None: absent, or the newest entry is a delete marker
    versions: int = 0
    deleted: bool = False


def check_chain(objects: EventObjects, org_id: str, head: tuple[int, str] | None) -> ChainReport:
    """Check the org's stored events against `head` ((seq, hash); None if it is malformed)."""
    problems: list[ChainProblem] = []
    if head is None:
        problems.append(ChainProblem(ProblemKind.HEAD_MISMATCH, 0, "the head is malformed"))
    head_seq, head_hash = head or (0, GENESIS_HASH)
    states = _inventory(objects, org_id, problems)
    last_seq = max([head_seq, *(seq for seq, s in states.items() if s.current_version)])
    hashes: dict[int, str] = {}
    documents: dict[int, dict[str, Any]] = {}
    # Walk the stored keys, not the range of seqs: a forged key or head with a huge seq must
    # not make the verifier count to it.
    previous = 0
    for seq in sorted(states):
        _report_missing(previous + 1, min(seq - 1, last_seq), problems)
        previous = seq
        state = states[seq]
        if state.deleted:
            problems.append(ChainProblem(ProblemKind.DELETED, seq, "a delete marker hides it"))
        if state.versions > 1:
            problems.append(
                ChainProblem(ProblemKind.OVERWRITTEN, seq, f"{state.versions} versions stored")
            )
        if state.current_version is None:
            _report_missing(seq, min(seq, last_seq), problems)
            continue
        body = objects.read(event_key(org_id, seq), version_id=state.current_version)
        document = parse_event_document(body) if body is not None else None
        if document is None:
            problems.append(ChainProblem(ProblemKind.EDITED, seq, "not a valid event"))
            continue
        hashes[seq] = _check_event(document, org_id, seq, problems)
        documents[seq] = document
    _report_missing(previous + 1, last_seq, problems)
    _check_links(documents, hashes, problems)
    if head_seq > 0:
        held = hashes.get(head_seq)
        if held is None or not same_hash(head_hash, held):
            problems.append(
                ChainProblem(ProblemKind.HEAD_MISMATCH, head_seq, "the head's hash is not held")
            )
    return ChainReport(
        org_id=org_id,
        head_seq=head_seq,
        last_seq=last_seq,
        checked=len(documents),
        problems=tuple(sorted(problems, key=lambda p: (p.seq, p.kind.value))),
        unanchored=tuple(seq for seq in sorted(documents) if seq > head_seq),
    )


def _report_missing(first: int, last: int, problems: list[ChainProblem]) -> None:
    """One problem per missing seq in first..last, at most `_MAX_LISTED_MISSING` of them."""
    count = last - first + 1
    listed = min(count, _MAX_LISTED_MISSING)
    for seq in range(first, first + listed):
        problems.append(ChainProblem(ProblemKind.MISSING, seq, "no event stored"))
    if count > listed:
        problems.append(
            ChainProblem(
                ProblemKind.MISSING,
                first + listed,
                f"no event stored here nor at the next {count - listed - 1} seqs",
            )
        )


def _inventory(
    objects: EventObjects, org_id: str, problems: list[ChainProblem]
) -> dict[int, _KeyState]:
    states: dict[int, _KeyState] = {}
    for key, version_id, is_latest, is_marker in objects.versions(org_prefix(org_id)):
        seq = seq_of_key(org_id, key)
        if seq is None:
            problems.append(
                ChainProblem(ProblemKind.UNEXPECTED_OBJECT, 0, "an object that is not an event")
            )
            continue
        state = states.setdefault(seq, _KeyState())
        state.versions += 0 if is_marker else 1
        state.deleted = state.deleted or is_marker
        if is_latest and not is_marker:
            state.current_version = version_id
    return states


def _check_event(
    document: dict[str, Any], org_id: str, seq: int, problems: list[ChainProblem]
) -> str:
    """Report what is wrong with one event in itself; return the hash of its content."""
    computed = event_hash(document)
    claimed = document.get("hash")
    if not same_hash(claimed, computed):
        problems.append(ChainProblem(ProblemKind.EDITED, seq, "content does not match its hash"))
    else:
        try:
            AuditEvent.model_validate(document)
        except ValidationError:
            problems.append(ChainProblem(ProblemKind.EDITED, seq, "fields are invalid"))
    if document.get("seq") != seq or document.get("org_id") != org_id:
        problems.append(ChainProblem(ProblemKind.REORDERED, seq, "holds another position's event"))
    return computed


def _check_links(
    documents: dict[int, dict[str, Any]], hashes: dict[int, str], problems: list[ChainProblem]
) -> None:
    for seq, document in documents.items():
        expected = GENESIS_HASH if seq == 1 else hashes.get(seq - 1)
        if expected is None:
            continue  # the event before is missing, and reported as such
        if not same_hash(document.get("prev_hash"), expected):
            problems.append(
                ChainProblem(ProblemKind.BROKEN_LINK, seq, "prev_hash is not the previous hash")
            )
