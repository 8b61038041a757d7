"""What a verified delivery says: its event id and type, and the billing change it asks for.

Read only after the signature verified, from the body exactly as received (parsed, never
re-serialised). A billing change is recognised only in these events, only when the resource the
event carries is in the state named here, and only when the custom data our checkout handed out
(`strongroom_org_id`, `strongroom_nonce`) came back with it. A plan is raised when the platform
says the customer paid (or is on a trial), and returned to free when access ends, never earlier:

- stripe: `customer.subscription.created` or `customer.subscription.updated` (status `active`
  or `trialing`) raises the plan: a subscription created `incomplete` (a card that needed 3-D
  Secure) becomes active by an update. Once a nonce activated a subscription, its later
  `customer.subscription.updated` events (an `update`: status `active` or `trialing`, or one of
  the unpaid ones, `past_due`, `unpaid`, `paused`, `incomplete_expired`, `canceled`) re-map the
  plan to a new price, suspend it to free while unpaid and restore it when paid again; the
  event's `created` orders them (billing keeps the newest applied, and the subscription's
  `data.object.id` must be the one the nonce activated).
  `customer.subscription.deleted` (the subscription ended: cancelled now, or at the end of the
  period it was cancelled for) returns it to free. Custom data in `data.object.metadata`;
  products: each `data.object.items.data[].price.id`. `charge.refunded` changes nothing: a
  Charge does not carry its subscription's metadata, so it cannot name the nonce, and a refund
  does not end a Stripe subscription (cancelling it does, with `customer.subscription.deleted`).
- lemonsqueezy: `subscription_created` (status `active` or `on_trial`) and `order_created`
  (status `paid`) raise the plan. Once a nonce activated a subscription, its later
  `subscription_updated` events (an `update`: status `active` or `on_trial`; `past_due`,
  `unpaid`, `paused` or `expired`, unpaid; or `cancelled`, which runs to `ends_at` on what
  was paid and keeps the standing it had) re-map the plan to a new variant, suspend it to free
  while unpaid and restore it when paid again; the subscription's `updated_at` orders them
  (the time of the state the event reports: Lemon Squeezy numbers no event, and every event
  about one subscription carries its whole state as of that time). The subscription must be
  the one the nonce activated: `data.id`, or, for a nonce activated by its order, its
  `order_id`. `subscription_updated` is the catch-all Lemon Squeezy sends with every change,
  so `subscription_paused`, `_unpaused` and `_resumed` add nothing, and the
  `subscription_payment_*` events carry an invoice, not the subscription's status or variant.
  `subscription_expired` and `order_refunded` for a full refund (status `refunded`,
  `refunded` true, `refunded_amount` at least `total`) return it to free, if they report
  what the nonce activated (the subscription's `data.id` and `order_id`, the order's
  `data.id`). `subscription_cancelled` changes nothing: the subscription runs to `ends_at`
  (its grace period) and `subscription_expired` follows. Custom data in `meta.custom_data`; product:
  `variant_id` (orders: `first_order_item.variant_id`). Fields as documented at
  docs.lemonsqueezy.com (api/subscriptions, help/webhooks/event-types).
- standard (the events and payloads of Polar, a Standard Webhooks sender):
  `subscription.created` and `subscription.active` (status `active` or `trialing`) and
  `order.paid` (status `paid`) raise the plan. Once a nonce activated a subscription, its later
  `subscription.updated` events (an `update`: status `active` or `trialing`, or one of the
  unpaid ones, `past_due`, `unpaid`, `paused`, `incomplete_expired`, `canceled`) re-map the
  plan to a new product, suspend it to free while unpaid and restore it when paid again. A
  cancellation at the period's end keeps `active` (with `cancel_at_period_end`) until access
  ends; `canceled` is that end (Polar counts it revoked) and `subscription.revoked` follows.
  The subscription's `modified_at` (its `created_at` until first modified) orders them: the
  time of the state the event carries. Not the `webhook-timestamp` header: Polar signs each
  delivery attempt anew, so a retried older event carries a newer one. The subscription must
  be the one the nonce activated: `data.id`, an order's `subscription_id`.
  `subscription.updated` is the catch-all Polar sends with every change, so
  `subscription.uncanceled` and `.past_due` (and `.active` and `.canceled` once activated) are
  not read as updates as well.
  `subscription.revoked` and `order.refunded` for a full refund (status `refunded`, not
  `partially_refunded`) return it to free, if they report what the nonce activated (the
  subscription's `data.id`; the order's `subscription_id`, or its `data.id` for a one-time
  purchase). `subscription.canceled` changes nothing: it means
  "cancels at the end of the period", and `subscription.revoked` comes when access ends. Custom
  data in `data.metadata`; product: `data.product_id`. Fields as documented at
  polar.sh/docs (integrate/webhooks/events) and in Polar's Subscription and Order schemas.

Where a payload does not show the state a rule needs (a status missing, a refund flag or amount
absent or of another type, an update's time missing or without its UTC offset), the rule does
not hold and the plan stays as it is.

GitHub deliveries never change a plan. Which plan a product grants is the deployment's
`STRONGROOM_BILLING_PRODUCTS`; whether the nonce holds is billing's to decide.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from webhook_verifier.exceptions import EventUnreadable
from webhook_verifier.schemes import Verified
from webhook_verifier.sources import Source

CUSTOM_ORG_ID = "strongroom_org_id"
CUSTOM_NONCE = "strongroom_nonce"
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_PRODUCT = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_MAX_TIME_TEXT = 40
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class ChangeKind(enum.StrEnum):
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"
    # A subscription's new state: activates it if its nonce has not yet, else re-maps,
    # suspends or restores the plan it set.
    UPDATE = "update"


# Subscription statuses of each source: paid for (or on a trial), and not paid for.
STRIPE_PAYING = ("active", "trialing")
STRIPE_NOT_PAYING = ("past_due", "unpaid", "paused", "incomplete_expired", "canceled")
LEMONSQUEEZY_PAYING = ("active", "on_trial")
LEMONSQUEEZY_NOT_PAYING = ("past_due", "unpaid", "paused", "expired")
# Cancelled: no more payments, but it runs to `ends_at` on what was paid. It says neither, so it
# keeps the standing the subscription had (a suspended one is not lifted by it).
LEMONSQUEEZY_RUNNING_OUT = ("cancelled",)
POLAR_PAYING = ("active", "trialing")
POLAR_NOT_PAYING = ("past_due", "unpaid", "paused", "incomplete_expired", "canceled")


@dataclass(frozen=True, slots=True)
class BillingChange:
    """A plan change an event asks for, with the org and nonce exactly as it carries them."""

    kind: ChangeKind
    org_id: str
    nonce: str
    # The platform's product ids the event names (activations and updates only).
    products: tuple[str, ...] = ()
    # The subscription the event reports (Stripe: `data.object.id`; Lemon Squeezy and Polar:
    # a subscription's `data.id`, or a Polar order's `subscription_id`; empty when the event
    # names none) and the order it reports (an order's `data.id`; Lemon Squeezy: a
    # subscription's `order_id`, the order that bought it). Ends and refunds name them too, so
    # that only the end of what the nonce activated ends it.
    subscription_id: str = ""
    order_id: str = ""
    # Its status; whether that says it is paid for (None: says neither, and keeps the standing
    # it had); and when it came to the state the event reports, the key that orders its events
    # (None when the event does not say): Stripe's event `created` in epoch seconds, Lemon
    # Squeezy's `updated_at` and Polar's `modified_at` (or `created_at`) in epoch microseconds.
    status: str = ""
    paying: bool | None = True
    state_at: int | None = None


@dataclass(frozen=True, slots=True)
class InboundEvent:
    source: Source
    event_id: str
    event_type: str
    billing: BillingChange | None = None


# A rule: the change an event asks for, and whether its resource is in the state that makes it.
Holds = Callable[[dict[str, Any]], bool]


def _status_in(*statuses: str) -> Holds:
    return lambda resource: resource.get("status") in statuses


def _always(_resource: dict[str, Any]) -> bool:
    return True


def _lemonsqueezy_full_refund(order: dict[str, Any]) -> bool:
    """order_refunded comes for partial refunds too: the order then stays `paid`, `refunded`
    false, with `refunded_amount` below `total` (cents, both integers, always sent)."""
    refunded, total = _amount(order.get("refunded_amount")), _amount(order.get("total"))
    return (
        order.get("status") == "refunded"
        and order.get("refunded") is True
        and refunded is not None
        and total is not None
        and refunded >= total
    )


# Polar's order statuses tell the two apart: `refunded` (in full) and `partially_refunded`.
# Its amounts are not compared: whether `refunded_amount` counts the tax is not something its
# schema settles, and a full refund must not look partial for it.
_standard_full_refund = _status_in("refunded")

_STRIPE: dict[str, tuple[ChangeKind, Holds]] = {
    "customer.subscription.created": (ChangeKind.ACTIVATE, _status_in(*STRIPE_PAYING)),
    "customer.subscription.updated": (
        ChangeKind.UPDATE,
        _status_in(*STRIPE_PAYING, *STRIPE_NOT_PAYING),
    ),
    "customer.subscription.deleted": (ChangeKind.DEACTIVATE, _always),
}
_LEMONSQUEEZY: dict[str, tuple[ChangeKind, Holds]] = {
    "subscription_created": (ChangeKind.ACTIVATE, _status_in(*LEMONSQUEEZY_PAYING)),
    "subscription_updated": (
        ChangeKind.UPDATE,
        _status_in(*LEMONSQUEEZY_PAYING, *LEMONSQUEEZY_NOT_PAYING, *LEMONSQUEEZY_RUNNING_OUT),
    ),
    "order_created": (ChangeKind.ACTIVATE, _status_in("paid")),
    "subscription_expired": (ChangeKind.DEACTIVATE, _always),
    "order_refunded": (ChangeKind.DEACTIVATE, _lemonsqueezy_full_refund),
}
_STANDARD: dict[str, tuple[ChangeKind, Holds]] = {
    "subscription.created": (ChangeKind.ACTIVATE, _status_in(*POLAR_PAYING)),
    "subscription.active": (ChangeKind.ACTIVATE, _status_in(*POLAR_PAYING)),
    "subscription.updated": (ChangeKind.UPDATE, _status_in(*POLAR_PAYING, *POLAR_NOT_PAYING)),
    "order.paid": (ChangeKind.ACTIVATE, _status_in("paid")),
    "subscription.revoked": (ChangeKind.DEACTIVATE, _always),
    "order.refunded": (ChangeKind.DEACTIVATE, _standard_full_refund),
}


def read_event(source: Source, verified: Verified, body: bytes) -> InboundEvent:
    """The event of a verified delivery; EventUnreadable if the body is not one."""
    if source is Source.GITHUB:
        # Not parsed: GitHub may send form-encoded payloads, and no GitHub event has an effect.
        event_id = verified.event_id or ""
        return InboundEvent(source, event_id, verified.event_type or "unknown")
    document = _load(body)
    if source is Source.STRIPE:
        return _stripe(document)
    if source is Source.LEMONSQUEEZY:
        return _lemonsqueezy(document)
    return _standard(document, verified.event_id or "")


def _stripe(document: dict[str, Any]) -> InboundEvent:
    event_id = _event_id(document.get("id"))
    event_type = _event_type(document.get("type"))
    event_object = _object(_object(document.get("data")).get("object"))
    kind = _kind(_STRIPE, event_type, event_object)
    products: list[Any] = []
    if kind in (ChangeKind.ACTIVATE, ChangeKind.UPDATE):
        items = _object(event_object.get("items")).get("data")
        for item in items if isinstance(items, list) else []:
            products.append(_object(_object(item).get("price")).get("id"))
    billing = _change(kind, event_object.get("metadata"), products)
    if billing is not None:
        billing = replace(
            billing,
            subscription_id=_identifier(_scalar(event_object.get("id"))),
            status=_scalar(event_object.get("status"))[:32],
            paying=event_object.get("status") in STRIPE_PAYING,
            state_at=_epoch_seconds(document.get("created")),
        )
    return InboundEvent(Source.STRIPE, event_id, event_type, billing)


def _lemonsqueezy(document: dict[str, Any]) -> InboundEvent:
    meta = _object(document.get("meta"))
    data = _object(document.get("data"))
    attributes = _object(data.get("attributes"))
    event_type = _event_type(meta.get("event_name"))
    # Lemon Squeezy numbers no event: an event is its name and the state of the resource it
    # reports (type, id, updated_at, and the status and variant its effect reads: two states of
    # one second are two events, not a repeat of one), all inside the signed body.
    resource_id = _scalar(data.get("id"))
    if not resource_id:
        raise EventUnreadable("the event names no resource")
    parts = [
        event_type,
        _scalar(data.get("type")),
        resource_id,
        _scalar(attributes.get("updated_at")),
        _identifier(_scalar(attributes.get("status"))[:32]),
        _identifier(_scalar(attributes.get("variant_id"))[:32]),
    ]
    event_id = _event_id(":".join(parts))
    kind = _kind(_LEMONSQUEEZY, event_type, attributes)
    products: list[Any] = []
    if event_type in ("subscription_created", "subscription_updated"):
        products.append(attributes.get("variant_id"))
    elif event_type == "order_created":
        products.append(_object(attributes.get("first_order_item")).get("variant_id"))
    billing = _change(kind, meta.get("custom_data"), products)
    if billing is None:
        return InboundEvent(Source.LEMONSQUEEZY, event_id, event_type, billing)
    if event_type.startswith("order_"):
        # An order names no subscription (the subscription it bought names it, `order_id`), nor
        # its state: its activation and its refund are bound to the order.
        billing = replace(billing, order_id=_identifier(resource_id))
    else:
        status = attributes.get("status")
        billing = replace(
            billing,
            subscription_id=_identifier(resource_id),
            order_id=_identifier(_scalar(attributes.get("order_id"))),
            status=_scalar(status)[:32],
            paying=None if status in LEMONSQUEEZY_RUNNING_OUT else status in LEMONSQUEEZY_PAYING,
            state_at=_epoch_microseconds(attributes.get("updated_at")),
        )
    return InboundEvent(Source.LEMONSQUEEZY, event_id, event_type, billing)


def _standard(document: dict[str, Any], event_id: str) -> InboundEvent:
    event_type = _event_type(document.get("type"))
    data = _object(document.get("data"))
    kind = _kind(_STANDARD, event_type, data)
    products = [data.get("product_id")] if kind in (ChangeKind.ACTIVATE, ChangeKind.UPDATE) else []
    billing = _change(kind, data.get("metadata"), products)
    if billing is None:
        return InboundEvent(Source.STANDARD, _event_id(event_id), event_type, billing)
    if event_type.startswith("order."):
        # A subscription's order names it; a one-time purchase's names none (its end, a
        # refund, is bound to the order itself).
        billing = replace(
            billing,
            subscription_id=_identifier(_scalar(data.get("subscription_id"))),
            order_id=_identifier(_scalar(data.get("id"))),
        )
        if kind is ChangeKind.DEACTIVATE:
            billing = replace(billing, state_at=_polar_state_at(data))
    else:
        status = data.get("status")
        billing = replace(
            billing,
            subscription_id=_identifier(_scalar(data.get("id"))),
            status=_scalar(status)[:32],
            paying=status in POLAR_PAYING,
            state_at=_polar_state_at(data),
        )
    return InboundEvent(Source.STANDARD, _event_id(event_id), event_type, billing)


# ---- parts ------------------------------------------------------------------------------------


def _kind(
    rules: dict[str, tuple[ChangeKind, Holds]], event_type: str, resource: dict[str, Any]
) -> ChangeKind | None:
    """The change the event asks for, if it is one of `rules` and its resource's state holds."""
    rule = rules.get(event_type)
    if rule is None:
        return None
    kind, holds = rule
    return kind if holds(resource) else None


def _amount(value: Any) -> int | None:
    """An amount in cents (a non-negative integer); None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _epoch_seconds(value: Any) -> int | None:
    """A time in whole seconds since the epoch (Stripe's `created`); None for anything else."""
    return _amount(value)


def _epoch_microseconds(value: Any) -> int | None:
    """An ISO 8601 time with its UTC offset (Lemon Squeezy's `updated_at`, Polar's
    `modified_at`) in microseconds since the epoch, the finest its text can say; None for
    anything else."""
    if not isinstance(value, str) or len(value) > _MAX_TIME_TEXT:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.utcoffset() is None:
        return None  # a local time of an unknown zone orders nothing
    return (moment - _EPOCH) // _MICROSECOND


def _polar_state_at(resource: dict[str, Any]) -> int | None:
    """When a Polar resource came to the state an event carries: its `modified_at`, null until
    it is first modified, then its `created_at`."""
    modified = resource.get("modified_at")
    return _epoch_microseconds(resource.get("created_at") if modified is None else modified)


def _identifier(text: str) -> str:
    """A platform's id of a subscription or order, or "" for anything that is not one."""
    return text if _PRODUCT.fullmatch(text) else ""


def _load(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):
        raise EventUnreadable("the body is not a JSON event") from None
    if not isinstance(document, dict):
        raise EventUnreadable("the body is not a JSON object")
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two values for one key are read differently by different parsers: refuse the event.
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key")
    return document


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, str | int) else ""


def _event_id(value: Any) -> str:
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise EventUnreadable("the event has no usable id")
    return value


def _event_type(value: Any) -> str:
    if not isinstance(value, str) or not _EVENT_TYPE.fullmatch(value):
        raise EventUnreadable("the event has no usable type")
    return value


def _change(kind: ChangeKind | None, custom: Any, products: list[Any]) -> BillingChange | None:
    """The change, if the event is a billing one that carries our custom data."""
    custom = _object(custom)
    if kind is None or (CUSTOM_ORG_ID not in custom and CUSTOM_NONCE not in custom):
        return None
    org_id, nonce = custom.get(CUSTOM_ORG_ID), custom.get(CUSTOM_NONCE)
    named = tuple(
        text for text in (_scalar(product) for product in products) if _PRODUCT.fullmatch(text)
    )
    return BillingChange(
        kind,
        org_id if isinstance(org_id, str) else "",
        nonce if isinstance(nonce, str) else "",
        named,
    )
