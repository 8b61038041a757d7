"""Checkout nonces and the plan changes that signed billing events make with them."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from strongroom.audit import AuditLog
from strongroom.audit.pending import SWEEP_GRACE
from tests.support.http import http_event
from tests.support.webhooks import (
    custom_data,
    lemonsqueezy_event,
    lemonsqueezy_headers,
    standard_event,
    standard_headers,
    stripe_headers,
    stripe_subscription_event,
)
from tests.unit.webhook_verifier.conftest import NOW, Response, WebhookStack

# Products of the local deployment (strongroom_local.provision.LOCAL_BILLING_PRODUCTS).
TEAM_PRODUCT = {"stripe": "price_local_team", "lemonsqueezy": 1002, "standard": "prod_local_team"}
EVENTS = {
    "stripe": ("customer.subscription.created", "customer.subscription.deleted"),
    "lemonsqueezy": ("order_created", "order_refunded"),
    "standard": ("subscription.created", "subscription.revoked"),
}
SOURCES = sorted(EVENTS)
# The state of each event's resource when the platform sends it for real (a key set to None is
# left out of the payload).
STATES: dict[str, dict[str, Any]] = {
    "customer.subscription.created": {"status": "active"},
    # Cancelled for the end of the period: still active until customer.subscription.deleted.
    "customer.subscription.updated": {"status": "active", "cancel_at_period_end": True},
    "customer.subscription.deleted": {"status": "canceled"},
    "subscription_created": {"status": "active"},
    "subscription_updated": {"status": "active"},
    # In its grace period until ends_at, then subscription_expired.
    "subscription_cancelled": {"status": "cancelled", "ends_at": "2026-12-23T09:00:00.000000Z"},
    "subscription_expired": {"status": "expired"},
    "order_created": {"status": "paid", "refunded": False, "total": 4900, "refunded_amount": 0},
    "order_refunded": {
        "status": "refunded",
        "refunded": True,
        "total": 4900,
        "refunded_amount": 4900,
    },
    "subscription.created": {"status": "active"},
    "subscription.active": {"status": "active"},
    "subscription.updated": {"status": "active", "cancel_at_period_end": False},
    # Polar: cancels at the end of the period; access ends with subscription.revoked.
    "subscription.canceled": {"status": "active", "cancel_at_period_end": True},
    "subscription.revoked": {"status": "canceled"},
    "order.paid": {"status": "paid"},
    "order.refunded": {"status": "refunded"},
}
# Where each platform puts the resource an event reports.
RESOURCE = {
    "stripe": ("data", "object"),
    "lemonsqueezy": ("data", "attributes"),
    "standard": ("data",),
}


# The first purchase sent with each custom data (Lemon Squeezy and Polar): what an end of it
# reports unless a test names another, as the platform's end of that purchase would.
_PURCHASES: dict[str, dict[str, Any]] = {}
_PURCHASED_BY = ("order_created", "subscription_created", "order.paid", "subscription.created")


def billing_delivery(
    webhooks: WebhookStack,
    source: str,
    event_type: str,
    custom: dict[str, str] | None,
    *,
    product: Any = None,
    event_id: str | None = None,
    status: str | None = None,
    state: dict[str, Any] | None = None,
    created: int | None = None,
    subscription_id: str | None = None,
    order_id: Any = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed billing event of `source`, shaped as the platform sends it (its resource in
    `STATES[event_type]`, updated with `state`, and `status` if given). `created` is when the
    state it reports came to be (Stripe: the event's `created`; Lemon Squeezy: the
    subscription's `updated_at`; Polar: its `modified_at`), `subscription_id` the subscription
    it reports (a Polar order's `subscription_id`); Lemon Squeezy only: `order_id` is the order
    it reports, or the one that bought its subscription. A Lemon Squeezy or Polar end names,
    unless told otherwise, the first purchase sent with the same custom data."""
    secret = webhooks.secret(source)
    product = TEAM_PRODUCT[source] if product is None else product
    timestamp = int(webhooks.clock.now.timestamp())
    event_id = event_id or uuid.uuid4().hex
    state = {**STATES.get(event_type, {}), **(state or {})}
    if status is not None:
        state["status"] = status
    if source == "stripe":
        extra = {"created": created, "subscription_id": subscription_id}
        body = stripe_subscription_event(
            "evt_" + event_id,
            event_type,
            custom=custom,
            price=product,
            **{name: value for name, value in extra.items() if value is not None},
        )
        body = _in_state(body, RESOURCE[source], state)
        return body, stripe_headers(body, secret, timestamp=timestamp)
    is_order = event_type.startswith("order")
    bought = _PURCHASES.setdefault(source + json.dumps(custom, sort_keys=True), {})
    if event_type in ("order_refunded", "subscription_expired", "subscription.revoked"):
        subscription_id = subscription_id or bought.get("subscription_id")
        order_id = order_id or bought.get("order_id")
    if source == "lemonsqueezy":
        reported = order_id if is_order else subscription_id
        fields: dict[str, Any] = {}
        if created is not None:
            fields["updated_at"] = _iso_microseconds(created)
        if order_id is not None and not is_order:
            fields["order_id"] = order_id
        body = lemonsqueezy_event(
            event_type,
            custom=custom,
            resource="orders" if is_order else "subscriptions",
            resource_id=event_id if reported is None else str(reported),
            variant_id=product,
            **fields,
        )
        body = _in_state(body, RESOURCE[source], state)
    else:
        fields = {}
        if subscription_id is not None:
            fields["subscription_id" if is_order else "id"] = subscription_id
        if created is not None and not is_order:
            fields["modified_at"] = _iso_microseconds(created)
        body = _in_state(
            standard_event(event_type, custom=custom, product_id=product, state=fields),
            ("data",),
            state,
        )
    if event_type in _PURCHASED_BY and not bought:
        bought.update(_purchase(body, is_order=is_order))
    if source == "lemonsqueezy":
        return body, lemonsqueezy_headers(body, secret, event_name=event_type)
    headers = standard_headers(body, secret, message_id="msg_" + event_id, timestamp=timestamp)
    return body, headers


def _purchase(body: bytes, *, is_order: bool) -> dict[str, Any]:
    """The ids a Lemon Squeezy or Polar purchase event reports: its subscription and order."""
    data = json.loads(body)["data"]
    resource = data.get("attributes", data)
    if is_order:
        return {"order_id": data["id"], "subscription_id": resource.get("subscription_id")}
    return {"subscription_id": data["id"], "order_id": resource.get("order_id")}


def _iso_microseconds(epoch_seconds: int) -> str:
    """A time as Lemon Squeezy writes one (`2026-11-23T09:00:00.000000Z`)."""
    return datetime.fromtimestamp(epoch_seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _in_state(body: bytes, path: tuple[str, ...], state: dict[str, Any]) -> bytes:
    document = json.loads(body)
    resource = document
    for key in path:
        resource = resource[key]
    for name, value in state.items():
        if value is None:
            resource.pop(name, None)
        else:
            resource[name] = value
    return json.dumps(document).encode("utf-8")


def send(
    webhooks: WebhookStack,
    source: str,
    event_type: str,
    custom: dict[str, str] | None,
    **kwargs: Any,
) -> Response:
    body, headers = billing_delivery(webhooks, source, event_type, custom, **kwargs)
    return webhooks.deliver(source, body, headers)


def new_nonce(webhooks: WebhookStack, org_id: str, sub: str = "alice") -> str:
    response = webhooks.checkout(org_id, sub)
    assert response.status == 201, response.body
    return str(response.body["nonce"])


# ---- checkout ---------------------------------------------------------------------------------


def test_an_owner_mints_a_nonce_bound_to_the_org_for_24_hours(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    response = webhooks.checkout(org_id)
    assert response.status == 201
    nonce = response.body["nonce"]
    assert nonce.startswith("chk_")
    assert response.body["custom_data"] == custom_data(org_id, nonce)
    assert response.body["expires_at"] == "2026-11-24T09:00:00Z"
    # Stored only as a digest, bound to the owner, expiring with the nonce.
    items = boto3.client("dynamodb").query(
        TableName=webhooks.settings.table_name,
        KeyConditionExpression="pk = :org AND begins_with(sk, :kind)",
        ExpressionAttributeValues={":org": {"S": org_id}, ":kind": {"S": "CHECKOUT#"}},
    )["Items"]
    (item,) = items
    assert nonce not in json.dumps(items)
    assert item["sk"]["S"] == "CHECKOUT#" + hashlib.sha256(nonce.encode()).hexdigest()
    assert item["created_by"] == {"S": "alice"}
    assert int(item["expires_at"]["N"]) == int((NOW + timedelta(hours=24)).timestamp())
    (audited,) = [e for e in webhooks.audit_events(org_id) if e.action == "billing.checkout"]
    assert audited.actor == "alice"
    assert nonce not in json.dumps(audited.document())
    assert webhooks.checkout(org_id).body["nonce"] != nonce  # a fresh one each time


def test_only_an_owner_mints_and_other_orgs_look_absent(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    webhooks.add_member(org_id, "adam", "admin")
    assert webhooks.checkout(org_id, "adam").status == 403
    assert webhooks.checkout(org_id, "mallory").status == 404
    assert webhooks.checkout(webhooks.new_org(owner="bob"), "alice").status == 404
    anonymous = http_event(
        "POST",
        f"/orgs/{org_id}/billing/checkout",
        route="/orgs/{org_id}/billing/checkout",
        path_parameters={"org_id": org_id},
        sub=None,
    )
    assert webhooks.invoke(anonymous).status == 401


def _partition(webhooks: WebhookStack, org_id: str) -> list[dict[str, Any]]:
    """Every item of the org, as stored."""
    return list(
        boto3.client("dynamodb").query(
            TableName=webhooks.settings.table_name,
            KeyConditionExpression="pk = :org",
            ExpressionAttributeValues={":org": {"S": org_id}},
        )["Items"]
    )


def test_no_checkout_is_minted_once_the_orgs_key_is_shredded(webhooks: WebhookStack) -> None:
    """An org whose deletion has shredded its key (credential_store's org_deletion sets
    `key_shredded_at` on the org item, then deletes the partition): a checkout written now would
    be passed over by the deletion and outlive the org, and its activation would raise a plan."""
    org_id = webhooks.new_org()
    boto3.client("dynamodb").update_item(
        TableName=webhooks.settings.table_name,
        Key={"pk": {"S": org_id}, "sk": {"S": "ORG"}},
        UpdateExpression="SET key_shredded_at = :at",
        ExpressionAttributeValues={":at": {"S": "2026-01-01T00:00:00Z"}},
    )
    before = _partition(webhooks, org_id)
    answer = webhooks.checkout(org_id)
    assert (answer.status, answer.body) == (
        409,
        {"error": {"code": "conflict", "message": "The org is being deleted."}},
    )
    assert _partition(webhooks, org_id) == before  # no nonce, and the day's count untouched
    assert not [e for e in webhooks.audit_events(org_id) if e.action == "billing.checkout"]


def _shred(webhooks: WebhookStack, org_id: str) -> None:
    """What credential_store's org deletion sets on the org item once it has shredded its key
    (it then deletes the partition, in sort key order)."""
    boto3.client("dynamodb").update_item(
        TableName=webhooks.settings.table_name,
        Key={"pk": {"S": org_id}, "sk": {"S": "ORG"}},
        UpdateExpression="SET key_shredded_at = :at",
        ExpressionAttributeValues={":at": {"S": "2026-01-01T00:00:00Z"}},
    )


@pytest.mark.parametrize("shredded_after_the_read", [False, True])
@pytest.mark.parametrize("source", SOURCES)
def test_no_billing_event_takes_effect_once_the_orgs_key_is_shredded(
    webhooks: WebhookStack,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    shredded_after_the_read: bool,
) -> None:
    """A nonce minted before the deletion shredded the org's key, activated after: a
    SUBSCRIPTION (or an early event's item, or the event's marker) written now could be passed
    over by the deletion and outlive the org. Nothing is written in the partition: the event is
    taken as one for an org that is gone."""
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    if shredded_after_the_read:
        planned = billing._plan

        def shredded_right_after_the_plan(*args: Any, **kwargs: Any) -> Any:
            result = planned(*args, **kwargs)
            _shred(webhooks, org_id)
            return result

        monkeypatch.setattr(billing, "_plan", shredded_right_after_the_plan)
    else:
        _shred(webhooks, org_id)
    before = _partition(webhooks, org_id)
    created, _ = EVENTS[source]

    if source == "stripe":  # an unpaid update before its activation, kept otherwise
        assert _update(webhooks, custom, at=T0 + 60, status="past_due") == "ignored"
    assert send(webhooks, source, created, custom).body == {"status": "ignored"}

    # Nothing written (but the shredding itself, when it came after the event's read).
    shredded = {"key_shredded_at": {"S": "2026-01-01T00:00:00Z"}}
    expected = [{**item, **shredded} if item["sk"]["S"] == "ORG" else item for item in before]
    assert _partition(webhooks, org_id) == expected
    assert webhooks.plan(org_id) == "free"
    assert webhooks.webhook_effects(org_id) == []


def test_an_end_after_the_activation_takes_no_effect_once_the_orgs_key_is_shredded(
    webhooks: WebhookStack,
) -> None:
    """An activated subscription's end arriving while the org's deletion runs: the org's plan
    and SUBSCRIPTION are the deletion's to remove; the end writes nothing in the partition."""
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created = "customer.subscription.created"
    assert send(webhooks, "stripe", created, custom).body == {"status": "processed"}
    _shred(webhooks, org_id)
    before = _partition(webhooks, org_id)
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom)
    assert ended.body == {"status": "ignored"}
    assert _partition(webhooks, org_id) == before
    assert webhooks.plan(org_id) == "team"


def test_an_org_mints_at_most_its_checkouts_of_the_day(webhooks: WebhookStack) -> None:
    per_day = 10  # billing.MAX_CHECKOUTS_PER_DAY, as README states it
    org_id, other = webhooks.new_org(), webhooks.new_org(owner="bob")
    webhooks.add_member(org_id, "adam", "admin")
    assert webhooks.checkout(org_id, "adam").status == 403  # refused before it counts
    for _ in range(per_day):
        assert webhooks.checkout(org_id).status == 201
    stored = _partition(webhooks, org_id)
    audited = webhooks.audit_events(org_id)

    refused = webhooks.checkout(org_id)

    assert refused.status == 429
    assert refused.body == {
        "error": {
            "code": "rate_limited",
            "message": "An org can start 10 checkouts a day; try again tomorrow (UTC).",
        }
    }
    # Nothing written: no nonce, no audit event, the refusal not counted.
    assert _partition(webhooks, org_id) == stored
    assert webhooks.audit_events(org_id) == audited
    (counter,) = [item for item in stored if item["sk"]["S"] == "USAGE#checkouts:2026-11-23"]
    assert counter["count"] == {"N": str(per_day)}
    # Another org has its own allowance, and the org has a new one the next UTC day.
    assert webhooks.checkout(other, "bob").status == 201
    webhooks.clock.now = NOW.replace(hour=0) + timedelta(days=1)
    assert webhooks.checkout(org_id).status == 201


def test_concurrent_checkouts_never_pass_the_days_allowance(
    webhooks: WebhookStack, atomic_aws: None
) -> None:
    from webhook_verifier import billing

    from strongroom.api import Caller
    from strongroom.errors import RateLimited

    org_id = webhooks.new_org()
    services = webhooks.app.services()

    def mint(_: int) -> str:
        created = billing.create_checkout(
            services, Caller(sub="alice"), org_id, now=NOW, request_id=str(uuid.uuid4())
        )
        return created.nonce

    results = _concurrently(billing.MAX_CHECKOUTS_PER_DAY + 10, mint)
    minted = [r for r in results if isinstance(r, str)]
    assert len(minted) == billing.MAX_CHECKOUTS_PER_DAY
    assert all(isinstance(r, RateLimited) for r in results if not isinstance(r, str))
    checkouts = [i for i in _partition(webhooks, org_id) if i["sk"]["S"].startswith("CHECKOUT#")]
    assert len(checkouts) == billing.MAX_CHECKOUTS_PER_DAY


# ---- activation and deactivation ----------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_a_signed_event_with_the_nonce_changes_the_plan_once(
    webhooks: WebhookStack, source: str
) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    created, cancelled = EVENTS[source]
    body, headers = billing_delivery(webhooks, source, created, custom_data(org_id, nonce))
    assert webhooks.deliver(source, body, headers).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    # The same delivery again, and another event carrying the consumed nonce: no effect.
    assert webhooks.deliver(source, body, headers).body == {"status": "duplicate"}
    assert send(webhooks, source, created, custom_data(org_id, nonce)).body == {"status": "ignored"}
    (effect,) = webhooks.webhook_effects(org_id)
    assert effect["effect"] == "plan_activated"
    assert (effect["plan"], effect["previous_plan"], effect["checkout_by"]) == (
        "team",
        "free",
        "alice",
    )
    assert effect["source"] == source
    assert nonce not in json.dumps(effect)

    assert send(webhooks, source, cancelled, custom_data(org_id, nonce)).body == {
        "status": "processed"
    }
    assert webhooks.plan(org_id) == "free"
    # Another end (of a later time: the same one again is a duplicate) finds nothing to end.
    later = int(NOW.timestamp()) + 60
    assert send(webhooks, source, cancelled, custom_data(org_id, nonce), created=later).body == {
        "status": "ignored"
    }
    effects = webhooks.webhook_effects(org_id)
    assert [e["effect"] for e in effects] == ["plan_deactivated", "plan_activated"]  # newest first
    events = webhooks.audit_events(org_id)
    assert {e.actor for e in events if e.action == "webhook.effect"} == {f"system:webhook:{source}"}


@pytest.mark.parametrize("source", SOURCES)
def test_forged_foreign_and_unmapped_nonces_change_nothing(
    webhooks: WebhookStack, source: str
) -> None:
    org_a, org_b = webhooks.new_org(), webhooks.new_org(owner="bob")
    nonce_a = new_nonce(webhooks, org_a)
    created = EVENTS[source][0]
    refused = [
        custom_data(org_a, "chk_" + "A" * 32),  # forged: well-formed, never minted
        custom_data(org_b, nonce_a),  # another org's nonce
        custom_data(org_a, nonce_a[:-1]),  # malformed
        custom_data("org_not-an-org", nonce_a),
        {"strongroom_org_id": org_a},  # half of it
    ]
    for custom in refused:
        assert send(webhooks, source, created, custom).body == {"status": "ignored"}, custom
    # A product the deployment maps to no plan: nothing, and the nonce stays usable.
    unmapped = (
        "price_unknown"
        if source == "stripe"
        else ("9999" if source == "lemonsqueezy" else "prod_unknown")
    )
    product = int(unmapped) if source == "lemonsqueezy" else unmapped
    assert send(webhooks, source, created, custom_data(org_a, nonce_a), product=product).body == {
        "status": "ignored"
    }
    assert send(webhooks, source, created, None).body == {"status": "accepted"}
    assert (webhooks.plan(org_a), webhooks.plan(org_b)) == ("free", "free")
    assert webhooks.webhook_effects(org_a) == webhooks.webhook_effects(org_b) == []
    # The rightful event still works afterwards.
    assert send(webhooks, source, created, custom_data(org_a, nonce_a)).body == {
        "status": "processed"
    }
    assert (webhooks.plan(org_a), webhooks.plan(org_b)) == ("team", "free")


def test_a_nonce_expires_24_hours_after_minting(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    late, in_time = new_nonce(webhooks, org_id), new_nonce(webhooks, org_id)
    webhooks.clock.advance(hours=24)
    assert send(
        webhooks, "stripe", "customer.subscription.created", custom_data(org_id, late)
    ).body == {"status": "ignored"}
    webhooks.clock.now = NOW + timedelta(hours=24) - timedelta(seconds=1)
    assert send(
        webhooks, "stripe", "customer.subscription.created", custom_data(org_id, in_time)
    ).body == {"status": "processed"}


# Events that announce a checkout the customer has not paid for (yet), or whose payload does not
# say so; then one that grants access (a trial), as each platform sends them.
UNPAID = {
    "stripe": [
        ("customer.subscription.created", {"status": "incomplete"}),
        ("customer.subscription.created", {"status": "past_due"}),
        ("customer.subscription.created", {"status": None}),
    ],
    "lemonsqueezy": [
        ("order_created", {"status": "pending"}),
        ("order_created", {"status": "failed"}),
        ("subscription_created", {"status": "past_due"}),
        ("subscription_created", {"status": None}),
    ],
    "standard": [
        ("subscription.created", {"status": "incomplete"}),
        ("subscription.active", {"status": None}),
        ("order.paid", {"status": "pending"}),
        ("order.paid", {"status": None}),
    ],
}
TRIAL = {
    "stripe": ("customer.subscription.created", "trialing"),
    "lemonsqueezy": ("subscription_created", "on_trial"),
    "standard": ("subscription.created", "trialing"),
}


@pytest.mark.parametrize("source", SOURCES)
def test_a_subscription_or_order_that_is_not_paid_changes_nothing(
    webhooks: WebhookStack, source: str
) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    custom = custom_data(org_id, nonce)
    for event_type, state in UNPAID[source]:
        response = send(webhooks, source, event_type, custom, state=state)
        assert response.body == {"status": "accepted"}, (event_type, state)
    assert webhooks.plan(org_id) == "free"
    assert webhooks.webhook_effects(org_id) == []
    # The nonce is still good: a trial grants the plan.
    event_type, status = TRIAL[source]
    assert send(webhooks, source, event_type, custom, status=status).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"


def test_a_stripe_subscription_created_incomplete_is_raised_by_the_update_that_activates_it(
    webhooks: WebhookStack,
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created = send(webhooks, "stripe", "customer.subscription.created", custom, status="incomplete")
    assert created.body == {"status": "accepted"}
    assert webhooks.plan(org_id) == "free"
    # The customer finished 3-D Secure: Stripe updates the subscription to active.
    update = "customer.subscription.updated"
    assert send(webhooks, "stripe", update, custom, status="active").body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    # A later update that changes neither price nor standing (a renewal) has nothing to do.
    assert send(webhooks, "stripe", update, custom, status="active").body == {"status": "accepted"}
    assert webhooks.plan(org_id) == "team"
    assert [e["effect"] for e in webhooks.webhook_effects(org_id)] == ["plan_activated"]


# A cancellation for the end of the period, then the end of access, as each platform sends them.
CANCEL_THEN_END = {
    "stripe": (
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    ),
    "lemonsqueezy": ("subscription_created", "subscription_cancelled", "subscription_expired"),
    "standard": ("subscription.created", "subscription.canceled", "subscription.revoked"),
}


@pytest.mark.parametrize("source", SOURCES)
def test_a_cancelled_subscription_keeps_its_plan_until_access_ends(
    webhooks: WebhookStack, source: str
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created, cancelled, ended = CANCEL_THEN_END[source]
    assert send(webhooks, source, created, custom).body == {"status": "processed"}
    # Paid for until the end of the period: the org keeps its plan until then. (Stripe's update
    # of a still-active subscription on the same price has nothing to change.)
    assert send(webhooks, source, cancelled, custom).body == {"status": "accepted"}
    assert webhooks.plan(org_id) == "team"
    assert send(webhooks, source, ended, custom).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    effects = [e["effect"] for e in webhooks.webhook_effects(org_id)]
    assert effects == ["plan_deactivated", "plan_activated"]


def test_ending_an_older_subscription_keeps_the_newer_plan(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    team, enterprise = new_nonce(webhooks, org_id), new_nonce(webhooks, org_id)
    created, deleted = EVENTS["stripe"]
    assert send(webhooks, "stripe", created, custom_data(org_id, team)).body == {
        "status": "processed"
    }
    assert send(
        webhooks,
        "stripe",
        created,
        custom_data(org_id, enterprise),
        product="price_local_enterprise",
    ).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "enterprise"
    assert send(webhooks, "stripe", deleted, custom_data(org_id, team)).body == {
        "status": "processed"
    }
    assert webhooks.plan(org_id) == "enterprise"
    assert send(webhooks, "stripe", deleted, custom_data(org_id, enterprise)).body == {
        "status": "processed"
    }
    assert webhooks.plan(org_id) == "free"
    effects = [e["effect"] for e in webhooks.webhook_effects(org_id)]
    assert effects == [
        "plan_deactivated",
        "subscription_closed",
        "plan_activated",
        "plan_activated",
    ]


# ---- a Stripe subscription's later updates ------------------------------------------------------
# Once a nonce activated a subscription, Stripe's `customer.subscription.updated` events for it
# re-map, suspend and restore the org's plan, newest event wins (by the event's `created`).

UPDATED = "customer.subscription.updated"
# When the activating event of each test's subscription was created; later events count on.
T0 = 1795000000


def _stripe_subscription(
    webhooks: WebhookStack, product: str = "price_local_team"
) -> tuple[str, dict[str, str]]:
    """An org whose Stripe subscription on `product` a checkout nonce activated at T0."""
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created = send(
        webhooks, "stripe", "customer.subscription.created", custom, product=product, created=T0
    )
    assert created.body == {"status": "processed"}
    return org_id, custom


def _update(
    webhooks: WebhookStack,
    custom: dict[str, str],
    *,
    at: int,
    status: str = "active",
    product: str = "price_local_team",
    **kwargs: Any,
) -> str:
    """Deliver Stripe's update of the subscription, created at `at`; the receipt's status."""
    response = send(
        webhooks,
        "stripe",
        UPDATED,
        custom,
        status=status,
        product=product,
        created=at,
        state={"cancel_at_period_end": False},
        **kwargs,
    )
    assert response.status == 200, response.body
    return str(response.body["status"])


def _subscription(webhooks: WebhookStack, custom: dict[str, str]) -> dict[str, Any]:
    digest = hashlib.sha256(custom["strongroom_nonce"].encode()).hexdigest()
    org_id = custom["strongroom_org_id"]
    return dict(webhooks.table.get(org_id, "SUBSCRIPTION", digest, now=NOW).attributes)


def _effects(webhooks: WebhookStack, org_id: str) -> list[str]:
    return [e["effect"] for e in webhooks.webhook_effects(org_id)]  # newest first


def test_a_stripe_downgrade_or_upgrade_re_maps_the_plan(webhooks: WebhookStack) -> None:
    org_id, custom = _stripe_subscription(webhooks, product="price_local_enterprise")
    assert webhooks.plan(org_id) == "enterprise"

    assert _update(webhooks, custom, at=T0 + 10, product="price_local_team") == "processed"
    assert webhooks.plan(org_id) == "team"
    assert _update(webhooks, custom, at=T0 + 20, product="price_local_enterprise") == "processed"
    assert webhooks.plan(org_id) == "enterprise"

    assert _effects(webhooks, org_id) == ["plan_changed", "plan_changed", "plan_activated"]
    upgrade, downgrade, _ = webhooks.webhook_effects(org_id)
    assert (downgrade["plan"], downgrade["previous_plan"]) == ("team", "enterprise")
    assert (upgrade["plan"], upgrade["previous_plan"]) == ("enterprise", "team")
    assert (downgrade["source"], downgrade["event_type"], downgrade["checkout_by"]) == (
        "stripe",
        UPDATED,
        "alice",
    )
    assert custom["strongroom_nonce"] not in json.dumps(webhooks.webhook_effects(org_id))
    audited = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert {(e.actor, e.outcome) for e in audited} == {("system:webhook:stripe", "success")}
    # The subscription pays for the new plan, as of the newest event applied.
    stored = _subscription(webhooks, custom)
    assert (stored["plan"], stored["last_event_at"]) == ("enterprise", T0 + 20)


@pytest.mark.parametrize("status", ["past_due", "unpaid", "paused", "incomplete_expired"])
def test_a_stripe_subscription_not_paid_suspends_to_free_and_active_restores(
    webhooks: WebhookStack, status: str
) -> None:
    org_id, custom = _stripe_subscription(webhooks)

    assert _update(webhooks, custom, at=T0 + 10, status=status) == "processed"
    assert webhooks.plan(org_id) == "free"
    (suspended, _) = webhooks.webhook_effects(org_id)
    assert suspended["effect"] == "plan_suspended"
    assert (suspended["plan"], suspended["new_plan"], suspended["status"]) == (
        "team",
        "free",
        status,
    )
    # The subscription remembers the plan it pays for.
    stored = _subscription(webhooks, custom)
    assert (stored["plan"], stored["suspended"]) == ("team", True)
    # Still not paid: nothing more to do.
    assert _update(webhooks, custom, at=T0 + 20, status="unpaid") == "accepted"
    assert webhooks.plan(org_id) == "free"

    assert _update(webhooks, custom, at=T0 + 30, status="active") == "processed"
    assert webhooks.plan(org_id) == "team"
    restored = webhooks.webhook_effects(org_id)[0]
    assert restored["effect"] == "plan_restored"
    assert (restored["plan"], restored["previous_plan"]) == ("team", "free")
    assert "suspended" not in _subscription(webhooks, custom)
    assert _effects(webhooks, org_id) == ["plan_restored", "plan_suspended", "plan_activated"]
    audited = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert {(e.actor, e.outcome) for e in audited} == {("system:webhook:stripe", "success")}


def test_a_suspended_stripe_subscription_restores_to_the_price_it_returns_on_and_ends(
    webhooks: WebhookStack,
) -> None:
    org_id, custom = _stripe_subscription(webhooks, product="price_local_enterprise")
    assert _update(webhooks, custom, at=T0 + 10, status="past_due") == "processed"
    assert _update(webhooks, custom, at=T0 + 20, product="price_local_starter") == "processed"
    assert webhooks.plan(org_id) == "starter"
    assert webhooks.webhook_effects(org_id)[0]["plan"] == "starter"
    # Suspended again, then deleted: deactivation works as before.
    assert _update(webhooks, custom, at=T0 + 30, status="unpaid") == "processed"
    deleted = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 40)
    assert deleted.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id)[:2] == ["plan_deactivated", "plan_suspended"]
    org = webhooks.table.get(org_id, "ORG", now=NOW).attributes
    assert "plan_nonce" not in org
    # The subscription is gone: a late update of it changes nothing.
    assert _update(webhooks, custom, at=T0 + 50) == "ignored"
    assert webhooks.plan(org_id) == "free"


def test_an_older_stripe_event_after_a_newer_one_changes_nothing(webhooks: WebhookStack) -> None:
    org_id, custom = _stripe_subscription(webhooks, product="price_local_enterprise")
    assert _update(webhooks, custom, at=T0 + 20, product="price_local_team") == "processed"
    # Sent before the downgrade, delivered after it: neither re-maps nor suspends.
    assert _update(webhooks, custom, at=T0 + 10, product="price_local_starter") == "ignored"
    assert _update(webhooks, custom, at=T0 + 10, status="past_due") == "ignored"
    assert webhooks.plan(org_id) == "team"
    assert _update(webhooks, custom, at=T0 + 30, status="past_due") == "processed"
    # An older "active" does not lift the newer suspension, nor one older than the activation.
    assert _update(webhooks, custom, at=T0 + 25, status="active") == "ignored"
    assert _update(webhooks, custom, at=T0 - 5, status="active") == "ignored"
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["plan_suspended", "plan_changed", "plan_activated"]
    assert _subscription(webhooks, custom)["last_event_at"] == T0 + 30


def test_an_older_stripe_update_racing_a_newer_one_loses_whole(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_verifier import billing

    org_id, custom = _stripe_subscription(webhooks)
    planned = billing._update
    newer = billing_delivery(
        webhooks, "stripe", UPDATED, custom, product="price_local_starter", created=T0 + 20
    )
    raced: list[str] = []

    def newer_applied_after_the_read(*args: Any, **kwargs: Any) -> Any:
        result = planned(*args, **kwargs)
        if not raced:
            raced.append("racing")
            raced.append(_receive(webhooks, "stripe", *newer))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(billing, "_update", newer_applied_after_the_read)
        # Read before the newer event applied, written after: its conditional write fails, and
        # read again it is older than the newest applied.
        assert _update(webhooks, custom, at=T0 + 10, status="past_due") == "ignored"
    assert raced == ["racing", "processed"]
    assert webhooks.plan(org_id) == "starter"
    assert _effects(webhooks, org_id) == ["plan_changed", "plan_activated"]


def test_a_duplicate_stripe_update_is_a_no_op(webhooks: WebhookStack) -> None:
    org_id, custom = _stripe_subscription(webhooks)
    past_due = billing_delivery(
        webhooks, "stripe", UPDATED, custom, status="past_due", created=T0 + 10
    )
    assert webhooks.deliver("stripe", *past_due).body == {"status": "processed"}
    assert webhooks.deliver("stripe", *past_due).body == {"status": "duplicate"}
    assert webhooks.plan(org_id) == "free"
    assert _update(webhooks, custom, at=T0 + 20) == "processed"
    # Stripe retries it once more after the restore: still a duplicate, the plan stays.
    assert webhooks.deliver("stripe", *past_due).body == {"status": "duplicate"}
    assert webhooks.plan(org_id) == "team"
    # An update with nothing to change is recorded once too.
    renewal = billing_delivery(webhooks, "stripe", UPDATED, custom, created=T0 + 30)
    assert webhooks.deliver("stripe", *renewal).body == {"status": "accepted"}
    assert webhooks.deliver("stripe", *renewal).body == {"status": "duplicate"}
    assert _effects(webhooks, org_id) == ["plan_restored", "plan_suspended", "plan_activated"]


def test_an_update_for_another_subscription_is_ignored(webhooks: WebhookStack) -> None:
    org_id, custom = _stripe_subscription(webhooks)
    # Our metadata on a subscription the nonce did not activate.
    answer = _update(webhooks, custom, at=T0 + 10, status="past_due", subscription_id="sub_Other")
    assert answer == "ignored"
    assert webhooks.plan(org_id) == "team"
    # A later checkout's subscription now sets the org's plan: the first one's updates, whether
    # to suspend or to re-map, leave it alone.
    newer = custom_data(org_id, new_nonce(webhooks, org_id))
    activated = send(
        webhooks,
        "stripe",
        "customer.subscription.created",
        newer,
        product="price_local_enterprise",
        created=T0 + 20,
        subscription_id="sub_Newer",
    )
    assert activated.body == {"status": "processed"}
    assert _update(webhooks, custom, at=T0 + 30, status="past_due") == "ignored"
    assert _update(webhooks, custom, at=T0 + 40, product="price_local_starter") == "ignored"
    assert webhooks.plan(org_id) == "enterprise"
    # Ignored as other ignored events are: no effect, nothing audited.
    assert _effects(webhooks, org_id) == ["plan_activated", "plan_activated"]
    assert _subscription(webhooks, custom)["plan"] == "team"
    # The newer subscription's own updates apply.
    answer = _update(webhooks, newer, at=T0 + 50, status="past_due", subscription_id="sub_Newer")
    assert answer == "processed"
    assert webhooks.plan(org_id) == "free"


def test_an_unpaid_update_before_its_activation_starts_the_subscription_suspended(
    webhooks: WebhookStack,
) -> None:
    # Stripe retries a failed delivery for days: the subscription went unpaid meanwhile, and
    # Stripe sends nothing more for it. The late activation must not raise the plan.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _update(webhooks, custom, at=T0 + 60, status="past_due") == "accepted"
    assert _update(webhooks, custom, at=T0 + 30, status="unpaid") == "ignored"  # older
    assert webhooks.plan(org_id) == "free"
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    state = _subscription(webhooks, custom)
    assert (state["plan"], state["suspended"], state["status"]) == ("team", True, "past_due")
    assert state["last_event_at"] == T0 + 60
    (activated,) = webhooks.webhook_effects(org_id)
    assert (activated["effect"], activated["plan"], activated["new_plan"]) == (
        "plan_activated",
        "team",
        "free",
    )
    assert activated["suspended"] is True
    # Paid again: restored.
    assert _update(webhooks, custom, at=T0 + 90) == "processed"
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id)[0] == "plan_restored"


def test_an_activation_newer_than_an_unpaid_update_before_it_activates_paid(
    webhooks: WebhookStack,
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _update(webhooks, custom, at=T0 + 10, status="past_due") == "accepted"
    # The payment went through: the newer active update activates, paid.
    assert _update(webhooks, custom, at=T0 + 20) == "processed"
    assert webhooks.plan(org_id) == "team"
    assert "suspended" not in _subscription(webhooks, custom)
    # Another subscription's unpaid update kept on the checkout would not have counted either.
    other = custom_data(org_id, new_nonce(webhooks, org_id))
    kept = _update(webhooks, other, at=T0 + 30, status="unpaid", subscription_id="sub_Other")
    assert kept == "accepted"
    created = send(
        webhooks,
        "stripe",
        "customer.subscription.created",
        other,
        product="price_local_enterprise",
        created=T0 + 25,
    )
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "enterprise"


@pytest.mark.parametrize("others_first", [False, True])
def test_early_events_are_kept_per_subscription(webhooks: WebhookStack, others_first: bool) -> None:
    # The nonce is also on another subscription (an abandoned checkout's): its events must not
    # displace, nor hold off, the ones of the subscription that is activated.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ours = ("past_due", T0 + 60, {})
    theirs = ("incomplete_expired", T0 + 70, {"subscription_id": "sub_Other"})
    for status, at, extra in (theirs, ours) if others_first else (ours, theirs):
        assert _update(webhooks, custom, at=at, status=status, **extra) == "accepted"
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _subscription(webhooks, custom)["suspended"] is True


def test_an_end_before_its_activation_voids_only_that_subscription(
    webhooks: WebhookStack,
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    other_end = send(
        webhooks,
        "stripe",
        "customer.subscription.deleted",
        custom,
        created=T0 + 5,
        subscription_id="sub_Other",
    )
    assert other_end.body == {"status": "accepted"}
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    # The end of the subscription itself, before its activation, voids the nonce for it.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 5)
    assert ended.body == {"status": "accepted"}
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]
    # The nonce is spent: nothing later raises the plan with it.
    assert _update(webhooks, custom, at=T0 + 10) == "ignored"
    assert webhooks.plan(org_id) == "free"


def test_an_early_end_is_kept_over_a_later_update(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 50)
    assert ended.body == {"status": "accepted"}
    # An update of the same second (Stripe's `canceled`) does not undo the end.
    assert _update(webhooks, custom, at=T0 + 50, status="canceled") == "ignored"
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert _effects(webhooks, org_id) == ["checkout_voided"]


# More subscriptions than the ten whose early events a checkout once kept on itself.
STRAYS = 12


def _strays(webhooks: WebhookStack, custom: dict[str, str]) -> None:
    """Ends and unpaid updates of other subscriptions carrying the nonce (the payer's own
    abandoned or cancelled ones), each kept for its subscription."""
    for n in range(STRAYS):
        ended = send(
            webhooks,
            "stripe",
            "customer.subscription.deleted",
            custom,
            created=T0 + 10,
            subscription_id=f"sub_Stray{n}",
        )
        assert ended.body == {"status": "accepted"}, n
    unpaid = _update(webhooks, custom, at=T0 + 10, status="past_due", subscription_id="sub_Late")
    assert unpaid == "accepted"


def test_stray_early_events_neither_void_the_checkout_nor_crowd_out_its_own(
    webhooks: WebhookStack,
) -> None:
    # Other subscriptions' ends, however many, are kept for those subscriptions: the checkout
    # stays open and the subscription it pays for activates.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    _strays(webhooks, custom)
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id) == ["plan_activated"]
    # After them, the subscription's own end, then its late activation: the end is not lost.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    _strays(webhooks, custom)
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 60)
    assert ended.body == {"status": "accepted"}
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]
    # A stray's late activation finds the nonce spent.
    stray = send(
        webhooks,
        "stripe",
        "customer.subscription.created",
        custom,
        created=T0,
        subscription_id="sub_Stray0",
    )
    assert stray.body == {"status": "ignored"}


def test_a_strays_early_events_are_kept_for_it(webhooks: WebhookStack) -> None:
    # Whichever subscription the nonce finally activates, the events kept for it count.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    _strays(webhooks, custom)
    late = {"created": T0, "subscription_id": "sub_Late"}
    created = send(webhooks, "stripe", "customer.subscription.created", custom, **late)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _subscription(webhooks, custom)["suspended"] is True
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    _strays(webhooks, custom)
    late = {"created": T0, "subscription_id": f"sub_Stray{STRAYS - 1}"}
    created = send(webhooks, "stripe", "customer.subscription.created", custom, **late)
    assert created.body == {"status": "processed"}
    assert _effects(webhooks, org_id) == ["checkout_voided"]


def test_early_events_are_kept_until_their_checkout_expires_and_no_longer(
    webhooks: WebhookStack,
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    webhooks.clock.advance(hours=20)
    _strays(webhooks, custom)
    stored = _partition(webhooks, org_id)
    (checkout,) = [item for item in stored if item["sk"]["S"].startswith("CHECKOUT#")]
    early = [item for item in stored if item["sk"]["S"].startswith("EARLY_STRIPE#")]
    assert len(early) == STRAYS + 1
    assert {item["expires_at"]["N"] for item in early} == {checkout["expires_at"]["N"]}
    # Past the checkout's 24 h, nothing of it counts: the activation changes nothing.
    webhooks.clock.advance(hours=4)
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "ignored"}


def test_an_early_end_kept_while_its_activation_is_applied_voids_it(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The end is kept between the activation's read of the early events and its write: the
    # activation must read them again, not raise the plan of a subscription that ended.
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    end = billing_delivery(
        webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 60
    )
    original = billing._early_since
    raced: list[str] = []

    def end_kept_after_the_read(*args: Any, **kwargs: Any) -> Any:
        found = original(*args, **kwargs)
        if not raced:
            raced.append(_receive(webhooks, "stripe", *end))
        return found

    monkeypatch.setattr(billing, "_early_since", end_kept_after_the_read)
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert raced == ["accepted"]
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]


def test_early_events_a_checkout_kept_on_itself_still_count(webhooks: WebhookStack) -> None:
    # A checkout minted before early events were items of their own keeps them on itself
    # (`early`, per subscription id) for its 24 h.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    digest = hashlib.sha256(custom["strongroom_nonce"].encode()).hexdigest()
    ended = {"at": T0 + 60, "event_id": "evt_Ended", "status": "deleted"}
    early = {"early": {"sub_1PzSampleSubscription": ended}, "early_version": 1}
    webhooks.table.update(org_id, "CHECKOUT", digest, changes=early, now=NOW)
    created = send(webhooks, "stripe", "customer.subscription.created", custom, created=T0)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]


@pytest.mark.parametrize(
    ("late", "planner", "plan"),
    [
        ("ended", "_early_event", "free"),
        ("past_due", "_early_event", "free"),
        ("starter price", "_activation", "starter"),
    ],
)
def test_an_event_racing_its_subscriptions_activation_applies_after_it(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch, late: str, planner: str, plan: str
) -> None:
    # The activation commits between the event's read of the SUBSCRIPTION (absent) and of the
    # CHECKOUT (consumed): the event must not be answered `ignored` (Stripe would not retry it).
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    activation = billing_delivery(
        webhooks, "stripe", "customer.subscription.created", custom, created=T0
    )
    original = getattr(billing, planner)
    raced: list[str] = []
    racing = threading.Event()

    def activation_commits_first(*args: Any, **kwargs: Any) -> Any:
        if not racing.is_set():  # once, and not for the activation itself
            racing.set()
            raced.append(_receive(webhooks, "stripe", *activation))
        return original(*args, **kwargs)

    monkeypatch.setattr(billing, planner, activation_commits_first)
    if late == "ended":
        sent = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 60)
        answer = str(sent.body["status"])
    elif late == "past_due":
        answer = _update(webhooks, custom, at=T0 + 60, status="past_due")
    else:
        answer = _update(webhooks, custom, at=T0 + 60, product="price_local_starter")
    assert raced == ["processed"]
    assert answer == "processed"
    assert webhooks.plan(org_id) == plan


@pytest.mark.parametrize("late", ["ended", "past_due"])
def test_an_activation_between_an_events_two_reads_is_seen_by_it(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch, late: str
) -> None:
    # The activation commits right after the event's first read of the nonce's items: whichever
    # that read is, the event must see the subscription activated, never neither item.
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    activation = billing_delivery(
        webhooks, "stripe", "customer.subscription.created", custom, created=T0
    )
    find = billing._find
    raced: list[str] = []
    racing = threading.Event()

    def activation_after_the_first_read(*args: Any, **kwargs: Any) -> Any:
        found = find(*args, **kwargs)
        if not racing.is_set() and args[2] in ("CHECKOUT", "SUBSCRIPTION"):
            racing.set()
            raced.append(_receive(webhooks, "stripe", *activation))
        return found

    monkeypatch.setattr(billing, "_find", activation_after_the_first_read)
    if late == "ended":
        sent = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 60)
        answer = str(sent.body["status"])
    else:
        answer = _update(webhooks, custom, at=T0 + 60, status="past_due")
    assert raced == ["processed"]
    assert answer == "processed"
    assert webhooks.plan(org_id) == "free"


def test_an_item_that_names_no_subscription_takes_no_update(webhooks: WebhookStack) -> None:
    org_id, custom = _stripe_subscription(webhooks, product="price_local_starter")
    digest = hashlib.sha256(custom["strongroom_nonce"].encode()).hexdigest()
    webhooks.table.update(org_id, "SUBSCRIPTION", digest, remove=("subscription_id",), now=NOW)
    for subscription_id in ("sub_Other", "sub_1PzSampleSubscription"):
        answer = _update(
            webhooks,
            custom,
            at=T0 + 10,
            product="price_local_enterprise",
            subscription_id=subscription_id,
        )
        assert answer == "ignored"
    assert webhooks.plan(org_id) == "starter"
    assert "subscription_id" not in _subscription(webhooks, custom)


def test_the_end_of_another_subscription_carrying_the_nonce_changes_nothing(
    webhooks: WebhookStack,
) -> None:
    org_id, custom = _stripe_subscription(webhooks)
    ended = send(
        webhooks,
        "stripe",
        "customer.subscription.deleted",
        custom,
        created=T0 + 5,
        subscription_id="sub_Other",
    )
    assert ended.body == {"status": "ignored"}
    assert webhooks.plan(org_id) == "team"
    assert _subscription(webhooks, custom)["plan"] == "team"
    # Its own end does.
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 6)
    assert ended.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"


def test_of_two_updates_in_one_second_the_unpaid_one_wins(webhooks: WebhookStack) -> None:
    # Stripe's `created` is in whole seconds: their order is unknown, so a tie fails closed.
    org_id, custom = _stripe_subscription(webhooks)
    assert _update(webhooks, custom, at=T0 + 10, status="past_due") == "processed"
    assert _update(webhooks, custom, at=T0 + 10) == "ignored"
    assert webhooks.plan(org_id) == "free"
    assert _update(webhooks, custom, at=T0 + 11) == "processed"
    assert webhooks.plan(org_id) == "team"
    # An unpaid update of the same second as the one applied still suspends.
    assert _update(webhooks, custom, at=T0 + 11, status="unpaid") == "processed"
    assert webhooks.plan(org_id) == "free"


def test_an_update_to_an_unknown_price_changes_nothing_and_is_audited(
    webhooks: WebhookStack,
) -> None:
    org_id, custom = _stripe_subscription(webhooks)
    before = _subscription(webhooks, custom)
    unknown = billing_delivery(
        webhooks, "stripe", UPDATED, custom, product="price_unknown", created=T0 + 10
    )
    assert webhooks.deliver("stripe", *unknown).body == {"status": "ignored"}
    assert webhooks.plan(org_id) == "team"
    assert _subscription(webhooks, custom) == before
    refused = webhooks.webhook_effects(org_id)[0]
    assert refused["effect"] == "plan_change_refused"
    assert (refused["plan"], refused["products"]) == ("team", ["price_unknown"])
    (audited, _) = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert audited.outcome == "denied"
    assert webhooks.deliver("stripe", *unknown).body == {"status": "duplicate"}
    assert _effects(webhooks, org_id) == ["plan_change_refused", "plan_activated"]
    # A mapped price later applies as usual.
    assert _update(webhooks, custom, at=T0 + 20, product="price_local_starter") == "processed"
    assert webhooks.plan(org_id) == "starter"


# ---- Lemon Squeezy's and Polar's subscription updates -----------------------------------------
# Once a nonce activated a subscription, its later updates re-map, suspend and restore the org's
# plan as Stripe's do: newest state wins, by the time of the state each update reports (Lemon
# Squeezy's `updated_at`, Polar's `modified_at`), and only for the subscription the nonce
# activated.

SUBSCRIPTION_CREATED = {"lemonsqueezy": "subscription_created", "standard": "subscription.created"}
SUBSCRIPTION_UPDATED = {"lemonsqueezy": "subscription_updated", "standard": "subscription.updated"}
SUBSCRIPTION_ENDED = {"lemonsqueezy": "subscription_expired", "standard": "subscription.revoked"}
ORDER_PAID = {"lemonsqueezy": "order_created", "standard": "order.paid"}
UPDATING = sorted(SUBSCRIPTION_UPDATED)
# Each plan's product in the local deployment, and one it maps to no plan.
PLAN_PRODUCTS: dict[str, dict[str, Any]] = {
    "lemonsqueezy": {"starter": 1001, "team": 1002, "enterprise": 1003, "unmapped": 9999},
    "standard": {
        "starter": "prod_local_starter",
        "team": "prod_local_team",
        "enterprise": "prod_local_enterprise",
        "unmapped": "prod_unknown",
    },
}
PAID_STATUS = {"lemonsqueezy": "active", "standard": "active"}
TRIAL_STATUS = {"lemonsqueezy": "on_trial", "standard": "trialing"}
UNPAID_STATUSES = {
    "lemonsqueezy": ["past_due", "unpaid", "paused", "expired"],
    # `canceled` is Polar's end (a cancellation at the period's end stays `active` until then).
    "standard": ["past_due", "unpaid", "paused", "incomplete_expired", "canceled"],
}
# States that do not say when: no time, or one that orders nothing.
UNDATED: dict[str, list[dict[str, Any]]] = {
    "lemonsqueezy": [
        {"updated_at": None},
        {"updated_at": "2026-11-18T11:06:50"},
        {"updated_at": 1795000010},
    ],
    "standard": [
        {"modified_at": None, "created_at": None},
        {"modified_at": "2026-11-18T11:06:50"},
        {"modified_at": 1795000010},
    ],
}
# The subscription each test's nonce activates, and (Lemon Squeezy) the order that bought it.
SUBSCRIBED = {"lemonsqueezy": "7301", "standard": "6f0c2a8e-5b1d-4c3f-9a7e-2d4b8c1e0f35"}
BOUGHT_BY = 6101
MICROSECONDS = 1_000_000


def _subscribed(
    webhooks: WebhookStack, source: str, plan: str = "team"
) -> tuple[str, dict[str, str]]:
    """An org whose `source` subscription on `plan` a checkout nonce activated at T0."""
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created = send(
        webhooks,
        source,
        SUBSCRIPTION_CREATED[source],
        custom,
        product=PLAN_PRODUCTS[source][plan],
        created=T0,
        subscription_id=SUBSCRIBED[source],
        order_id=BOUGHT_BY,
    )
    assert created.body == {"status": "processed"}
    return org_id, custom


def _changed(
    webhooks: WebhookStack,
    source: str,
    custom: dict[str, str],
    *,
    at: int,
    status: str | None = None,
    plan: str = "team",
    **kwargs: Any,
) -> str:
    """Deliver `source`'s update of the subscription, in the state it came to at `at` (its
    plan's product, `status` or paid); the receipt's status."""
    kwargs.setdefault("subscription_id", SUBSCRIBED[source])
    kwargs.setdefault("order_id", BOUGHT_BY)
    response = send(
        webhooks,
        source,
        SUBSCRIPTION_UPDATED[source],
        custom,
        status=status or PAID_STATUS[source],
        product=PLAN_PRODUCTS[source][plan],
        created=at,
        **kwargs,
    )
    assert response.status == 200, response.body
    return str(response.body["status"])


@pytest.mark.parametrize("source", UPDATING)
def test_a_subscription_update_re_maps_the_plan(webhooks: WebhookStack, source: str) -> None:
    org_id, custom = _subscribed(webhooks, source, plan="enterprise")
    assert webhooks.plan(org_id) == "enterprise"

    assert _changed(webhooks, source, custom, at=T0 + 10, plan="team") == "processed"
    assert webhooks.plan(org_id) == "team"
    assert _changed(webhooks, source, custom, at=T0 + 20, plan="enterprise") == "processed"
    assert webhooks.plan(org_id) == "enterprise"

    assert _effects(webhooks, org_id) == ["plan_changed", "plan_changed", "plan_activated"]
    upgrade, downgrade, _ = webhooks.webhook_effects(org_id)
    assert (downgrade["plan"], downgrade["previous_plan"]) == ("team", "enterprise")
    assert (upgrade["plan"], upgrade["previous_plan"]) == ("enterprise", "team")
    assert (downgrade["source"], downgrade["event_type"], downgrade["checkout_by"]) == (
        source,
        SUBSCRIPTION_UPDATED[source],
        "alice",
    )
    assert custom["strongroom_nonce"] not in json.dumps(webhooks.webhook_effects(org_id))
    audited = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert {(e.actor, e.outcome) for e in audited} == {(f"system:webhook:{source}", "success")}
    # The subscription the nonce activated pays for the new plan, as of the newest state.
    stored = _subscription(webhooks, custom)
    assert (stored["plan"], stored["subscription_id"]) == ("enterprise", SUBSCRIBED[source])
    assert stored["last_event_at"] == (T0 + 20) * MICROSECONDS


@pytest.mark.parametrize(
    ("source", "status"), [(s, status) for s in UPDATING for status in UNPAID_STATUSES[s]]
)
def test_a_subscription_not_paid_suspends_to_free_and_paid_restores(
    webhooks: WebhookStack, source: str, status: str
) -> None:
    org_id, custom = _subscribed(webhooks, source)

    assert _changed(webhooks, source, custom, at=T0 + 10, status=status) == "processed"
    assert webhooks.plan(org_id) == "free"
    (suspended, _) = webhooks.webhook_effects(org_id)
    assert suspended["effect"] == "plan_suspended"
    assert (suspended["plan"], suspended["new_plan"], suspended["status"]) == (
        "team",
        "free",
        status,
    )
    stored = _subscription(webhooks, custom)
    assert (stored["plan"], stored["suspended"]) == ("team", True)
    # Still not paid: nothing more to do.
    assert _changed(webhooks, source, custom, at=T0 + 20, status="unpaid") == "accepted"
    assert webhooks.plan(org_id) == "free"

    assert _changed(webhooks, source, custom, at=T0 + 30) == "processed"
    assert webhooks.plan(org_id) == "team"
    restored = webhooks.webhook_effects(org_id)[0]
    assert (restored["effect"], restored["plan"], restored["previous_plan"]) == (
        "plan_restored",
        "team",
        "free",
    )
    assert "suspended" not in _subscription(webhooks, custom)
    # A trial counts as paid, as it does for the activation.
    assert _changed(webhooks, source, custom, at=T0 + 40, status=status) == "processed"
    assert _changed(webhooks, source, custom, at=T0 + 50, status=TRIAL_STATUS[source]) == (
        "processed"
    )
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id) == [
        "plan_restored",
        "plan_suspended",
        "plan_restored",
        "plan_suspended",
        "plan_activated",
    ]


def test_a_cancelled_lemonsqueezy_subscription_keeps_the_standing_it_had(
    webhooks: WebhookStack,
) -> None:
    # Cancelled: no more payments, but it runs to `ends_at` on what was paid, and
    # subscription_expired ends it. It neither suspends a paid plan nor lifts a suspension.
    org_id, custom = _subscribed(webhooks, "lemonsqueezy")
    cancelled = {"ends_at": "2026-12-23T09:00:00.000000Z"}
    answer = _changed(
        webhooks, "lemonsqueezy", custom, at=T0 + 10, status="cancelled", state=cancelled
    )
    assert answer == "accepted"
    assert webhooks.plan(org_id) == "team"
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 20, status="past_due") == "processed"
    answer = _changed(
        webhooks, "lemonsqueezy", custom, at=T0 + 30, status="cancelled", state=cancelled
    )
    assert answer == "accepted"
    assert webhooks.plan(org_id) == "free"
    assert _subscription(webhooks, custom)["status"] == "cancelled"
    # Resumed and paid: restored; then it runs out and expires.
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 40) == "processed"
    assert webhooks.plan(org_id) == "team"
    assert send(webhooks, "lemonsqueezy", "subscription_expired", custom).body == {
        "status": "processed"
    }
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == [
        "plan_deactivated",
        "plan_restored",
        "plan_suspended",
        "plan_activated",
    ]


@pytest.mark.parametrize("source", UPDATING)
def test_an_older_subscription_update_after_a_newer_one_changes_nothing(
    webhooks: WebhookStack, source: str
) -> None:
    org_id, custom = _subscribed(webhooks, source, plan="enterprise")
    assert _changed(webhooks, source, custom, at=T0 + 20, plan="team") == "processed"
    # Sent before the downgrade, delivered after it: neither re-maps nor suspends.
    assert _changed(webhooks, source, custom, at=T0 + 10, plan="starter") == "ignored"
    assert _changed(webhooks, source, custom, at=T0 + 11, status="past_due") == "ignored"
    assert webhooks.plan(org_id) == "team"
    assert _changed(webhooks, source, custom, at=T0 + 30, status="past_due") == "processed"
    # An older paid state does not lift the newer suspension, nor one older than the activation.
    assert _changed(webhooks, source, custom, at=T0 + 25) == "ignored"
    assert _changed(webhooks, source, custom, at=T0 - 5) == "ignored"
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["plan_suspended", "plan_changed", "plan_activated"]
    assert _subscription(webhooks, custom)["last_event_at"] == (T0 + 30) * MICROSECONDS


@pytest.mark.parametrize("source", UPDATING)
def test_of_two_subscription_updates_of_one_time_the_unpaid_one_wins(
    webhooks: WebhookStack, source: str
) -> None:
    # Two states of one time are of unknown order (Lemon Squeezy writes `updated_at` in whole
    # seconds), so a tie fails closed. Neither is taken for a repeat of the other.
    org_id, custom = _subscribed(webhooks, source)
    assert _changed(webhooks, source, custom, at=T0 + 10, status="past_due") == "processed"
    assert _changed(webhooks, source, custom, at=T0 + 10) == "ignored"
    assert webhooks.plan(org_id) == "free"
    assert _changed(webhooks, source, custom, at=T0 + 11) == "processed"
    assert webhooks.plan(org_id) == "team"
    # An unpaid state of the same time as the one applied still suspends, and another variant
    # of that time re-maps the plan it pays for.
    assert _changed(webhooks, source, custom, at=T0 + 11, status="unpaid") == "processed"
    assert webhooks.plan(org_id) == "free"
    assert _changed(webhooks, source, custom, at=T0 + 12, plan="starter") == "processed"
    assert _changed(webhooks, source, custom, at=T0 + 12, plan="enterprise") == "processed"
    assert webhooks.plan(org_id) == "enterprise"


@pytest.mark.parametrize("source", UPDATING)
def test_an_update_that_does_not_say_when_changes_nothing(
    webhooks: WebhookStack, source: str
) -> None:
    org_id, custom = _subscribed(webhooks, source)
    for when in UNDATED[source]:
        answer = _changed(webhooks, source, custom, at=T0 + 10, status="past_due", state=when)
        assert answer == "ignored", when
    assert webhooks.plan(org_id) == "team"


@pytest.mark.parametrize("source", UPDATING)
def test_an_update_of_another_subscription_is_ignored(webhooks: WebhookStack, source: str) -> None:
    org_id, custom = _subscribed(webhooks, source)
    # Our custom data on a subscription the nonce did not activate (bought by another order).
    other = {"subscription_id": "7399", "order_id": 6199}
    assert _changed(webhooks, source, custom, at=T0 + 10, status="past_due", **other) == "ignored"
    assert webhooks.plan(org_id) == "team"
    # A later checkout's subscription now sets the org's plan: the first one's updates, whether
    # to suspend or to re-map, leave it alone.
    newer = custom_data(org_id, new_nonce(webhooks, org_id))
    newest = {"subscription_id": "7302", "order_id": 6102}
    activated = send(
        webhooks,
        source,
        SUBSCRIPTION_CREATED[source],
        newer,
        product=PLAN_PRODUCTS[source]["enterprise"],
        created=T0 + 20,
        **newest,
    )
    assert activated.body == {"status": "processed"}
    assert _changed(webhooks, source, custom, at=T0 + 30, status="past_due") == "ignored"
    assert _changed(webhooks, source, custom, at=T0 + 40, plan="starter") == "ignored"
    assert webhooks.plan(org_id) == "enterprise"
    assert _effects(webhooks, org_id) == ["plan_activated", "plan_activated"]
    assert _subscription(webhooks, custom)["plan"] == "team"
    # The newer subscription's own updates apply.
    answer = _changed(webhooks, source, newer, at=T0 + 50, status="past_due", **newest)
    assert answer == "processed"
    assert webhooks.plan(org_id) == "free"


@pytest.mark.parametrize("source", UPDATING)
def test_a_subscription_activated_before_ids_were_recorded_takes_no_update_but_still_ends(
    webhooks: WebhookStack, source: str
) -> None:
    # Activated before activations of this source recorded its subscription: which one that
    # was is unknown, so no update applies to it; its end still ends it, as it did then.
    org_id, custom = _subscribed(webhooks, source, plan="starter")
    digest = hashlib.sha256(custom["strongroom_nonce"].encode()).hexdigest()
    unknown = ("subscription_id", "order_id", "last_event_at", "status")
    webhooks.table.update(org_id, "SUBSCRIPTION", digest, remove=unknown, now=NOW)
    assert _changed(webhooks, source, custom, at=T0 + 10, status="past_due") == "ignored"
    assert _changed(webhooks, source, custom, at=T0 + 20, plan="enterprise") == "ignored"
    assert webhooks.plan(org_id) == "starter"
    assert not set(unknown) & set(_subscription(webhooks, custom))
    ended = send(webhooks, source, SUBSCRIPTION_ENDED[source], custom)
    assert ended.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"


@pytest.mark.parametrize("source", UPDATING)
def test_a_subscription_update_to_an_unmapped_product_changes_nothing_and_is_audited(
    webhooks: WebhookStack, source: str
) -> None:
    org_id, custom = _subscribed(webhooks, source)
    before = _subscription(webhooks, custom)
    unknown = billing_delivery(
        webhooks,
        source,
        SUBSCRIPTION_UPDATED[source],
        custom,
        product=PLAN_PRODUCTS[source]["unmapped"],
        created=T0 + 10,
        subscription_id=SUBSCRIBED[source],
        order_id=BOUGHT_BY,
    )
    assert webhooks.deliver(source, *unknown).body == {"status": "ignored"}
    assert webhooks.plan(org_id) == "team"
    assert _subscription(webhooks, custom) == before
    refused = webhooks.webhook_effects(org_id)[0]
    assert refused["effect"] == "plan_change_refused"
    assert (refused["plan"], refused["products"]) == (
        "team",
        [str(PLAN_PRODUCTS[source]["unmapped"])],
    )
    (audited, _) = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert audited.outcome == "denied"
    assert webhooks.deliver(source, *unknown).body == {"status": "duplicate"}
    # A mapped product later applies as usual.
    assert _changed(webhooks, source, custom, at=T0 + 20, plan="starter") == "processed"
    assert webhooks.plan(org_id) == "starter"


@pytest.mark.parametrize("source", UPDATING)
def test_a_duplicate_subscription_update_is_a_no_op(webhooks: WebhookStack, source: str) -> None:
    org_id, custom = _subscribed(webhooks, source)
    past_due = billing_delivery(
        webhooks,
        source,
        SUBSCRIPTION_UPDATED[source],
        custom,
        status="past_due",
        created=T0 + 10,
        subscription_id=SUBSCRIBED[source],
        order_id=BOUGHT_BY,
    )
    assert webhooks.deliver(source, *past_due).body == {"status": "processed"}
    assert webhooks.deliver(source, *past_due).body == {"status": "duplicate"}
    assert _changed(webhooks, source, custom, at=T0 + 20) == "processed"
    # Retried once more after the restore: still a duplicate, the plan stays.
    assert webhooks.deliver(source, *past_due).body == {"status": "duplicate"}
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id) == ["plan_restored", "plan_suspended", "plan_activated"]


def test_a_lemonsqueezy_order_that_activated_the_nonce_binds_its_subscriptions_updates(
    webhooks: WebhookStack,
) -> None:
    # Lemon Squeezy sends order_created alongside subscription_created, both with our custom
    # data; the order may come first and activate the nonce. Its subscription names it.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    order = send(webhooks, "lemonsqueezy", "order_created", custom, order_id=BOUGHT_BY)
    assert order.body == {"status": "processed"}
    assert "last_event_at" not in _subscription(webhooks, custom)
    # Another order's subscription carrying our custom data: not the one the order bought.
    other = {"subscription_id": "7399", "order_id": 6199}
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 10, status="past_due", **other) == (
        "ignored"
    )
    # The order's own subscription (its first update: nothing newer was applied) suspends.
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 20, status="past_due") == "processed"
    assert webhooks.plan(org_id) == "free"
    stored = _subscription(webhooks, custom)
    assert (stored["subscription_id"], stored["order_id"]) == ("7301", str(BOUGHT_BY))
    # From then on that subscription is the one: not even one naming the same order is taken.
    same_order = {"subscription_id": "7399"}
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 30, **same_order) == "ignored"
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 15) == "ignored"  # older
    assert _changed(webhooks, "lemonsqueezy", custom, at=T0 + 30, plan="starter") == "processed"
    assert webhooks.plan(org_id) == "starter"
    assert _effects(webhooks, org_id) == ["plan_restored", "plan_suspended", "plan_activated"]


def _first_order(
    webhooks: WebhookStack, source: str, custom: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """The paid order that bought the test's subscription, as `source` sends it: Lemon
    Squeezy's names itself (its subscription names it), Polar's names the subscription."""
    if source == "lemonsqueezy":
        return billing_delivery(webhooks, source, ORDER_PAID[source], custom, order_id=BOUGHT_BY)
    subscription_id = SUBSCRIBED[source]
    return billing_delivery(
        webhooks, source, ORDER_PAID[source], custom, subscription_id=subscription_id
    )


def _activated_by_order(webhooks: WebhookStack, source: str, custom: dict[str, str]) -> Response:
    return webhooks.deliver(source, *_first_order(webhooks, source, custom))


def test_a_polar_order_that_activated_the_nonce_binds_the_subscription_it_names(
    webhooks: WebhookStack,
) -> None:
    # Polar sends order.paid alongside subscription.created; a subscription's order names it.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _activated_by_order(webhooks, "standard", custom).body == {"status": "processed"}
    stored = _subscription(webhooks, custom)
    assert stored["subscription_id"] == SUBSCRIBED["standard"]
    assert "last_event_at" not in stored
    other = {"subscription_id": "0b9d1f3a-7c2e-4e5b-8a6d-1f2e3d4c5b6a"}
    assert _changed(webhooks, "standard", custom, at=T0 + 10, status="past_due", **other) == (
        "ignored"
    )
    assert _changed(webhooks, "standard", custom, at=T0 + 20, status="past_due") == "processed"
    assert webhooks.plan(org_id) == "free"
    # A one-time purchase names no subscription: no update applies to what it activated.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    one_time = send(webhooks, "standard", "order.paid", custom, state={"subscription_id": None})
    assert one_time.body == {"status": "processed"}
    assert _changed(webhooks, "standard", custom, at=T0 + 10, status="past_due") == "ignored"
    assert webhooks.plan(org_id) == "team"


def test_a_polar_subscription_never_modified_is_ordered_by_its_creation(
    webhooks: WebhookStack,
) -> None:
    # Polar's `modified_at` is null until the subscription is first modified.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created = send(
        webhooks,
        "standard",
        "subscription.created",
        custom,
        subscription_id=SUBSCRIBED["standard"],
        state={"created_at": "2026-11-18T11:06:40.250000+00:00", "modified_at": None},
    )
    assert created.body == {"status": "processed"}
    assert _subscription(webhooks, custom)["last_event_at"] == T0 * MICROSECONDS + 250_000
    assert _changed(webhooks, "standard", custom, at=T0, status="past_due") == "ignored"  # older
    assert _changed(webhooks, "standard", custom, at=T0 + 1, status="past_due") == "processed"
    assert webhooks.plan(org_id) == "free"


def test_a_polar_subscription_cancelled_at_the_period_end_keeps_its_plan_until_it_ends(
    webhooks: WebhookStack,
) -> None:
    # Polar keeps a subscription cancelled for the period's end `active`, with
    # `cancel_at_period_end`, until the period ends: then it is `canceled` and revoked.
    org_id, custom = _subscribed(webhooks, "standard")
    for at, pending in ((T0 + 10, True), (T0 + 20, False), (T0 + 30, True)):  # un-cancelled
        state = {"cancel_at_period_end": pending}
        assert _changed(webhooks, "standard", custom, at=at, state=state) == "accepted"
    assert webhooks.plan(org_id) == "team"
    ended = {"cancel_at_period_end": True, "ended_at": "2026-12-18T11:06:40Z"}
    answer = _changed(webhooks, "standard", custom, at=T0 + 40, status="canceled", state=ended)
    assert answer == "processed"
    assert webhooks.plan(org_id) == "free"
    revoked = send(webhooks, "standard", "subscription.revoked", custom)
    assert revoked.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == [
        "plan_deactivated",
        "plan_suspended",
        "plan_activated",
    ]


@pytest.mark.parametrize("activated_by", ["subscription", "order"])
@pytest.mark.parametrize("source", UPDATING)
def test_an_unpaid_subscription_update_before_its_activation_starts_it_suspended(
    webhooks: WebhookStack, source: str, activated_by: str
) -> None:
    # The activating delivery failed and is retried; meanwhile the subscription was paused.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _changed(webhooks, source, custom, at=T0 + 60, status="paused") == "accepted"
    assert webhooks.plan(org_id) == "free"
    if activated_by == "subscription":
        created = send(
            webhooks,
            source,
            SUBSCRIPTION_CREATED[source],
            custom,
            created=T0,
            subscription_id=SUBSCRIBED[source],
            order_id=BOUGHT_BY,
        )
    else:
        created = _activated_by_order(webhooks, source, custom)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    state = _subscription(webhooks, custom)
    assert (state["plan"], state["suspended"], state["status"]) == ("team", True, "paused")
    assert state["last_event_at"] == (T0 + 60) * MICROSECONDS
    # Unpaused and paid: restored.
    assert _changed(webhooks, source, custom, at=T0 + 90) == "processed"
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id) == ["plan_restored", "plan_activated"]


@pytest.mark.parametrize("source", UPDATING)
def test_an_unpaid_update_racing_the_activation_by_its_order_applies_after_it(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # The order's activation commits between the update's read of the CHECKOUT (open) and its
    # write of it: the update must not be lost (`ignored`, never retried), but apply to the
    # subscription the order activated, whose state nothing recorded yet.
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    order = _first_order(webhooks, source, custom)
    original = billing._early_event
    raced: list[str] = []

    def activation_commits_first(*args: Any, **kwargs: Any) -> Any:
        if not raced:
            raced.append(_receive(webhooks, source, *order))
        return original(*args, **kwargs)

    monkeypatch.setattr(billing, "_early_event", activation_commits_first)
    assert _changed(webhooks, source, custom, at=T0 + 60, status="past_due") == "processed"
    assert raced == ["processed"]
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["plan_suspended", "plan_activated"]
    assert _subscription(webhooks, custom)["subscription_id"] == SUBSCRIBED[source]


@pytest.mark.parametrize("source", UPDATING)
def test_an_older_subscription_update_racing_a_newer_one_loses_whole(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # Activated by its order: both updates read a subscription with no state applied yet (and,
    # Lemon Squeezy's, no subscription id), and whichever writes second must find that changed
    # and decide again.
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _activated_by_order(webhooks, source, custom).body == {"status": "processed"}
    planned = billing._update
    newer = billing_delivery(
        webhooks,
        source,
        SUBSCRIPTION_UPDATED[source],
        custom,
        product=PLAN_PRODUCTS[source]["starter"],
        created=T0 + 20,
        subscription_id=SUBSCRIBED[source],
        order_id=BOUGHT_BY,
    )
    raced: list[str] = []

    def newer_applied_after_the_read(*args: Any, **kwargs: Any) -> Any:
        result = planned(*args, **kwargs)
        if not raced:
            raced.append("racing")
            raced.append(_receive(webhooks, source, *newer))
        return result

    with monkeypatch.context() as patch:
        patch.setattr(billing, "_update", newer_applied_after_the_read)
        # Read before the newer update applied, written after: its conditional write fails,
        # and read again it is older than the newest applied.
        answer = _changed(webhooks, source, custom, at=T0 + 10, status="past_due")
        assert answer == "ignored"
    assert raced == ["racing", "processed"]
    assert webhooks.plan(org_id) == "starter"
    assert _effects(webhooks, org_id) == ["plan_changed", "plan_activated"]
    assert _subscription(webhooks, custom)["last_event_at"] == (T0 + 20) * MICROSECONDS


# Refunds that do not show a full refund of the order, as each platform sends them; then a full
# one. Lemon Squeezy keeps a partly refunded order `paid` with `refunded` false; Polar marks it
# `partially_refunded`.
PAID_ORDER = {"lemonsqueezy": "order_created", "standard": "order.paid"}
REFUNDED = {"lemonsqueezy": "order_refunded", "standard": "order.refunded"}
NOT_FULL_REFUNDS = {
    "lemonsqueezy": [
        {"status": "paid", "refunded": False, "total": 4900, "refunded_amount": 100},
        {"status": "refunded", "refunded": False, "total": 4900, "refunded_amount": 4900},
        {"status": "refunded", "refunded": True, "total": 4900, "refunded_amount": 4800},
        {"status": "refunded", "refunded": True, "total": None, "refunded_amount": None},
        {"status": "refunded", "refunded": True, "total": "4900", "refunded_amount": "4900"},
        {"status": None, "refunded": True},
    ],
    "standard": [
        {"status": "partially_refunded"},
        {"status": "paid"},
        {"status": None},
    ],
}


@pytest.mark.parametrize("source", sorted(REFUNDED))
def test_only_a_full_refund_returns_the_plan_to_free(webhooks: WebhookStack, source: str) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert send(webhooks, source, PAID_ORDER[source], custom).body == {"status": "processed"}
    for seconds, state in enumerate(NOT_FULL_REFUNDS[source]):
        # Each refund changes the order: a later `updated_at` (Lemon Squeezy's event id).
        at = {"updated_at": f"2026-11-23T10:00:0{seconds}.000000Z"}
        if source != "lemonsqueezy":
            at = {}
        response = send(webhooks, source, REFUNDED[source], custom, state={**state, **at})
        assert response.body == {"status": "accepted"}, state
    assert webhooks.plan(org_id) == "team"
    assert send(webhooks, source, REFUNDED[source], custom).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    effects = [e["effect"] for e in webhooks.webhook_effects(org_id)]
    assert effects == ["plan_deactivated", "plan_activated"]


# An order as each platform sends it when it names no subscription (Lemon Squeezy's orders never
# do; Polar's one-time purchase): its id, the state that says so.
ORDER_IDS = {"lemonsqueezy": (6101, 6199), "standard": ("ord_Ours", "ord_Other")}


def _order(
    webhooks: WebhookStack, source: str, event_type: str, custom: dict[str, str], order: Any
) -> Response:
    if source == "lemonsqueezy":
        return send(webhooks, source, event_type, custom, order_id=order)
    state = {"id": order, "subscription_id": None}
    return send(webhooks, source, event_type, custom, state=state)


@pytest.mark.parametrize("source", ["lemonsqueezy", "standard"])
def test_a_refund_before_its_activation_is_kept_for_its_order(
    webhooks: WebhookStack, source: str
) -> None:
    # An order's refund names no subscription: it is kept for the order it names, not read as
    # the end of whatever the checkout activates next.
    paid, refunded = ORDER_PAID[source], REFUNDED[source]
    ours, other = ORDER_IDS[source]
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _order(webhooks, source, refunded, custom, other).body == {"status": "accepted"}
    assert _order(webhooks, source, paid, custom, ours).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    assert _effects(webhooks, org_id) == ["plan_activated"]
    # The refunded order itself, activated late: the nonce is spent without a plan.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert _order(webhooks, source, refunded, custom, ours).body == {"status": "accepted"}
    assert webhooks.plan(org_id) == "free"
    assert _order(webhooks, source, paid, custom, ours).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]
    assert _order(webhooks, source, paid, custom, other).body == {"status": "ignored"}
    assert webhooks.plan(org_id) == "free"


def test_a_lemonsqueezy_refund_before_its_activation_ends_the_subscription_it_bought(
    webhooks: WebhookStack,
) -> None:
    # Lemon Squeezy's subscription names the order that bought it: that order's full refund,
    # arriving first, voids the subscription's activation as it would end it once activated.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    refunded = send(webhooks, "lemonsqueezy", "order_refunded", custom, order_id=BOUGHT_BY)
    assert refunded.body == {"status": "accepted"}
    ids = {"subscription_id": SUBSCRIBED["lemonsqueezy"], "order_id": BOUGHT_BY}
    created = send(webhooks, "lemonsqueezy", "subscription_created", custom, created=T0, **ids)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]
    # Its subscription went unpaid, then the order was refunded: the refund (which says no
    # time of the subscription's) ends it all the same, whichever activation comes.
    for activation in ("order_created", "subscription_created"):
        org_id = webhooks.new_org()
        custom = custom_data(org_id, new_nonce(webhooks, org_id))
        unpaid = _changed(webhooks, "lemonsqueezy", custom, at=T0 + 60, status="past_due")
        assert unpaid == "accepted"
        refunded = send(webhooks, "lemonsqueezy", "order_refunded", custom, order_id=BOUGHT_BY)
        assert refunded.body == {"status": "accepted"}
        created = send(webhooks, "lemonsqueezy", activation, custom, created=T0, **ids)
        assert created.body == {"status": "processed"}
        assert webhooks.plan(org_id) == "free"
        assert _effects(webhooks, org_id) == ["checkout_voided"], activation


def test_an_end_before_its_activation_counts_against_a_newer_state(
    webhooks: WebhookStack,
) -> None:
    # A Polar subscription's order refunded in full, then (delivered first) a newer paid state
    # of the subscription: once activated, that refund ends the plan whatever the times say, so
    # arriving first it must not be outdated by the activation either.
    later = int(NOW.timestamp()) + 60
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ids = {"subscription_id": SUBSCRIBED["standard"], "state": {"id": "ord_Ours"}}
    refunded = send(webhooks, "standard", "order.refunded", custom, **ids)
    assert refunded.body == {"status": "accepted"}
    assert _changed(webhooks, "standard", custom, at=later) == "processed"
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]
    # Stripe's end of a subscription, then a newer paid update of it: the end stands.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ended = send(webhooks, "stripe", "customer.subscription.deleted", custom, created=T0 + 5)
    assert ended.body == {"status": "accepted"}
    assert _update(webhooks, custom, at=T0 + 10) == "processed"
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]


def test_an_early_event_is_kept_and_read_for_its_own_platform_only(
    webhooks: WebhookStack,
) -> None:
    # One nonce used on two platforms whose subscriptions happen to share an id: Polar's end of
    # its subscription is not the end of Stripe's, nor does it crowd out Stripe's own.
    shared = "sub_1PzSharedIdentifier"
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ended = send(
        webhooks, "standard", "subscription.revoked", custom, subscription_id=shared, created=T0
    )
    assert ended.body == {"status": "accepted"}
    unpaid = _update(webhooks, custom, at=T0 + 60, status="past_due", subscription_id=shared)
    assert unpaid == "accepted"
    created = send(
        webhooks,
        "stripe",
        "customer.subscription.created",
        custom,
        created=T0,
        subscription_id=shared,
    )
    assert created.body == {"status": "processed"}
    assert _effects(webhooks, org_id) == ["plan_activated"]
    assert webhooks.plan(org_id) == "free"
    assert _subscription(webhooks, custom)["suspended"] is True


# A subscription's state with no time it came to (`updated_at`; Polar's `created_at` and
# `modified_at`): what each platform's end then says of when it came.
TIMELESS = {"lemonsqueezy": {"updated_at": None}, "standard": {"created_at": None}}


@pytest.mark.parametrize("source", UPDATING)
def test_an_end_before_its_activation_that_says_no_time_still_ends_it(
    webhooks: WebhookStack, source: str
) -> None:
    # An end is final whenever it came (once activated, one without a time ends the plan all
    # the same): kept for its subscription, not dropped for want of a time.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ids = {"subscription_id": SUBSCRIBED[source], "order_id": BOUGHT_BY}
    ended = send(
        webhooks, source, SUBSCRIPTION_ENDED[source], custom, state=TIMELESS[source], **ids
    )
    assert ended.body == {"status": "accepted"}
    created = send(webhooks, source, SUBSCRIPTION_CREATED[source], custom, created=T0, **ids)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]


def _stripe_charge_refunded(
    webhooks: WebhookStack, *, amount_refunded: int, metadata: dict[str, str]
) -> tuple[bytes, dict[str, str]]:
    """charge.refunded as Stripe sends it for a subscription's payment: a Charge, which holds
    its own metadata (not the subscription's) and names the invoice, not the subscription."""
    document = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_3SampleCharge",
                "object": "charge",
                "amount": 4900,
                "amount_refunded": amount_refunded,
                "refunded": amount_refunded == 4900,
                "customer": "cus_SampleCustomer",
                "invoice": "in_1SampleInvoice",
                "payment_intent": "pi_3SamplePayment",
                "metadata": metadata,
            }
        },
    }
    body = json.dumps(document).encode("utf-8")
    timestamp = int(webhooks.clock.now.timestamp())
    return body, stripe_headers(body, webhooks.secret("stripe"), timestamp=timestamp)


def test_a_stripe_refund_leaves_the_plan_to_the_subscription(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    created, deleted = EVENTS["stripe"]
    assert send(webhooks, "stripe", created, custom).body == {"status": "processed"}
    # A refund does not end a Stripe subscription; a charge cannot name the nonce anyway. Not
    # even a charge whose own metadata carries ours has an effect.
    for amount, metadata in ((4900, {}), (100, {}), (4900, custom)):
        body, headers = _stripe_charge_refunded(webhooks, amount_refunded=amount, metadata=metadata)
        assert webhooks.deliver("stripe", body, headers).body == {"status": "accepted"}
    assert webhooks.plan(org_id) == "team"
    # Cancelling the subscription ends it, and the plan with it.
    assert send(webhooks, "stripe", deleted, custom).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"


@pytest.mark.parametrize("change", ["removed", "demoted"])
def test_a_nonce_of_an_owner_removed_or_demoted_since_cannot_set_the_plan(
    webhooks: WebhookStack, change: str
) -> None:
    org_id = webhooks.new_org()
    webhooks.add_member(org_id, "bob", "owner")
    nonce = new_nonce(webhooks, org_id, sub="bob")
    if change == "removed":
        webhooks.table.delete(org_id, "MEMBER", "bob", now=NOW)
    else:
        webhooks.table.update(org_id, "MEMBER", "bob", changes={"role": "admin"}, now=NOW)
    custom = custom_data(org_id, nonce)
    assert send(webhooks, "stripe", "customer.subscription.created", custom).body == {
        "status": "processed"
    }
    assert webhooks.plan(org_id) == "free"
    (effect,) = webhooks.webhook_effects(org_id)
    assert (effect["effect"], effect["checkout_by"], effect["plan"]) == (
        "checkout_refused",
        "bob",
        "team",
    )
    (audited,) = [e for e in webhooks.audit_events(org_id) if e.action == "webhook.effect"]
    assert audited.outcome == "denied"
    # Consumed: the nonce cannot be used later, even were bob an owner again.
    webhooks.table.put(org_id, "MEMBER", "bob", attributes={"role": "owner"}, now=NOW)
    assert send(webhooks, "stripe", "customer.subscription.created", custom).body == {
        "status": "ignored"
    }
    assert webhooks.plan(org_id) == "free"


@pytest.mark.parametrize("change", ["removed", "demoted"])
def test_an_owner_removed_or_demoted_while_the_event_is_applied_gets_it_refused(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    from webhook_verifier import billing

    org_id = webhooks.new_org()
    webhooks.add_member(org_id, "bob", "owner")
    nonce = new_nonce(webhooks, org_id, sub="bob")
    planned = billing._activation

    def role_lost_after_the_read(*args: Any, **kwargs: Any) -> Any:
        result = planned(*args, **kwargs)
        if change == "removed":
            webhooks.table.delete(org_id, "MEMBER", "bob", now=NOW)
        else:
            webhooks.table.update(org_id, "MEMBER", "bob", changes={"role": "admin"}, now=NOW)
        return result

    with monkeypatch.context() as patch:
        patch.setattr(billing, "_activation", role_lost_after_the_read)
        response = send(
            webhooks, "stripe", "customer.subscription.created", custom_data(org_id, nonce)
        )
    assert response.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert [e["effect"] for e in webhooks.webhook_effects(org_id)] == ["checkout_refused"]


def test_an_event_for_a_deleted_org_changes_nothing(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    webhooks.table.delete(org_id, "ORG", now=NOW)
    assert send(
        webhooks, "stripe", "customer.subscription.created", custom_data(org_id, nonce)
    ).body == {"status": "ignored"}


# ---- concurrency ------------------------------------------------------------------------------


def _concurrently(count: int, action: Any) -> list[Any]:
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = action(index)
        except Exception as exc:  # noqa: BLE001 - the test inspects what each thread got
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _receive(webhooks: WebhookStack, source: str, body: bytes, headers: dict[str, str]) -> str:
    """The receiver itself: the resolver holds one request at a time, as Lambda does."""
    from webhook_verifier import receiver
    from webhook_verifier.sources import Source

    event = {"headers": {k.lower(): v for k, v in headers.items()}, "body": body.decode()}
    receipt = receiver.receive(
        webhooks.app.services(), Source(source), event, now=NOW, request_id=str(uuid.uuid4())
    )
    return receipt.status


def test_twenty_concurrent_deliveries_of_one_event_have_one_effect(
    webhooks: WebhookStack, atomic_aws: None
) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    body, headers = billing_delivery(
        webhooks, "stripe", "customer.subscription.created", custom_data(org_id, nonce)
    )
    results = _concurrently(20, lambda _: _receive(webhooks, "stripe", body, headers))
    assert sorted(results) == ["duplicate"] * 19 + ["processed"]
    assert webhooks.plan(org_id) == "team"
    assert len(webhooks.webhook_effects(org_id)) == 1


def test_twenty_concurrent_events_racing_for_one_nonce_have_one_effect(
    webhooks: WebhookStack, atomic_aws: None
) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    deliveries = [
        billing_delivery(webhooks, "lemonsqueezy", "order_created", custom_data(org_id, nonce))
        for _ in range(20)
    ]
    results = _concurrently(20, lambda i: _receive(webhooks, "lemonsqueezy", *deliveries[i]))
    assert sorted(results) == ["ignored"] * 19 + ["processed"]
    assert len(webhooks.webhook_effects(org_id)) == 1


def test_an_effect_during_an_audit_outage_is_processed_once_and_audited_afterwards(
    webhooks: WebhookStack,
) -> None:
    down = {"s3": False}

    def audit_bucket(params: dict[str, Any], **_: Any) -> None:
        if down["s3"] and b'"action":"webhook.effect"' in bytes(params.get("Body", b"")):
            raise EndpointConnectionError(endpoint_url="https://s3.invalid")

    assert webhooks.aws is not None
    webhooks.aws.events.register("before-parameter-build.s3.PutObject", audit_bucket)
    source = SOURCES[0]
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    created, _ = EVENTS[source]
    body, headers = billing_delivery(webhooks, source, created, custom_data(org_id, nonce))
    down["s3"] = True
    # Answered as processed: a 5xx would have the platform redeliver it as a duplicate, and
    # the effect would never be audited.
    assert webhooks.deliver(source, body, headers).body == {"status": "processed"}
    down["s3"] = False
    assert webhooks.plan(org_id) == "team"
    assert webhooks.webhook_effects(org_id) == []
    assert webhooks.deliver(source, body, headers).body == {"status": "duplicate"}

    log = AuditLog(
        s3=boto3.client("s3"), dynamodb=boto3.client("dynamodb"), settings=webhooks.settings
    )
    assert log.sweep(now=webhooks.clock.now + SWEEP_GRACE).appended == 1
    [effect] = webhooks.webhook_effects(org_id)
    assert effect["effect"] == "plan_activated"


@pytest.mark.parametrize("source", UPDATING)
def test_an_end_before_its_activation_voids_the_nonce_for_its_subscription_only(
    webhooks: WebhookStack, source: str
) -> None:
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    # Our custom data on another subscription, ended: kept for that one only.
    another = {"lemonsqueezy": "7399", "standard": "0d9e1f2a-3b4c-4d5e-8f60-718293a4b5c6"}
    ended = SUBSCRIPTION_ENDED[source]
    other = send(webhooks, source, ended, custom, created=T0 + 5, subscription_id=another[source])
    assert other.body == {"status": "accepted"}
    ids = {"subscription_id": SUBSCRIBED[source], "order_id": BOUGHT_BY}
    created = send(webhooks, source, SUBSCRIPTION_CREATED[source], custom, created=T0, **ids)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    # The end of the subscription itself, before its activation, voids the nonce for it.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    assert send(webhooks, source, ended, custom, created=T0 + 5, **ids).body == {
        "status": "accepted"
    }
    created = send(webhooks, source, SUBSCRIPTION_CREATED[source], custom, created=T0, **ids)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"
    assert _effects(webhooks, org_id) == ["checkout_voided"]


@pytest.mark.parametrize("source", UPDATING)
def test_an_end_of_another_subscription_or_source_leaves_the_plan(
    webhooks: WebhookStack, source: str
) -> None:
    # Our custom data copied onto another subscription (or order) of the platform, or the
    # same ids from the other platform: their end is not the end of what the nonce activated.
    org_id, custom = _subscribed(webhooks, source)
    ended = SUBSCRIPTION_ENDED[source]
    other_source = "standard" if source == "lemonsqueezy" else "lemonsqueezy"
    strays = [
        send(webhooks, source, ended, custom, subscription_id="7399", order_id=6199),
        send(webhooks, source, REFUNDED[source], custom, subscription_id="7399", order_id=6199),
        send(webhooks, other_source, SUBSCRIPTION_ENDED[other_source], custom,
             subscription_id=SUBSCRIBED[source], order_id=BOUGHT_BY),
    ]  # fmt: skip
    assert [stray.body for stray in strays] == [{"status": "ignored"}] * 3
    assert webhooks.plan(org_id) == "team"
    assert send(webhooks, source, ended, custom).body == {"status": "processed"}
    assert webhooks.plan(org_id) == "free"


def test_a_cancelled_update_before_the_activation_neither_starts_nor_suspends_it(
    webhooks: WebhookStack,
) -> None:
    # Lemon Squeezy's `cancelled` runs out on what was paid: it says neither paid nor unpaid,
    # so, arriving first, it is not kept as an unpaid state the activation would start in.
    org_id = webhooks.new_org()
    custom = custom_data(org_id, new_nonce(webhooks, org_id))
    ends = {"ends_at": "2026-12-23T09:00:00.000000Z"}
    answer = _changed(webhooks, "lemonsqueezy", custom, at=T0 + 60, status="cancelled", state=ends)
    assert answer == "ignored"
    assert webhooks.plan(org_id) == "free"
    ids = {"subscription_id": SUBSCRIBED["lemonsqueezy"], "order_id": BOUGHT_BY}
    created = send(webhooks, "lemonsqueezy", "subscription_created", custom, created=T0, **ids)
    assert created.body == {"status": "processed"}
    assert webhooks.plan(org_id) == "team"
    assert "suspended" not in _subscription(webhooks, custom)
