"""What a verified delivery says: its event id and type, and the billing change it asks for.

Read only after the signature verified, from the body exactly as received (parsed, never
re-serialised). A billing change is recognised only in these events, and only when the custom
data our checkout handed out (`strongroom_org_id`, `strongroom_nonce`) came back with it:

- stripe: `customer.subscription.created` (status active or trialing) raises the plan;
  `customer.subscription.deleted` and `charge.refunded` return it to free. Custom data in
  `data.object.metadata`; products: each `data.object.items.data[].price.id`.
- lemonsqueezy: `subscription_created` and `order_created` (status paid) raise the plan;
  `subscription_cancelled`, `subscription_expired` and `order_refunded` return it to free.
  Custom data in `meta.custom_data`; product: `variant_id` (orders:
  `first_order_item.variant_id`).
- standard: `subscription.created`, `subscription.active` and `order.paid` raise the plan;
  `subscription.canceled`, `subscription.revoked` and `order.refunded` return it to free.
  Custom data in `data.metadata`; product: `data.product_id`.

GitHub deliveries never change a plan. Which plan a product grants is the deployment's
`STRONGROOM_BILLING_PRODUCTS`; whether the nonce holds is billing's to decide.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any

from webhook_verifier.exceptions import EventUnreadable
from webhook_verifier.schemes import Verified
from webhook_verifier.sources import Source

CUSTOM_ORG_ID = "strongroom_org_id"
CUSTOM_NONCE = "strongroom_nonce"
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}")
_EVENT_TYPE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_PRODUCT = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class ChangeKind(enum.StrEnum):
    ACTIVATE = "activate"
    DEACTIVATE = "deactivate"


@dataclass(frozen=True, slots=True)
class BillingChange:
    """A plan change an event asks for, with the org and nonce exactly as it carries them."""

    kind: ChangeKind
    org_id: str
    nonce: str
    # The platform's product ids the event names (activations only).
    products: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InboundEvent:
    source: Source
    event_id: str
    event_type: str
    billing: BillingChange | None = None


_STRIPE = {
    "customer.subscription.created": ChangeKind.ACTIVATE,
    "customer.subscription.deleted": ChangeKind.DEACTIVATE,
    "charge.refunded": ChangeKind.DEACTIVATE,
}
_LEMONSQUEEZY = {
    "subscription_created": ChangeKind.ACTIVATE,
    "order_created": ChangeKind.ACTIVATE,
    "subscription_cancelled": ChangeKind.DEACTIVATE,
    "subscription_expired": ChangeKind.DEACTIVATE,
    "order_refunded": ChangeKind.DEACTIVATE,
}
_STANDARD = {
    "subscription.created": ChangeKind.ACTIVATE,
    "subscription.active": ChangeKind.ACTIVATE,
    "order.paid": ChangeKind.ACTIVATE,
    "subscription.canceled": ChangeKind.DEACTIVATE,
    "subscription.revoked": ChangeKind.DEACTIVATE,
    "order.refunded": ChangeKind.DEACTIVATE,
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
    kind = _STRIPE.get(event_type)
    if kind is ChangeKind.ACTIVATE and event_object.get("status") not in ("active", "trialing"):
        kind = None
    products: list[Any] = []
    if kind is ChangeKind.ACTIVATE:
        items = _object(event_object.get("items")).get("data")
        for item in items if isinstance(items, list) else []:
            products.append(_object(_object(item).get("price")).get("id"))
    billing = _change(kind, event_object.get("metadata"), products)
    return InboundEvent(Source.STRIPE, event_id, event_type, billing)


def _lemonsqueezy(document: dict[str, Any]) -> InboundEvent:
    meta = _object(document.get("meta"))
    data = _object(document.get("data"))
    attributes = _object(data.get("attributes"))
    event_type = _event_type(meta.get("event_name"))
    # Lemon Squeezy numbers no event: an event is its name and the state of the resource it
    # reports (type, id, updated_at), all inside the signed body.
    resource_id = _scalar(data.get("id"))
    if not resource_id:
        raise EventUnreadable("the event names no resource")
    parts = [
        event_type,
        _scalar(data.get("type")),
        resource_id,
        _scalar(attributes.get("updated_at")),
    ]
    event_id = _event_id(":".join(parts))
    kind = _LEMONSQUEEZY.get(event_type)
    products: list[Any] = []
    if event_type == "subscription_created":
        products.append(attributes.get("variant_id"))
    elif event_type == "order_created":
        if attributes.get("status") != "paid":
            kind = None
        products.append(_object(attributes.get("first_order_item")).get("variant_id"))
    billing = _change(kind, meta.get("custom_data"), products)
    return InboundEvent(Source.LEMONSQUEEZY, event_id, event_type, billing)


def _standard(document: dict[str, Any], event_id: str) -> InboundEvent:
    event_type = _event_type(document.get("type"))
    data = _object(document.get("data"))
    kind = _STANDARD.get(event_type)
    products = [data.get("product_id")] if kind is ChangeKind.ACTIVATE else []
    billing = _change(kind, data.get("metadata"), products)
    return InboundEvent(Source.STANDARD, _event_id(event_id), event_type, billing)


# ---- parts ------------------------------------------------------------------------------------


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
