"""Checkout nonces and the plan changes that signed billing events make with them."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from datetime import timedelta
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
    "standard": ("subscription.created", "subscription.canceled"),
}
SOURCES = sorted(EVENTS)


def billing_delivery(
    webhooks: WebhookStack,
    source: str,
    event_type: str,
    custom: dict[str, str] | None,
    *,
    product: Any = None,
    event_id: str | None = None,
    status: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed billing event of `source`, shaped as the platform sends it."""
    secret = webhooks.secret(source)
    product = TEAM_PRODUCT[source] if product is None else product
    timestamp = int(webhooks.clock.now.timestamp())
    event_id = event_id or uuid.uuid4().hex
    if source == "stripe":
        body = stripe_subscription_event(
            "evt_" + event_id, event_type, custom=custom, price=product, status=status or "active"
        )
        return body, stripe_headers(body, secret, timestamp=timestamp)
    if source == "lemonsqueezy":
        body = lemonsqueezy_event(
            event_type,
            custom=custom,
            resource="orders" if event_type.startswith("order") else "subscriptions",
            resource_id=event_id,
            variant_id=product,
            status=status or "paid",
        )
        return body, lemonsqueezy_headers(body, secret, event_name=event_type)
    body = standard_event(event_type, custom=custom, product_id=product)
    headers = standard_headers(body, secret, message_id="msg_" + event_id, timestamp=timestamp)
    return body, headers


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
    assert send(webhooks, source, cancelled, custom_data(org_id, nonce)).body == {
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


def test_a_subscription_that_is_not_active_changes_nothing(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    custom = custom_data(org_id, nonce)
    assert send(
        webhooks, "stripe", "customer.subscription.created", custom, status="incomplete"
    ).body == {"status": "accepted"}
    assert send(webhooks, "lemonsqueezy", "order_created", custom, status="pending").body == {
        "status": "accepted"
    }
    assert webhooks.plan(org_id) == "free"
    assert send(
        webhooks, "stripe", "customer.subscription.created", custom, status="trialing"
    ).body == {"status": "processed"}


def test_a_cancellation_before_its_activation_voids_the_nonce(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    custom = custom_data(org_id, nonce)
    assert send(webhooks, "lemonsqueezy", "subscription_cancelled", custom).body == {
        "status": "processed"
    }
    assert send(webhooks, "lemonsqueezy", "subscription_created", custom).body == {
        "status": "ignored"
    }
    assert webhooks.plan(org_id) == "free"
    assert [e["effect"] for e in webhooks.webhook_effects(org_id)] == ["checkout_voided"]


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


def test_a_refund_returns_the_plan_to_free(webhooks: WebhookStack) -> None:
    org_id = webhooks.new_org()
    nonce = new_nonce(webhooks, org_id)
    custom = custom_data(org_id, nonce)
    assert send(webhooks, "stripe", "customer.subscription.created", custom).body == {
        "status": "processed"
    }
    assert send(webhooks, "stripe", "charge.refunded", custom).body == {"status": "processed"}
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
