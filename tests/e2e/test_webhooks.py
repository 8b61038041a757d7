"""Webhooks and billing through the real local stack over HTTP.

Deliveries are signed with the stack's own generated secrets (read from its Secrets Manager)
by the platforms' libraries (stripe, standardwebhooks, svix) or, for GitHub and Lemon Squeezy,
by their documented algorithm. How an org reaches a limit of 5 connections: it buys the
`starter` plan (5 connections) through a signed Lemon Squeezy order for the local starter
variant, exactly as a customer would.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from strongroom.plans import STARTER
from strongroom_local.harness import strongroom_command
from tests.e2e.conftest import LocalStackClient, call, new_user
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

pytestmark = pytest.mark.e2e
TIMEOUT = 30
UNAUTHENTICATED = {"error": {"code": "unauthenticated", "message": "Authentication required."}}


def _secret(stack: LocalStackClient, source: str) -> str:
    value = stack.client("secretsmanager").get_secret_value(
        SecretId=f"strongroom-dev/webhooks/{source}"
    )["SecretString"]
    return str(json.loads(value)["active"][0])


def _deliver(
    stack: LocalStackClient,
    source: str,
    body: bytes,
    headers: dict[str, str],
    *,
    content_type: str = "application/json",
    session: requests.Session | None = None,
) -> tuple[int, Any]:
    response = (session or stack.http).post(
        stack.url(f"/webhooks/{source}"),
        data=body,
        headers={"Content-Type": content_type, **headers},
        timeout=TIMEOUT,
    )
    return response.status_code, response.json() if response.content else None


def _now() -> int:
    return int(time.time())


Signer = Callable[[LocalStackClient, bytes], dict[str, str]]
SIGNED: dict[str, tuple[str, Callable[[], bytes], Signer]] = {
    "stripe": (
        "stripe",
        lambda: stripe_subscription_event(f"evt_{uuid.uuid4().hex}", "invoice.paid", custom=None),
        lambda s, body: stripe_headers(body, _secret(s, "stripe"), timestamp=_now()),
    ),
    "standardwebhooks": (
        "standard",
        lambda: standard_event("invoice.created", custom=None),
        lambda s, body: standard_headers(
            body, _secret(s, "standard"), message_id=f"msg_{uuid.uuid4().hex}", timestamp=_now()
        ),
    ),
    "svix": (
        "standard",
        lambda: standard_event("invoice.created", custom=None),
        lambda s, body: standard_headers(
            body,
            _secret(s, "standard"),
            message_id=f"msg_{uuid.uuid4().hex}",
            timestamp=_now(),
            library="svix",
        ),
    ),
    "github": (
        "github",
        lambda: json.dumps({"zen": "Avoid administrative distraction.", "hook_id": 7}).encode(),
        lambda s, body: github_headers(body, _secret(s, "github"), delivery=str(uuid.uuid4())),
    ),
    "lemonsqueezy": (
        "lemonsqueezy",
        lambda: lemonsqueezy_event(
            "license_key_created",
            custom=None,
            resource="license-keys",
            resource_id=uuid.uuid4().hex,
        ),
        lambda s, body: lemonsqueezy_headers(
            body, _secret(s, "lemonsqueezy"), event_name="license_key_created"
        ),
    ),
}


@pytest.mark.parametrize("signer", sorted(SIGNED))
def test_deliveries_signed_by_the_platforms_are_accepted_once(
    local_stack: LocalStackClient, signer: str
) -> None:
    source, make_body, sign = SIGNED[signer]
    body = make_body()
    headers = sign(local_stack, body)
    assert _deliver(local_stack, source, body, headers) == (200, {"status": "accepted"})
    assert _deliver(local_stack, source, body, headers) == (200, {"status": "duplicate"})


@pytest.mark.parametrize("signer", sorted(SIGNED))
def test_base64_bodies_verify_over_http(local_stack: LocalStackClient, signer: str) -> None:
    source, make_body, sign = SIGNED[signer]
    body = make_body()
    # A non-text content type: the HTTP API hands the body over base64-encoded.
    status, answer = _deliver(
        local_stack, source, body, sign(local_stack, body), content_type="application/octet-stream"
    )
    assert (status, answer) == (200, {"status": "accepted"})


@pytest.mark.parametrize("signer", sorted(SIGNED))
def test_tampered_deliveries_are_one_opaque_401_with_a_metric(
    local_stack: LocalStackClient, signer: str
) -> None:
    source, make_body, sign = SIGNED[signer]
    body = make_body()
    headers = sign(local_stack, body)
    attempts = [
        (body[:-2] + bytes([body[-2] ^ 1]) + body[-1:], headers),  # one body byte
        (body + b"\n", headers),  # whitespace
        (body, {name + "-x": value for name, value in headers.items()}),  # header names
        (body, {}),
    ]
    if source in ("stripe", "standard"):
        # Both sides of the tolerance, with a margin for the request's own latency (the exact
        # boundaries are tested with an injected clock in the unit tests).
        for offset in (-600, 600):
            attempts.append((body, sign_at(local_stack, signer, body, _now() + offset)))
    for attempt_body, attempt_headers in attempts:
        assert _deliver(local_stack, source, attempt_body, attempt_headers) == (
            401,
            UNAUTHENTICATED,
        )
    assert _wait_for(local_stack, '"WebhookSignatureRejected"', f'"source":"{source}"')


def sign_at(stack: LocalStackClient, signer: str, body: bytes, timestamp: int) -> dict[str, str]:
    if signer == "stripe":
        return stripe_headers(body, _secret(stack, "stripe"), timestamp=timestamp)
    return standard_headers(
        body,
        _secret(stack, "standard"),
        message_id=f"msg_{uuid.uuid4().hex}",
        timestamp=timestamp,
        library="svix" if signer == "svix" else "standard",
    )


def _wait_for(stack: LocalStackClient, *fragments: str, seconds: float = 10) -> bool:
    """Whether a line of the stack's log holds every fragment (function output is async)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(all(f in line for f in fragments) for line in stack.log().splitlines()):
            return True
        time.sleep(0.1)
    return False


def test_a_header_sent_twice_in_two_cases_is_refused(local_stack: LocalStackClient) -> None:
    body = stripe_subscription_event(f"evt_{uuid.uuid4().hex}", "invoice.paid", custom=None)
    good = stripe_headers(body, _secret(local_stack, "stripe"), timestamp=_now())
    forged = stripe_headers(body, "whsec_forged", timestamp=_now())
    parts = urlsplit(local_stack.url("/webhooks/stripe"))
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=TIMEOUT)
    try:
        connection.putrequest("POST", parts.path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.putheader("stripe-signature", forged["Stripe-Signature"])
        connection.putheader("Stripe-Signature", good["Stripe-Signature"])
        connection.endheaders(body)
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())) == (401, UNAUTHENTICATED)
    finally:
        connection.close()
    assert _deliver(local_stack, "stripe", body, good) == (200, {"status": "accepted"})


def test_bodies_over_256_kib_are_413(local_stack: LocalStackClient) -> None:
    body = json.dumps({"zen": "x" * (256 * 1024)}).encode()
    headers = github_headers(body, _secret(local_stack, "github"), delivery=str(uuid.uuid4()))
    status, answer = _deliver(local_stack, "github", body, headers)
    assert status == 413
    assert answer["error"]["code"] == "payload_too_large"


# ---- billing ----------------------------------------------------------------------------------


def _new_org(stack: LocalStackClient, owner: str) -> str:
    status, body = call(stack, "POST", "/orgs", owner, json={"name": "Acme"})
    assert status == 201
    return str(body["org_id"])


def _checkout(stack: LocalStackClient, org_id: str, owner: str) -> str:
    status, body = call(stack, "POST", f"/orgs/{org_id}/billing/checkout", owner)
    assert status == 201, body
    assert body["custom_data"]["strongroom_org_id"] == org_id
    return str(body["nonce"])


def _plan(stack: LocalStackClient, org_id: str, owner: str) -> str:
    status, body = call(stack, "GET", f"/orgs/{org_id}", owner)
    assert status == 200
    return str(body["plan"])


def _audit_actions(stack: LocalStackClient, org_id: str) -> list[str]:
    s3 = stack.client("s3")
    (bucket,) = [b["Name"] for b in s3.list_buckets()["Buckets"] if "auditbucket" in b["Name"]]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"audit/{org_id}/").get("Contents", [])
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())["action"]
        for item in sorted(listed, key=lambda item: item["Key"])
    ]


def test_a_checkout_paid_on_stripe_changes_the_plan_once(local_stack: LocalStackClient) -> None:
    alice = new_user("alice")
    org_id = _new_org(local_stack, alice)
    nonce = _checkout(local_stack, org_id, alice)
    secret = _secret(local_stack, "stripe")
    created = stripe_subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "customer.subscription.created",
        custom=custom_data(org_id, nonce),
    )
    headers = stripe_headers(created, secret, timestamp=_now())
    assert _deliver(local_stack, "stripe", created, headers) == (200, {"status": "processed"})
    assert _plan(local_stack, org_id, alice) == "team"
    assert _deliver(local_stack, "stripe", created, headers) == (200, {"status": "duplicate"})
    # Forged: the right nonce, the wrong signature. Nothing changes.
    deleted = stripe_subscription_event(
        f"evt_{uuid.uuid4().hex}",
        "customer.subscription.deleted",
        custom=custom_data(org_id, nonce),
    )
    forged = stripe_headers(deleted, "whsec_forged", timestamp=_now())
    assert _deliver(local_stack, "stripe", deleted, forged)[0] == 401
    assert _plan(local_stack, org_id, alice) == "team"
    signed = stripe_headers(deleted, secret, timestamp=_now())
    assert _deliver(local_stack, "stripe", deleted, signed) == (200, {"status": "processed"})
    assert _plan(local_stack, org_id, alice) == "free"
    actions = _audit_actions(local_stack, org_id)
    assert actions[-3:] == ["billing.checkout", "webhook.effect", "webhook.effect"]


def test_another_orgs_nonce_changes_nothing(local_stack: LocalStackClient) -> None:
    alice, bob = new_user("alice"), new_user("bob")
    org_a, org_b = _new_org(local_stack, alice), _new_org(local_stack, bob)
    nonce_a = _checkout(local_stack, org_a, alice)
    # An active subscription, as Polar sends it: only the nonce's org is wrong.
    document = json.loads(
        standard_event("subscription.created", custom=custom_data(org_b, nonce_a))
    )
    document["data"]["status"] = "active"
    body = json.dumps(document).encode("utf-8")
    headers = standard_headers(
        body,
        _secret(local_stack, "standard"),
        message_id=f"msg_{uuid.uuid4().hex}",
        timestamp=_now(),
    )
    assert _deliver(local_stack, "standard", body, headers) == (200, {"status": "ignored"})
    assert (_plan(local_stack, org_a, alice), _plan(local_stack, org_b, bob)) == ("free", "free")


def _sessions(count: int) -> list[requests.Session]:
    sessions = []
    for _ in range(count):
        session = requests.Session()
        session.trust_env = False
        sessions.append(session)
    return sessions


def test_twenty_concurrent_deliveries_of_one_event_have_one_effect(
    local_stack: LocalStackClient,
) -> None:
    alice = new_user("alice")
    org_id = _new_org(local_stack, alice)
    nonce = _checkout(local_stack, org_id, alice)
    body = lemonsqueezy_event(
        "subscription_created",
        custom=custom_data(org_id, nonce),
        resource="subscriptions",
        resource_id=uuid.uuid4().hex,
        variant_id=1003,
        status="active",
    )
    headers = lemonsqueezy_headers(
        body, _secret(local_stack, "lemonsqueezy"), event_name="subscription_created"
    )
    sessions = _sessions(20)
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            results = list(
                pool.map(
                    lambda s: _deliver(local_stack, "lemonsqueezy", body, headers, session=s),
                    sessions,
                )
            )
    finally:
        for session in sessions:
            session.close()
    statuses = sorted(answer["status"] for _, answer in results)
    assert statuses == ["duplicate"] * 19 + ["processed"]
    assert _plan(local_stack, org_id, alice) == "enterprise"
    assert _audit_actions(local_stack, org_id).count("webhook.effect") == 1


def test_twenty_concurrent_connection_creations_against_a_limit_of_5_give_5(
    local_stack: LocalStackClient,
) -> None:
    alice = new_user("alice")
    org_id = _new_org(local_stack, alice)
    nonce = _checkout(local_stack, org_id, alice)
    order = lemonsqueezy_event(
        "order_created",
        custom=custom_data(org_id, nonce),
        resource_id=uuid.uuid4().hex,
        variant_id=1001,
    )
    headers = lemonsqueezy_headers(
        order, _secret(local_stack, "lemonsqueezy"), event_name="order_created"
    )
    assert _deliver(local_stack, "lemonsqueezy", order, headers) == (200, {"status": "processed"})
    assert _plan(local_stack, org_id, alice) == "starter"
    assert STARTER.max_connections == 5

    token = local_stack.token(alice)
    sessions = _sessions(20)

    def create(index: int) -> int:
        body = {
            "name": f"Okta {index}",
            "provider": "okta",
            "domain": "acme.okta.com",
            "auth": {"method": "api_token", "token": "tok-" + uuid.uuid4().hex},
            "schedule": "rate(1 day)",
        }
        response = sessions[index].post(
            local_stack.url(f"/orgs/{org_id}/connections"),
            json=body,
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT,
        )
        return response.status_code

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            statuses = sorted(pool.map(create, range(20)))
    finally:
        for session in sessions:
            session.close()
    assert statuses == [201] * 5 + [429] * 15
    status, listed = call(local_stack, "GET", f"/orgs/{org_id}/connections", alice)
    assert status == 200
    assert len(listed["connections"]) == 5


def test_the_stack_lists_its_generated_secrets_and_reads_them(
    local_stack: LocalStackClient,
) -> None:
    listed = {s["logical_id"]: s["name"] for s in local_stack.running.ready["secrets"]}
    assert listed == {
        "StripeWebhookSecret": "strongroom-dev/webhooks/stripe",
        "StandardWebhookSecret": "strongroom-dev/webhooks/standard",
        "GithubWebhookSecret": "strongroom-dev/webhooks/github",
        "LemonSqueezyWebhookSecret": "strongroom-dev/webhooks/lemonsqueezy",
    }
    command = [*strongroom_command(), "secret", "--state-dir", str(local_stack.state_dir)]
    active = subprocess.run(  # noqa: S603 - our own CLI
        [*command, "GithubWebhookSecret", "--active"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert active.startswith("whsec_")
    whole = subprocess.run(  # noqa: S603 - our own CLI
        [*command, "strongroom-dev/webhooks/github"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(whole)["active"][0] == active
    missing = subprocess.run(  # noqa: S603 - our own CLI
        [*command, "nope"], capture_output=True, text=True, timeout=60, check=False
    )
    assert missing.returncode == 2
    assert "no secret nope" in missing.stderr
