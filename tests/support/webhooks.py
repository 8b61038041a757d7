"""Sign webhook deliveries as the platforms do, independently of the code under test.

Stripe's and Standard Webhooks' signatures come from their own libraries (`stripe`,
`standardwebhooks`, `svix`); GitHub and Lemon Squeezy publish no library for this, so theirs
are the documented algorithm (hex HMAC-SHA256 of the raw body) computed with `hmac` here, and
GitHub's documented example is checked as a fixed vector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import standardwebhooks
import stripe
import svix.webhooks

# docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation".
GITHUB_EXAMPLE_SECRET = "It's a Secret to Everybody"
GITHUB_EXAMPLE_BODY = b"Hello, World!"
GITHUB_EXAMPLE_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def stripe_headers(body: bytes, secret: str, *, timestamp: int) -> dict[str, str]:
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode("utf-8"), secret, timestamp=timestamp
    )
    return {"Stripe-Signature": header}


def standard_headers(
    body: bytes, secret: str, *, message_id: str, timestamp: int, library: str = "standard"
) -> dict[str, str]:
    """`webhook-*` headers signed by `standardwebhooks` (or by `svix`, with svix's names)."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    if library == "svix":
        signature = svix.webhooks.Webhook(secret).sign(message_id, when, body.decode("utf-8"))
        return {
            "svix-id": message_id,
            "svix-timestamp": str(timestamp),
            "svix-signature": signature,
        }
    signature = standardwebhooks.Webhook(secret).sign(message_id, when, body.decode("utf-8"))
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def hex_hmac(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def github_headers(
    body: bytes, secret: str, *, delivery: str, event: str = "push"
) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body),
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": event,
    }


def lemonsqueezy_headers(body: bytes, secret: str, *, event_name: str) -> dict[str, str]:
    return {"X-Signature": hex_hmac(secret, body), "X-Event-Name": event_name}


# ---- event bodies, shaped as each platform documents them -------------------------------------


def custom_data(org_id: str, nonce: str) -> dict[str, str]:
    return {"strongroom_org_id": org_id, "strongroom_nonce": nonce}


def stripe_subscription_event(
    event_id: str,
    event_type: str,
    *,
    custom: dict[str, str] | None,
    price: str = "price_local_team",
    status: str = "active",
    created: int = 1795000000,
    subscription_id: str = "sub_1PzSampleSubscription",
) -> bytes:
    """A Stripe subscription event; `created` is the event's time (Stripe's order of events),
    `subscription_id` the subscription it reports."""
    document: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": False,
        "type": event_type,
        "data": {
            "object": {
                "id": subscription_id,
                "object": "subscription",
                "status": status,
                "customer": "cus_SampleCustomer",
                "metadata": custom or {},
                "items": {
                    "object": "list",
                    "data": [{"id": "si_Sample", "price": {"id": price, "object": "price"}}],
                },
            }
        },
    }
    return json.dumps(document, indent=2).encode("utf-8")


def lemonsqueezy_event(
    event_name: str,
    *,
    custom: dict[str, str] | None,
    resource: str = "orders",
    resource_id: str = "1",
    variant_id: int = 1002,
    status: str = "paid",
    updated_at: str = "2026-11-23T09:00:00.000000Z",
    order_id: int = 1,
    state: dict[str, Any] | None = None,
) -> bytes:
    """A Lemon Squeezy event; `state` adds attributes (a refund's `refunded`, amounts).
    A subscription names the order that bought it (`order_id`)."""
    attributes: dict[str, Any] = {
        "store_id": 1,
        "customer_id": 1,
        "status": status,
        "user_email": "buyer@example.com",
        "created_at": "2026-11-23T09:00:00.000000Z",
        "updated_at": updated_at,
        **(state or {}),
    }
    if resource == "orders":
        attributes["first_order_item"] = {"id": 1, "order_id": 1, "variant_id": variant_id}
    else:
        attributes["order_id"] = order_id
        attributes["variant_id"] = variant_id
    meta: dict[str, Any] = {"test_mode": True, "event_name": event_name}
    if custom is not None:
        meta["custom_data"] = custom
    document = {
        "meta": meta,
        "data": {"type": resource, "id": resource_id, "attributes": attributes},
    }
    return json.dumps(document).encode("utf-8")


def standard_event(
    event_type: str,
    *,
    custom: dict[str, str] | None,
    product_id: str = "prod_local_team",
    state: dict[str, Any] | None = None,
) -> bytes:
    """A Standard Webhooks (Polar) event; `state` adds to its data (a `status`, say). Its
    resource was created at the event's time and not modified since (`modified_at` null)."""
    document = {
        "type": event_type,
        "timestamp": "2026-11-23T09:00:00Z",
        "data": {
            "id": "sub_sample",
            "created_at": "2026-11-23T09:00:00Z",
            "modified_at": None,
            "product_id": product_id,
            "metadata": custom or {},
            **(state or {}),
        },
    }
    return json.dumps(document, separators=(",", ":")).encode("utf-8")
