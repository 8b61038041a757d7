"""Checkout nonces, and the plan changes verified billing events make with them.

An org's owner mints a nonce (`POST /orgs/{org_id}/billing/checkout`) and hands it, with the
org id, to the payment platform's checkout as custom data; the platform's events carry both
back. Each nonce costs an item and an audit event that Object Lock keeps for the audit
retention, so an org mints at most MAX_CHECKOUTS_PER_DAY a UTC day (a counter moved in the
nonce's own transaction, as `strongroom.plans` counts on-demand backups); past it, 429 and
nothing is written.

Items (tenant items, in the org's partition; bearer values only as SHA-256 digests):

    CHECKOUT#<sha256(nonce)>      created_by, created_at; expires 24 h after minting;
                                  early_version (moved by every early event kept for it);
                                  one minted before EARLY items keeps `early` (per subscription
                                  id, as an EARLY item's attributes), read until it expires
    EARLY_<SOURCE>#<sha256(nonce)>:sub:<subscription id>, ...:order:<order id>
                                  (a kind per platform: STRIPE, LEMONSQUEEZY, STANDARD)
                                  at (absent for an end that says no time), event_id,
                                  status, order_id where the event names one: the newest unpaid
                                  update or the end of that subscription or order that came
                                  before the activation; expires with its CHECKOUT
    USAGE#checkouts:<UTC date>    count: nonces minted that day (at most MAX_CHECKOUTS_PER_DAY)
    SUBSCRIPTION#<sha256(nonce)>  plan (the plan it pays for), source, checkout_by,
                                  activated_at, event_id; last_event_id, last_event_at (the
                                  newest event applied: Stripe's `created` in seconds, Lemon
                                  Squeezy's `updated_at` or Polar's `modified_at` in
                                  microseconds), subscription_id,
                                  order_id (Lemon Squeezy: the order that bought it), status,
                                  suspended (true while unpaid)
    WEBHOOK_EVENT#<event digest>  an event that had an effect (kept 7 days)
    ORG                           plan, plan_nonce (digest of the nonce that set it), ...

and `WEBHOOK_EVENT#<event digest>` as a platform item for events without an effect.

Every effect is one DynamoDB transaction that also creates the event's marker, so of any
number of concurrent deliveries of one event exactly one has the effect and the others are
duplicates:
- activate: delete the live CHECKOUT (consumed: single use, never after its 24 h), create
  its SUBSCRIPTION, set the org's plan from the event's product;
- update (Stripe's `customer.subscription.updated`, Lemon Squeezy's `subscription_updated`,
  Polar's `subscription.updated`, of an activated subscription, if the org's plan_nonce still
  names it, it is the subscription the nonce activated, and the event is not older than the
  newest applied): a new price, variant or product re-maps the plan (`plan_changed`), an
  unpaid status suspends the org to free (`plan_suspended`) and a paid one restores it
  (`plan_restored`); a status that says neither (Lemon Squeezy's `cancelled`, running out on
  what was paid) keeps the standing it had. The SUBSCRIPTION records the event, conditional
  on the state read, so an older event, or one racing a newer, never overrides it (of one
  time, unpaid wins). A price mapped to no plan changes nothing (`plan_change_refused`,
  audited as denied, answered `ignored`). The subscription the nonce activated is the one
  whose id the SUBSCRIPTION recorded or, for a nonce a Lemon Squeezy order activated, the one
  that order bought (its first update records its id). An activation by an order reports no
  subscription state: any first update is newer than it. A SUBSCRIPTION activated before its
  source's activations recorded these names neither and takes no update; its end still
  applies. An update to an unpaid status, or an end of a subscription or an order's refund,
  that comes before the activation is kept for the subscription and the order it names (EARLY
  items, as many as the platform sends: see `_early_event` for why none is refused, dropped or
  evicted): an activation of that subscription or order no newer than an unpaid one creates
  the SUBSCRIPTION suspended (the org on free), and one after an end (whenever it came)
  consumes the nonce without a plan (`checkout_voided`); an activation of another is not
  touched by it;
- deactivate: delete the SUBSCRIPTION, if the end is of its source and reports what the nonce
  activated (the subscription it recorded, or the order that bought it: our custom data
  copied onto another subscription or order ends nothing; a SUBSCRIPTION that names neither,
  activated before ids were recorded, ends by any end of its source), and return the org to
  the free plan if its plan came from that subscription (a later checkout may have replaced
  it);
- an end before the activation that names neither a subscription nor an order (nothing it
  could be kept for) voids the open CHECKOUT instead, so the late activation changes nothing.
A nonce that is forged, expired, consumed or of another org, or a product the deployment does
not map to a plan, changes nothing: the event is `ignored`; so is every event of an org whose
deletion has shredded its key (`strongroom.shredded_orgs`, checked as read and as a condition
of the effect's transaction), whose items the deletion could pass over. A nonce whose owner
has since been removed or demoted is consumed without changing the plan (`checkout_refused`,
audited as denied): a former owner keeps no say over the org's plan. Each effect's audit entry is
recorded in its transaction and appended after it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

from strongroom.api import Caller
from strongroom.audit.events import AuditAction, AuditEntry
from strongroom.audit.events import Outcome as AuditOutcome
from strongroom.errors import Conflict, Forbidden, NotFound, RateLimited
from strongroom.plans import FREE, USAGE
from strongroom.shredded_orgs import BEING_DELETED, KEY_SHREDDED_AT, UNSHREDDED, unshredded
from strongroom.tenancy import (
    Check,
    ConditionFailed,
    Create,
    Delete,
    Increment,
    InvalidOrgId,
    Item,
    ItemExists,
    ItemNotFound,
    LimitReached,
    Operation,
    Update,
    validate_org_id,
)
from webhook_verifier.events import BillingChange, ChangeKind, InboundEvent
from webhook_verifier.exceptions import BillingContention
from webhook_verifier.models import CheckoutCreated, CheckoutCustomData, ReceiptStatus
from webhook_verifier.services import Services

ORG, MEMBER, OWNER = "ORG", "MEMBER", "owner"
# The effect of an activation whose nonce's owner no longer is one.
REFUSED = "checkout_refused"
# The effect of a subscription's update to a price the deployment maps to no plan.
PRICE_REFUSED = "plan_change_refused"
# The status kept for a subscription that ended before its activation.
ENDED = "deleted"
CHECKOUT, SUBSCRIPTION, WEBHOOK_EVENT = "CHECKOUT", "SUBSCRIPTION", "WEBHOOK_EVENT"
# Events that came before their activation: an item per subscription and order they report,
# of a kind per platform (`_early_kind`).
EARLY = "EARLY"
NONCE_TTL = timedelta(hours=24)
# Checkouts an org may start per UTC day: retries of an abandoned checkout fit easily, and a
# loop of calls cannot fill the audit bucket with events nobody can delete.
MAX_CHECKOUTS_PER_DAY = 10
_CHECKOUTS = "checkouts"
# A day's counter outlives its day by this much, then DynamoDB's TTL sweeps it away.
_COUNTER_GRACE = timedelta(days=1)
# Far longer than the 300 s signature tolerance and the platforms' retry schedules (Stripe
# retries for up to three days). Past it, a replayed effect still finds its nonce consumed.
EVENT_MARKER_TTL = timedelta(days=7)
_NONCE = re.compile(r"chk_[A-Za-z0-9_-]{32}")
# A plan change racing ours (another event for the org) makes our transaction's condition
# fail; read again and retry a few times.
_ATTEMPTS = 3


def new_checkout_nonce() -> str:
    """A fresh nonce: `chk_` and 32 URL-safe characters (192 random bits)."""
    return "chk_" + secrets.token_urlsafe(24)


def nonce_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode("ascii")).hexdigest()


def event_digest(event: InboundEvent) -> str:
    """The dedupe key of an event: its source and id, hashed (ids are any visible ASCII)."""
    return hashlib.sha256(f"{event.source.value}\n{event.event_id}".encode("ascii")).hexdigest()


# ---- checkout ---------------------------------------------------------------------------------


def create_checkout(
    services: Services, caller: Caller, org_id: str, *, now: datetime, request_id: str
) -> CheckoutCreated:
    """Mint a single-use nonce bound to the org and the calling owner, valid for 24 hours.

    RateLimited (429) past the org's checkouts of the day: nothing is written, nor counted.
    Conflict (409) once the org's deletion has shredded its key: a nonce written then would be
    passed over by the deletion and outlive the org.
    """
    _require_owner(services, caller, org_id, now=now)
    nonce = new_checkout_nonce()
    checkout = Create(
        CHECKOUT,
        nonce_digest(nonce),
        attributes={"created_by": caller.sub, "created_at": _iso(now)},
        ttl=NONCE_TTL,
    )
    try:
        # Counted with the nonce it allows: a failed write does not use up the day.
        services.table.transact(org_id, [_count_checkout(now), checkout, unshredded()], now=now)
    except LimitReached:
        raise RateLimited(
            f"An org can start {MAX_CHECKOUTS_PER_DAY} checkouts a day; try again tomorrow (UTC)."
        ) from None
    except ItemNotFound:  # the org itself is gone: deleted, the caller's membership with it
        raise NotFound() from None
    except ConditionFailed:  # only the org's guard has such a condition
        raise Conflict(BEING_DELETED) from None
    expires_at = _iso(now + NONCE_TTL)
    services.audit.append(
        org_id,
        AuditEntry(
            actor=caller.sub,
            action=AuditAction.BILLING_CHECKOUT.value,
            request_id=request_id,
            outcome="success",
            target_kind="org",
            target_id=org_id,
            details={"expires_at": expires_at},
        ),
        now=now,
    )
    return CheckoutCreated(
        nonce=nonce,
        expires_at=expires_at,
        custom_data=CheckoutCustomData(strongroom_org_id=org_id, strongroom_nonce=nonce),
    )


def _count_checkout(now: datetime) -> Increment:
    """One more checkout today (UTC), refused past the day's allowance (LimitReached)."""
    day = now.astimezone(UTC).date()
    next_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
    return Increment(
        USAGE,
        f"{_CHECKOUTS}:{day.isoformat()}",
        ceiling=MAX_CHECKOUTS_PER_DAY,
        ttl=next_day - now + _COUNTER_GRACE,
    )


def _require_owner(services: Services, caller: Caller, org_id: str, *, now: datetime) -> None:
    try:
        member = services.table.get(org_id, MEMBER, caller.sub, now=now)
    except ItemNotFound:
        raise NotFound() from None
    if member.attributes.get("role") != OWNER:
        raise Forbidden()


# ---- events -----------------------------------------------------------------------------------


def record_event(
    services: Services, event: InboundEvent, *, now: datetime, request_id: str
) -> ReceiptStatus:
    """Apply the event's billing change, if any, exactly once; say what became of it."""
    marker = event_digest(event)
    change = event.billing
    if change is not None and _well_formed(change):
        status = _apply(services, event, change, marker, now=now, request_id=request_id)
        if status is not None:
            return status
        # Nothing applied. If that is because this very event consumed the nonce a moment ago
        # (a concurrent delivery), its marker is there: the nonce and marker go in together.
        if _find(services, change.org_id, WEBHOOK_EVENT, marker, now=now) is not None:
            return "duplicate"
    try:
        services.platform.create(
            WEBHOOK_EVENT,
            marker,
            attributes={"source": event.source.value, "received_at": _iso(now)},
            ttl=EVENT_MARKER_TTL,
            now=now,
        )
    except ItemExists:
        return "duplicate"
    return "ignored" if change is not None else "accepted"


def _well_formed(change: BillingChange) -> bool:
    try:
        validate_org_id(change.org_id)
    except InvalidOrgId:
        return False
    return _NONCE.fullmatch(change.nonce) is not None


def _apply(
    services: Services,
    event: InboundEvent,
    change: BillingChange,
    marker: str,
    *,
    now: datetime,
    request_id: str,
) -> ReceiptStatus | None:
    """What became of the event once written with its marker ("processed", "accepted", an
    audited refusal "ignored", or "duplicate"); None when nothing applies (nothing written)."""
    for _ in range(_ATTEMPTS):
        planned = _plan(services, event, change, now=now)
        if planned is None:
            return None
        audit_entries: list[Create] = []
        if planned.details is not None:
            denied = planned.details["effect"] in (REFUSED, PRICE_REFUSED)
            outcome: AuditOutcome = "denied" if denied else "success"
            effect = _effect_entry(
                event, change.org_id, planned.details, outcome, request_id=request_id
            )
            audit_entries = services.audit.prepare(change.org_id, effect, now=now)
        marker_item = Create(
            WEBHOOK_EVENT,
            marker,
            attributes={"source": event.source.value, "received_at": _iso(now)},
            ttl=EVENT_MARKER_TTL,
        )
        try:
            # The marker goes first: when it exists, its failure is the one reported.
            services.table.transact(
                change.org_id,
                [marker_item, *_while_unshredded(planned.operations), *audit_entries],
                now=now,
            )
        except ItemExists:
            return "duplicate"
        except (ItemNotFound, ConditionFailed):
            # Something read changed meanwhile (the nonce or subscription consumed, the org's
            # plan moved, a newer event applied, the nonce's owner removed or demoted): read
            # again and decide anew.
            continue
        if audit_entries:
            # Its audit entry was recorded with the effect; an audit outage now leaves it to
            # the sweep, rather than fail a delivery the platform would retry as a duplicate.
            services.audit.flush_after_commit(change.org_id, now=now)
        return planned.status
    raise BillingContention("the org's plan kept changing; the platform will retry")


def _while_unshredded(operations: list[Operation]) -> list[Operation]:
    """An effect's writes, holding only while the org's key is not shredded when they land: on
    its own update of the org item where it has one (a transaction touches each item once),
    else by a check beside them."""
    guarded: list[Operation] = []
    on_org = False
    for operation in operations:
        if isinstance(operation, Update) and operation.kind == ORG and operation.item_id is None:
            guarded.append(replace(operation, expect={**operation.expect, **UNSHREDDED}))
            on_org = True
        else:
            guarded.append(operation)
    return guarded if on_org else [*guarded, unshredded()]


@dataclass(frozen=True, slots=True)
class _Planned:
    """What an event will write, in one transaction with its marker."""

    operations: list[Operation]
    # The details of its `webhook.effect` audit entry (`effect` names it); None: not audited.
    details: dict[str, Any] | None
    # What the delivery answers once it is written.
    status: ReceiptStatus = "processed"


def _plan(
    services: Services, event: InboundEvent, change: BillingChange, *, now: datetime
) -> _Planned | None:
    digest = nonce_digest(change.nonce)
    # Once the org's deletion has shredded its key, no event takes effect: as for an org that
    # is gone. The deletion may have passed the items an effect writes (they would outlive the
    # org); `_while_unshredded` covers a shredding after this read.
    org = _find(services, change.org_id, ORG, None, now=now)
    if org is None or KEY_SHREDDED_AT in org.attributes:
        return None
    # The CHECKOUT is read before the SUBSCRIPTION (both strongly consistent reads): an
    # activation consumes the one and creates the other in one transaction, so an event that
    # finds no SUBSCRIPTION holds the CHECKOUT as it was before any activation. Should one
    # commit before this event's write, that write's condition on the CHECKOUT fails and
    # `_apply` plans again, now as an event of an activated subscription.
    checkout = _find(services, change.org_id, CHECKOUT, digest, now=now)
    if change.kind is ChangeKind.ACTIVATE:
        return _activation(services, event, change, checkout, now=now)
    subscription = _find(services, change.org_id, SUBSCRIPTION, digest, now=now)
    if subscription is not None:
        if change.kind is ChangeKind.UPDATE:
            return _update(services, event, change, subscription, now=now)
        return _deactivation(services, event, change, subscription, now=now)
    if checkout is None:
        return None  # consumed, voided or expired, and no subscription: nothing to act on
    return _before_activation(services, event, change, checkout, now=now)


def _before_activation(
    services: Services, event: InboundEvent, change: BillingChange, checkout: Item, *, now: datetime
) -> _Planned | None:
    """An update or end of a subscription the open `checkout`'s nonce has not activated."""
    if change.kind is ChangeKind.UPDATE and change.paying:
        return _activation(services, event, change, checkout, now=now)
    if change.kind is ChangeKind.UPDATE and change.paying is None:
        return None  # neither paid nor unpaid (a cancellation running out): the activation decides
    if change.subscription_id or (change.kind is ChangeKind.DEACTIVATE and change.order_id):
        # An unpaid update, or an end: kept for its subscription, or the order it names.
        return _early_event(services, event, change, checkout, now=now)
    if change.kind is ChangeKind.DEACTIVATE:
        # An end that names nothing it could be kept for: the nonce is voided rather than let
        # an activation it may have ended go unchecked.
        return _void_checkout(change, checkout)
    return None


def _activation(
    services: Services,
    event: InboundEvent,
    change: BillingChange,
    checkout: Item | None,
    *,
    now: datetime,
) -> _Planned | None:
    plan = _plan_of(services, event, change)
    digest = nonce_digest(change.nonce)
    org = _find(services, change.org_id, ORG, None, now=now)
    if plan is None or checkout is None or org is None:
        return None
    checkout_by = str(checkout.attributes["created_by"])
    creator = _find(services, change.org_id, MEMBER, checkout_by, now=now)
    if creator is None or creator.attributes.get("role") != OWNER:
        # Whoever minted the nonce has since been removed or demoted: their checkout cannot set
        # the org's plan (up or down). It is consumed all the same, and the refusal audited.
        refused: list[Operation] = [Delete(CHECKOUT, digest, expect={"created_by": checkout_by})]
        return _Planned(refused, {"effect": REFUSED, "plan": plan, "checkout_by": checkout_by})
    previous = org.attributes.get("plan")
    stamp = _iso(now)
    subscription: dict[str, Any] = {
        "plan": plan,
        "source": event.source.value,
        "checkout_by": checkout_by,
        "activated_at": stamp,
        "event_id": event.event_id,
        # The newest event applied to the subscription: later updates must not be older.
        "last_event_id": event.event_id,
    }
    if change.subscription_id:
        subscription["subscription_id"] = change.subscription_id
    if change.order_id:
        subscription["order_id"] = change.order_id
    if change.state_at is not None:
        subscription["last_event_at"] = change.state_at
    if change.status:
        subscription["status"] = change.status
    # The checkout as read: an early event kept meanwhile makes this one decide again.
    consumed = Delete(
        CHECKOUT,
        digest,
        expect={
            "created_by": checkout_by,
            "early_version": checkout.attributes.get("early_version"),
        },
    )
    # An end of this subscription, or an unpaid update newer than this event, came first.
    early = _early_since(services, event, checkout, change, now=now)
    if early is not None and early["status"] == ENDED:
        ended = {"effect": "checkout_voided", "checkout_by": checkout_by, "plan": plan}
        return _Planned([consumed], ended)
    unpaid = early
    if unpaid is not None:
        subscription.update(
            {
                "last_event_at": unpaid["at"],
                "last_event_id": unpaid["event_id"],
                "status": unpaid["status"],
                "suspended": True,
            }
        )
    operations: list[Operation] = [
        # Still an owner when the plan changes (a removal racing this event wins or loses whole).
        Check(MEMBER, checkout_by, one_of={"role": [OWNER]}),
        consumed,
        Create(SUBSCRIPTION, digest, attributes=subscription),
        Update(
            ORG,
            changes={
                "plan": plan if unpaid is None else FREE.name,
                "plan_nonce": digest,
                "plan_source": event.source.value,
                "plan_changed_at": stamp,
            },
            expect={"plan": previous},
        ),
    ]
    details = {"effect": "plan_activated", "plan": plan, "previous_plan": previous}
    if unpaid is not None:
        details |= {"suspended": True, "new_plan": FREE.name, "status": unpaid["status"]}
    return _Planned(operations, {**details, "checkout_by": checkout_by})


def _update(
    services: Services,
    event: InboundEvent,
    change: BillingChange,
    subscription: Item,
    *,
    now: datetime,
) -> _Planned | None:
    """An activated subscription's new state: if it is the subscription that sets the org's
    plan and the event is not older than the newest one applied to it, the plan its price maps
    to, suspended to free while unpaid."""
    digest = nonce_digest(change.nonce)
    org = _find(services, change.org_id, ORG, None, now=now)
    if org is None or not _update_holds(event, change, subscription, org):
        return None
    state = subscription.attributes
    paid_plan = str(state["plan"])
    suspended = state.get("suspended") is True
    current = org.attributes.get("plan")
    # The subscription as read: a write racing ours (another event of it) fails this one.
    unchanged = {
        "plan": paid_plan,
        "suspended": True if suspended else None,
        "last_event_id": state.get("last_event_id"),
        "last_event_at": state.get("last_event_at"),
        "subscription_id": state.get("subscription_id"),
    }
    # The newest event applied to it, kept however the plan fares.
    applied: dict[str, Any] = {
        "last_event_id": event.event_id,
        "last_event_at": change.state_at,
        "status": change.status,
        "updated_at": _iso(now),
    }
    if change.subscription_id:
        applied["subscription_id"] = change.subscription_id
    details: dict[str, Any] = {"checkout_by": str(state["checkout_by"]), "status": change.status}
    # A status that says neither paid nor unpaid keeps the standing the subscription had.
    unpaid = suspended if change.paying is None else not change.paying
    plan = FREE.name if unpaid else _plan_of(services, event, change)
    if plan is None:
        # A price the deployment maps to no plan: refused and audited; nothing changes, not
        # even the newest event applied.
        refused = {"effect": PRICE_REFUSED, "plan": paid_plan, "products": list(change.products)}
        check: list[Operation] = [Check(SUBSCRIPTION, digest, expect=unchanged)]
        return _Planned(check, {**details, **refused}, "ignored")
    if (unpaid and suspended) or (not unpaid and not suspended and plan == paid_plan):
        # Still unpaid, or a renewal or a cancellation for the period's end: no plan changes.
        only: list[Operation] = [Update(SUBSCRIPTION, digest, applied, expect=unchanged)]
        return _Planned(only, None, "accepted")
    org_plan = Update(
        ORG,
        changes={"plan": plan, "plan_changed_at": _iso(now)},
        expect={"plan": current, "plan_nonce": digest},
    )
    if unpaid:
        # Suspended: the org drops to free, the subscription remembers the plan it pays for.
        suspend = Update(SUBSCRIPTION, digest, {**applied, "suspended": True}, expect=unchanged)
        details |= {"plan": paid_plan, "new_plan": plan, "previous_plan": current}
        return _Planned([suspend, org_plan], {**details, "effect": "plan_suspended"})
    moved = Update(
        SUBSCRIPTION,
        digest,
        {**applied, "plan": plan},
        remove=("suspended",) if suspended else (),
        expect=unchanged,
    )
    effect = "plan_restored" if suspended else "plan_changed"
    details |= {"effect": effect, "plan": plan, "previous_plan": current}
    return _Planned([moved, org_plan], details)


def _early_event(
    services: Services, event: InboundEvent, change: BillingChange, checkout: Item, *, now: datetime
) -> _Planned | None:
    """An update to an unpaid status, or an end, that comes before the activation of what it
    reports (a platform retries a failed delivery of the activating event; Stripe for days):
    kept, while the CHECKOUT is open, under the subscription and the order it names
    (`_early_keys`), so that an activation of either no newer than an unpaid state starts
    suspended, and one after an end not at all (`_early_since`).

    Nothing bounds how many are kept, and none displaces another: the subscriptions and orders
    that carry the nonce are the payer's to make, and any of them may be the one activated, so
    a checkout that refused, dropped or evicted one past some count would either let a payer
    void or hold up a checkout with strays, or lose the end of the purchase that is activated
    (its late activation then raising the plan for nothing paid). Each is an item of the org's
    partition that expires with the CHECKOUT, written only for a verified event of a real
    subscription or order: as many as the payer bought."""
    if change.kind is ChangeKind.UPDATE and change.state_at is None:
        return None  # an unpaid state that does not say when orders nothing; an end is final
    entry: dict[str, Any] = {
        "event_id": event.event_id,
        "status": ENDED if change.kind is ChangeKind.DEACTIVATE else change.status,
    }
    if change.state_at is not None:
        entry["at"] = change.state_at
    if change.order_id:
        entry["order_id"] = change.order_id
    kept_for: list[Operation] = []
    kind = _early_kind(event)
    for key in _early_keys(change):
        kept = _find(services, change.org_id, kind, key, now=now)
        if kept is None:
            kept_for.append(Create(kind, key, attributes=entry, ttl=_until_expiry(checkout, now)))
        elif _supersedes(entry, kept.attributes):
            stale = tuple(name for name in ("at", "order_id") if name in kept.attributes)
            kept_for.append(
                Update(
                    kind,
                    key,
                    entry,
                    remove=tuple(name for name in stale if name not in entry),
                    expect={"event_id": kept.attributes["event_id"]},
                )
            )
    if not kept_for:
        return None  # it ended (nothing comes after an end), or a newer event is kept already
    # Every early event moves the CHECKOUT's version: an activation that read it before then
    # fails its condition and reads the early events again.
    version = checkout.attributes.get("early_version")
    one_more = Update(
        CHECKOUT,
        nonce_digest(change.nonce),
        {"early_version": int(version or 0) + 1},
        expect={"created_by": checkout.attributes["created_by"], "early_version": version},
    )
    return _Planned([one_more, *kept_for], None, "accepted")


def _early_kind(event: InboundEvent) -> str:
    """The kind of the EARLY items of the event's platform: ids are each platform's own, so one
    platform's subscription or order is never another's that happens to share its id."""
    return f"{EARLY}_{event.source.value.upper()}"


def _early_keys(change: BillingChange) -> list[str]:
    """The EARLY items of the nonce for what an event reports: its subscription and its order
    (a Lemon Squeezy subscription names the order that bought it; an order's refund may name
    no subscription). Ids are `_identifier`s: no `#`, at most 128 characters."""
    digest = nonce_digest(change.nonce)
    keys = []
    if change.subscription_id:
        keys.append(f"{digest}:sub:{change.subscription_id}")
    if change.order_id:
        keys.append(f"{digest}:order:{change.order_id}")
    return keys


def _supersedes(entry: Mapping[str, Any], kept: Mapping[str, Any]) -> bool:
    """Whether an early event replaces the one kept for the same subscription or order: an end
    is final (nothing replaces it, and it replaces any unpaid state); of two unpaid states the
    newer (of one time, the one received later)."""
    if kept["status"] == ENDED:
        return False
    return bool(entry["status"] == ENDED or int(entry["at"]) >= int(kept["at"]))


def _until_expiry(checkout: Item, now: datetime) -> timedelta:
    """How long the open `checkout` has left: its early events are of no use after it."""
    if checkout.expires_at is None:
        return NONCE_TTL
    return datetime.fromtimestamp(checkout.expires_at, UTC) - now


def _early_since(
    services: Services,
    event: InboundEvent,
    checkout: Item,
    change: BillingChange,
    *,
    now: datetime,
) -> dict[str, Any] | None:
    """The early event kept (`_early_event`) for what the activating `change` reports: an end,
    whenever it came (an end is final, and once activated it ends the plan whatever its time),
    else an unpaid state newer than `change` (or of its time: the unpaid state wins a tie). An
    activation by an order reports no subscription state: any early event of the order, or of
    the subscription it bought, counts (a Lemon Squeezy order is named by its subscription's
    events, not the other way round)."""
    kept = [
        item.attributes
        for key in _early_keys(change)
        if (item := _find(services, change.org_id, _early_kind(event), key, now=now)) is not None
    ]
    kept += _kept_on_checkout(checkout, change)
    # An end counts whenever it came: once activated, the same end ends the plan, and nothing
    # after it (a Polar subscription's newer state after its order's refund) undoes it.
    ended = [early for early in kept if early["status"] == ENDED]
    newer = [
        early
        for early in kept
        if change.state_at is None or "at" not in early or change.state_at <= int(early["at"])
    ]
    if not ended and not newer:
        return None
    chosen = ended[0] if ended else max(newer, key=lambda early: int(early["at"]))
    at = chosen.get("at")
    return {
        "at": None if at is None else int(at),
        "event_id": str(chosen["event_id"]),
        "status": str(chosen["status"]),
    }


def _kept_on_checkout(checkout: Item, change: BillingChange) -> list[Mapping[str, Any]]:
    """Early events a CHECKOUT minted before they were items keeps on itself (`early`, per
    subscription id) until it expires, 24 h after minting: those of what `change` reports."""
    early: Mapping[str, Any] = checkout.attributes.get("early") or {}
    return [
        kept
        for subscription_id, kept in early.items()
        if (change.subscription_id and subscription_id == change.subscription_id)
        or (change.order_id and kept.get("order_id") == change.order_id)
    ]


def _update_holds(
    event: InboundEvent, change: BillingChange, subscription: Item, org: Item
) -> bool:
    """Whether an update may apply to the subscription the nonce activated."""
    state = subscription.attributes
    last_at = state.get("last_event_at")
    if change.state_at is None:
        return False
    # Not older than the newest event applied; of the same time, only one that does not lift
    # a suspension (their order is unknown: unpaid wins the tie). An activation by an order
    # recorded no subscription state: the first update is newer than it.
    lifts = change.paying is True and state.get("suspended") is True
    in_order = last_at is None or (
        change.state_at > int(last_at) or (change.state_at == int(last_at) and not lifts)
    )
    return (
        in_order
        and state.get("source") == event.source.value
        and _activated_by_nonce(state, change)
        # The org's plan comes from this subscription, not from a later checkout's.
        and org.attributes.get("plan_nonce") == nonce_digest(change.nonce)
    )


def _activated_by_nonce(state: Mapping[str, Any], change: BillingChange) -> bool:
    """Whether the update reports the subscription the nonce activated, not one our custom data
    was copied onto: the one whose id the SUBSCRIPTION recorded or, for a nonce its order
    activated (Lemon Squeezy's), the one that order bought. An item that names neither (one
    activated before ids were recorded for its source) takes no update."""
    bound = state.get("subscription_id")
    if bound is not None:
        return bool(bound == change.subscription_id)
    order = state.get("order_id")
    return order is not None and order == change.order_id


def _ends_what_was_activated(
    state: Mapping[str, Any], event: InboundEvent, change: BillingChange
) -> bool:
    """Whether an end reports what the nonce activated, not another subscription or order our
    custom data was copied onto: of its source, and of the subscription it recorded (an end that
    names one) or the order that bought it (an order's refund; a subscription's end names its
    order too). An item that names neither (one activated before ids were recorded for its
    source) ends by any end of its source, as before."""
    if state.get("source") != event.source.value:
        return False
    bound, order = state.get("subscription_id"), state.get("order_id")
    if bound is None and order is None:
        return True
    if bound is not None and change.subscription_id:
        return bool(bound == change.subscription_id)
    return order is not None and order == change.order_id


def _deactivation(
    services: Services,
    event: InboundEvent,
    change: BillingChange,
    subscription: Item,
    *,
    now: datetime,
) -> _Planned | None:
    digest = nonce_digest(change.nonce)
    if not _ends_what_was_activated(subscription.attributes, event, change):
        return None
    org = _find(services, change.org_id, ORG, None, now=now)
    if org is None:
        return None
    plan = str(subscription.attributes["plan"])
    details: dict[str, Any] = {
        "plan": plan,
        "checkout_by": str(subscription.attributes["checkout_by"]),
    }
    operations: list[Operation] = [Delete(SUBSCRIPTION, digest, expect={"plan": plan})]
    if org.attributes.get("plan_nonce") == digest:
        operations.append(
            Update(
                ORG,
                changes={"plan": FREE.name, "plan_changed_at": _iso(now)},
                remove=("plan_nonce", "plan_source"),
                expect={"plan_nonce": digest},
            )
        )
        return _Planned(
            operations, {**details, "effect": "plan_deactivated", "new_plan": FREE.name}
        )
    # A later checkout set the org's current plan: this subscription ends without touching it.
    return _Planned(operations, {**details, "effect": "subscription_closed"})


def _void_checkout(change: BillingChange, checkout: Item) -> _Planned:
    """Cancelled before it was activated (events can arrive out of order): void the nonce."""
    checkout_by = str(checkout.attributes["created_by"])
    digest = nonce_digest(change.nonce)
    operations: list[Operation] = [Delete(CHECKOUT, digest, expect={"created_by": checkout_by})]
    return _Planned(operations, {"effect": "checkout_voided", "checkout_by": checkout_by})


def _plan_of(services: Services, event: InboundEvent, change: BillingChange) -> str | None:
    """The plan the first mapped product of the event grants (None: no product is mapped)."""
    products = services.settings.billing_products
    for product in change.products:
        plan = products.get(f"{event.source.value}:{product}")
        if plan is not None:
            return plan
    return None


def _find(
    services: Services, org_id: str, kind: str, item_id: str | None, *, now: datetime
) -> Item | None:
    try:
        return services.table.get(org_id, kind, item_id, now=now)
    except ItemNotFound:
        return None


def _effect_entry(
    event: InboundEvent,
    org_id: str,
    details: dict[str, Any],
    outcome: AuditOutcome,
    *,
    request_id: str,
) -> AuditEntry:
    return AuditEntry(
        actor=f"system:webhook:{event.source.value}",
        action=AuditAction.WEBHOOK_EFFECT.value,
        request_id=request_id,
        outcome=outcome,
        target_kind="org",
        target_id=org_id,
        details={
            "source": event.source.value,
            "event_type": event.event_type,
            "event_id": event.event_id,
            **details,
        },
    )


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")
