"""Write events/webhook_verifier/: one signed sample delivery per scenario.

    .venv/bin/python -m tests.support.webhook_samples

Signed with the obviously fake secrets of events/webhook_verifier/sample_secrets.json at the
sample events' time (`SAMPLE_TIME`), by the platforms' own libraries where they have one.
tests/unit/webhook_verifier/test_sample_events.py replays them in `SCENARIO` order.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.events import EVENTS_DIR, load_event
from tests.support.webhooks import (
    custom_data,
    github_headers,
    lemonsqueezy_event,
    lemonsqueezy_headers,
    standard_event,
    standard_headers,
    stripe_headers,
    stripe_subscription_event,
)

SAMPLES = EVENTS_DIR / "webhook_verifier"
SAMPLE_TIME = 1795000000
SAMPLE_ORG = "org_sampleorg234567abcdefghijk"
# What create_checkout mints, in order, when the test replays the scenario.
SAMPLE_NONCES = (
    "chk_sample-nonce-one-not-a-real-0001",
    "chk_sample-nonce-two-not-a-real-0002",
    "chk_sample-nonce-three-not-real-0003",
    "chk_sample-nonce-four-not-real-00004",
)


def sample_secrets() -> dict[str, str]:
    document: dict[str, str] = json.loads((SAMPLES / "sample_secrets.json").read_text("utf-8"))
    return document


def _delivery(source: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    event = load_event("http_api_v2_base")
    route = "POST /webhooks/{source}"
    path = f"/webhooks/{source}"
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = "POST"
    event["requestContext"]["http"]["userAgent"] = "platform-webhooks/1.0"
    del event["requestContext"]["authorizer"]
    event["headers"] = {
        "content-type": "application/json",
        "host": "api.strongroom.example",
        "user-agent": "platform-webhooks/1.0",
        **{name.lower(): value for name, value in headers.items()},
    }
    event["pathParameters"] = {"source": source}
    event["body"] = body.decode("utf-8")
    return event


def _lemonsqueezy_time(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _polar_time(epoch_seconds: int) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_samples() -> dict[str, dict[str, Any]]:
    secrets = sample_secrets()
    one, two, three, four = (custom_data(SAMPLE_ORG, nonce) for nonce in SAMPLE_NONCES)
    samples: dict[str, dict[str, Any]] = {}

    def stripe(
        name: str, event_id: str, event_type: str, custom: dict[str, str], **state: Any
    ) -> None:
        body = stripe_subscription_event(event_id, event_type, custom=custom, **state)
        headers = stripe_headers(body, secrets["stripe"], timestamp=SAMPLE_TIME)
        samples[name] = _delivery("stripe", body, headers)

    def lemon(
        name: str,
        event_name: str,
        custom: dict[str, str],
        *,
        status: str = "paid",
        variant_id: int = 1001,
        updated_at: int | None = None,
        **state: Any,
    ) -> None:
        is_order = event_name.startswith("order")
        when = {}
        if updated_at is not None:
            when["updated_at"] = _lemonsqueezy_time(updated_at)
        body = lemonsqueezy_event(
            event_name,
            custom=custom,
            resource="orders" if is_order else "subscriptions",
            # A subscription, and the order that bought it.
            resource_id="1" if is_order else "7301",
            order_id=2,
            variant_id=variant_id,
            status=status,
            state=state,
            **when,
        )
        headers = lemonsqueezy_headers(body, secrets["lemonsqueezy"], event_name=event_name)
        samples[name] = _delivery("lemonsqueezy", body, headers)

    def standard(
        name: str,
        message_id: str,
        event_type: str,
        custom: dict[str, str],
        *,
        product_id: str = "prod_local_enterprise",
        **state: Any,
    ) -> None:
        body = standard_event(event_type, custom=custom, product_id=product_id, state=state)
        headers = standard_headers(
            body, secrets["standard"], message_id=message_id, timestamp=SAMPLE_TIME
        )
        samples[name] = _delivery("standard", body, headers)

    checkout = load_event("credential_store/get_org")
    checkout["routeKey"] = checkout["requestContext"]["routeKey"] = (
        "POST /orgs/{org_id}/billing/checkout"
    )
    path = f"/orgs/{SAMPLE_ORG}/billing/checkout"
    checkout["rawPath"] = checkout["requestContext"]["http"]["path"] = path
    checkout["requestContext"]["http"]["method"] = "POST"
    checkout["pathParameters"] = {"org_id": SAMPLE_ORG}
    samples["create_checkout"] = checkout

    # Stripe orders its events by `created`: each below is a minute newer than the one before.
    stripe(
        "stripe_subscription_created",
        "evt_1SampleCreated",
        "customer.subscription.created",
        one,
        created=SAMPLE_TIME - 180,
    )
    # A renewal charge failed: the org drops to free, remembering the plan it pays for.
    stripe(
        "stripe_subscription_past_due",
        "evt_1SamplePastDue",
        "customer.subscription.updated",
        one,
        status="past_due",
        created=SAMPLE_TIME - 120,
    )
    # Paid again, on another price: the org gets that price's plan.
    stripe(
        "stripe_subscription_updated",
        "evt_1SampleUpdated",
        "customer.subscription.updated",
        one,
        price="price_local_starter",
        created=SAMPLE_TIME - 60,
    )
    stripe(
        "stripe_subscription_deleted", "evt_1SampleDeleted", "customer.subscription.deleted", one
    )
    lemon("lemonsqueezy_order_created", "order_created", two, refunded=False, total=4900)
    # Refunded in full: a partial refund leaves the order `paid` and changes no plan.
    lemon(
        "lemonsqueezy_order_refunded",
        "order_refunded",
        two,
        status="refunded",
        refunded=True,
        total=4900,
        refunded_amount=4900,
    )
    # A subscription: Lemon Squeezy orders its states by their `updated_at`, a minute apart.
    subscribed = _lemonsqueezy_time(SAMPLE_TIME - 180)
    lemon(
        "lemonsqueezy_subscription_created",
        "subscription_created",
        four,
        status="active",
        variant_id=1003,
        updated_at=SAMPLE_TIME - 180,
        created_at=subscribed,
    )
    # A renewal failed: the org drops to free, remembering the plan it pays for.
    lemon(
        "lemonsqueezy_subscription_past_due",
        "subscription_updated",
        four,
        status="past_due",
        variant_id=1003,
        updated_at=SAMPLE_TIME - 120,
        created_at=subscribed,
    )
    # Paid again, on another variant: the org gets that variant's plan.
    lemon(
        "lemonsqueezy_subscription_updated",
        "subscription_updated",
        four,
        status="active",
        variant_id=1001,
        updated_at=SAMPLE_TIME - 60,
        created_at=subscribed,
    )
    lemon(
        "lemonsqueezy_subscription_expired",
        "subscription_expired",
        four,
        status="expired",
        variant_id=1001,
        updated_at=SAMPLE_TIME,
        created_at=subscribed,
        ends_at=_lemonsqueezy_time(SAMPLE_TIME),
    )
    # A Polar subscription: its `modified_at` (null until first modified) orders its states.
    polar_subscription = {
        "id": "6f0c2a8e-5b1d-4c3f-9a7e-2d4b8c1e0f35",
        "created_at": _polar_time(SAMPLE_TIME - 180),
    }
    standard(
        "standard_subscription_created",
        "msg_sample_created",
        "subscription.created",
        three,
        status="active",
        **polar_subscription,
    )
    # A renewal failed: the org drops to free, remembering the plan it pays for.
    standard(
        "standard_subscription_past_due",
        "msg_sample_past_due",
        "subscription.updated",
        three,
        status="past_due",
        modified_at=_polar_time(SAMPLE_TIME - 120),
        **polar_subscription,
    )
    # Paid again, on another product: the org gets that product's plan.
    standard(
        "standard_subscription_updated",
        "msg_sample_updated",
        "subscription.updated",
        three,
        product_id="prod_local_starter",
        status="active",
        modified_at=_polar_time(SAMPLE_TIME - 60),
        **polar_subscription,
    )
    # Access ended (a `subscription.canceled` only says it will, at the period's end).
    standard(
        "standard_subscription_revoked",
        "msg_sample_revoked",
        "subscription.revoked",
        three,
        product_id="prod_local_starter",
        status="canceled",
        modified_at=_polar_time(SAMPLE_TIME),
        **polar_subscription,
    )
    body = json.dumps({"zen": "Design for failure.", "hook_id": 1}, indent=2).encode()
    headers = github_headers(
        body, secrets["github"], delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958", event="ping"
    )
    samples["github_ping"] = _delivery("github", body, headers)
    forged = dict(samples["stripe_subscription_created"])
    forged["headers"] = {
        **forged["headers"],
        "stripe-signature": stripe_headers(
            forged["body"].encode(), "whsec_not_the_secret", timestamp=SAMPLE_TIME
        )["Stripe-Signature"],
    }
    samples["stripe_forged_signature"] = forged
    return samples


def write_samples(directory: Path = SAMPLES) -> None:
    directory.mkdir(exist_ok=True)
    for name, event in build_samples().items():
        text = json.dumps(event, indent=2, ensure_ascii=False) + "\n"
        (directory / f"{name}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_samples()
