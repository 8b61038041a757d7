"""Every sample event under events/webhook_verifier/ drives its route, in a realistic order."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from strongroom_local.routes import http_routes
from strongroom_local.template import load_template
from tests.support.events import load_event
from tests.support.webhook_samples import (
    SAMPLE_NONCES,
    SAMPLE_ORG,
    SAMPLE_TIME,
    SAMPLES,
    build_samples,
    sample_secrets,
)
from tests.unit.webhook_verifier.conftest import WebhookStack

# The order a newcomer would replay them in, with what each answers.
SCENARIO = [
    ("create_checkout", 201, None),
    ("stripe_subscription_created", 200, "processed"),
    ("stripe_subscription_created", 200, "duplicate"),
    ("stripe_subscription_past_due", 200, "processed"),
    ("stripe_subscription_updated", 200, "processed"),
    ("stripe_subscription_deleted", 200, "processed"),
    ("create_checkout", 201, None),
    ("lemonsqueezy_order_created", 200, "processed"),
    ("lemonsqueezy_order_refunded", 200, "processed"),
    ("create_checkout", 201, None),
    ("standard_subscription_created", 200, "processed"),
    ("standard_subscription_past_due", 200, "processed"),
    ("standard_subscription_updated", 200, "processed"),
    ("standard_subscription_revoked", 200, "processed"),
    ("create_checkout", 201, None),
    ("lemonsqueezy_subscription_created", 200, "processed"),
    ("lemonsqueezy_subscription_past_due", 200, "processed"),
    ("lemonsqueezy_subscription_updated", 200, "processed"),
    ("lemonsqueezy_subscription_expired", 200, "processed"),
    ("github_ping", 200, "accepted"),
    ("stripe_forged_signature", 401, None),
]


def test_there_is_a_sample_event_for_every_route_and_the_files_are_current() -> None:
    routes = {
        r.route_key
        for r in http_routes(load_template())
        if r.function.logical_id == "WebhookVerifierFunction"
    }
    sampled = {load_event(f"webhook_verifier/{name}")["routeKey"] for name, _, _ in SCENARIO}
    assert sampled == routes
    names = {name for name, _, _ in SCENARIO}
    assert {p.stem for p in SAMPLES.glob("*.json")} == names | {"sample_secrets"}
    # The committed files are what the generator writes (`python -m tests.support.webhook_samples`).
    for name, event in build_samples().items():
        assert load_event(f"webhook_verifier/{name}") == event, name


def test_sample_events_replay_end_to_end(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_verifier import billing

    for source, secret in sample_secrets().items():
        webhooks.put_secrets(source, secret)
    webhooks.clock.now = datetime.fromtimestamp(SAMPLE_TIME, tz=UTC)
    nonces = itertools.chain(SAMPLE_NONCES)
    monkeypatch.setattr(billing, "new_checkout_nonce", lambda: next(nonces))
    webhooks.new_org(org_id=SAMPLE_ORG)
    for name, status, receipt in SCENARIO:
        response = webhooks.invoke(load_event(f"webhook_verifier/{name}"))
        assert response.status == status, (name, response.body)
        if receipt is not None:
            assert response.body == {"status": receipt}, name
    assert webhooks.plan(SAMPLE_ORG) == "free"
    effects = [e["effect"] for e in webhooks.webhook_effects(SAMPLE_ORG)]
    # Newest first: each subscription (Stripe's, Polar's, Lemon Squeezy's) was suspended and
    # restored on another price, product or variant; the Lemon Squeezy order was refunded.
    updated = ["plan_deactivated", "plan_restored", "plan_suspended", "plan_activated"]
    assert effects == updated * 2 + ["plan_deactivated", "plan_activated"] + updated
    restored = [e for e in webhooks.webhook_effects(SAMPLE_ORG) if e["effect"] == "plan_restored"]
    assert [(e["source"], e["plan"]) for e in restored] == [
        ("lemonsqueezy", "starter"),
        ("standard", "starter"),
        ("stripe", "starter"),
    ]
