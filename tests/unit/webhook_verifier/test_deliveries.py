"""POST /webhooks/{source} through the handler: verification, 401/413, metric, dedupe, secrets."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest

from tests.support.webhooks import (
    github_headers,
    hex_hmac,
    lemonsqueezy_event,
    lemonsqueezy_headers,
    standard_event,
    standard_headers,
    stripe_headers,
    stripe_subscription_event,
)
from tests.unit.webhook_verifier.conftest import NOW, WebhookStack

T = int(NOW.timestamp())
UNAUTHENTICATED = {"error": {"code": "unauthenticated", "message": "Authentication required."}}


def signed(webhooks: WebhookStack, source: str, body: bytes | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    """A body of `source` and its headers, signed with the stack's active secret."""
    secret = kwargs.pop("secret", None) or webhooks.secret(source)
    if source == "stripe":
        body = body or stripe_subscription_event(
            f"evt_{uuid.uuid4().hex}", "invoice.paid", custom=None
        )
        return body, stripe_headers(body, secret, timestamp=kwargs.get("timestamp", T))
    if source == "standard":
        body = body or standard_event("invoice.created", custom=None)
        message_id = kwargs.get("message_id", f"msg_{uuid.uuid4().hex}")
        return body, standard_headers(
            body,
            secret,
            message_id=message_id,
            timestamp=kwargs.get("timestamp", T),
            library=kwargs.get("library", "standard"),
        )
    if source == "github":
        body = body or json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()
        return body, github_headers(body, secret, delivery=str(uuid.uuid4()))
    body = body or lemonsqueezy_event(
        "license_key_created", custom=None, resource="license-keys", resource_id=uuid.uuid4().hex
    )
    return body, lemonsqueezy_headers(body, secret, event_name="license_key_created")


SOURCES = ["stripe", "standard", "github", "lemonsqueezy"]


@pytest.mark.parametrize("source", SOURCES)
def test_a_signed_delivery_is_accepted_once(webhooks: WebhookStack, source: str) -> None:
    body, headers = signed(webhooks, source)
    first = webhooks.deliver(source, body, headers)
    assert (first.status, first.body) == (200, {"status": "accepted"})
    again = webhooks.deliver(source, body, headers)
    assert (again.status, again.body) == (200, {"status": "duplicate"})


def test_svix_signed_delivery_with_svix_header_names(webhooks: WebhookStack) -> None:
    body, headers = signed(webhooks, "standard", library="svix")
    assert webhooks.deliver("standard", body, headers).body == {"status": "accepted"}


@pytest.mark.parametrize("source", SOURCES)
def test_base64_bodies_verify_on_their_decoded_bytes(webhooks: WebhookStack, source: str) -> None:
    body, headers = signed(webhooks, source)
    response = webhooks.deliver(source, body, headers, base64_body=True)
    assert (response.status, response.body) == (200, {"status": "accepted"})


def test_a_correctly_signed_binary_body_is_refused(webhooks: WebhookStack) -> None:
    body = b"\x00\xff\xfe binary"
    headers = {"X-Signature": hex_hmac(webhooks.secret("lemonsqueezy"), body)}
    response = webhooks.deliver("lemonsqueezy", body, headers, base64_body=True)
    assert (response.status, response.body) == (401, UNAUTHENTICATED)


@pytest.mark.parametrize("source", SOURCES)
def test_every_failure_is_one_opaque_401_and_counts_a_metric(
    webhooks: WebhookStack, source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed(webhooks, source)
    forged_body, forged = signed(webhooks, source, secret="whsec_" + "A" * 32)
    attempts = [
        (forged_body, forged),  # wrong secret
        (body + b" ", headers),  # body changed
        (body, {}),  # no headers
        (body, {name: value + "0" for name, value in headers.items()}),  # every header changed
    ]
    capsys.readouterr()
    for attempt_body, attempt_headers in attempts:
        response = webhooks.deliver(source, attempt_body, attempt_headers)
        assert (response.status, response.body) == (401, UNAUTHENTICATED)
    metrics = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and "_aws" in line
    ]
    rejected = [m for m in metrics if "WebhookSignatureRejected" in m]
    assert len(rejected) == len(attempts)
    for metric in rejected:
        (directive,) = metric["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Strongroom"
        assert directive["Metrics"] == [{"Name": "WebhookSignatureRejected", "Unit": "Count"}]
        assert metric["source"] == source
        assert metric["service"] == "webhook_verifier"
        assert (
            metric["WebhookSignatureRejected"] == [1.0] or metric["WebhookSignatureRejected"] == 1.0
        )


def test_accepted_deliveries_count_no_rejection(
    webhooks: WebhookStack, capsys: pytest.CaptureFixture[str]
) -> None:
    body, headers = signed(webhooks, "github")
    capsys.readouterr()
    assert webhooks.deliver("github", body, headers).status == 200
    assert "WebhookSignatureRejected" not in capsys.readouterr().out


def test_header_names_differing_only_in_case_are_refused(webhooks: WebhookStack) -> None:
    body, headers = signed(webhooks, "stripe")
    forged = stripe_headers(body, "whsec_forged", timestamp=T)["Stripe-Signature"]
    for pair in (
        {"stripe-signature": forged, "Stripe-Signature": headers["Stripe-Signature"]},
        {"Stripe-Signature": headers["Stripe-Signature"], "STRIPE-SIGNATURE": forged},
    ):
        response = webhooks.deliver("stripe", body, pair, lower_case=False)
        assert response.status == 401
    # One name in another case is just the header (names are case-insensitive).
    upper = {"STRIPE-SIGNATURE": headers["Stripe-Signature"]}
    assert webhooks.deliver("stripe", body, upper, lower_case=False).status == 200


# ---- 413 before any work ----------------------------------------------------------------------


def test_bodies_over_256_kib_are_413_before_any_secret_or_hmac(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webhook_verifier import schemes

    calls: list[str] = []
    secrets = webhooks.app.services().secrets
    real_values, real_digest = secrets.values, schemes.hmac.digest
    monkeypatch.setattr(secrets, "values", lambda *a: calls.append("secret") or real_values(*a))
    monkeypatch.setattr(schemes.hmac, "digest", lambda *a: calls.append("hmac") or real_digest(*a))
    padding = 256 * 1024 - len(b'{"zen":""}')
    exactly = b'{"zen":"' + b"x" * padding + b'"}'
    assert len(exactly) == 256 * 1024
    over = exactly[:-2] + b'x"}'
    for base64_body in (False, True):
        body, headers = signed(webhooks, "github", over)
        response = webhooks.deliver("github", body, headers, base64_body=base64_body)
        assert response.status == 413
        assert response.body["error"]["code"] == "payload_too_large"
        assert calls == []
    body, headers = signed(webhooks, "github", exactly)
    assert webhooks.deliver("github", body, headers).status == 200
    assert calls == ["secret", "hmac"]


# ---- sources, secrets, bodies ------------------------------------------------------------------


def test_an_unknown_source_is_refused_before_anything(webhooks: WebhookStack) -> None:
    body, headers = signed(webhooks, "github")
    response = webhooks.deliver("gitlab", body, headers)
    assert response.status == 422
    assert "gitlab" not in json.dumps(response.body)


def test_a_source_the_deployment_does_not_configure_is_404(
    webhooks: WebhookStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = webhooks.app.services().settings
    monkeypatch.setitem(settings.webhook_secret_ids, "github", "")
    monkeypatch.delitem(settings.webhook_secret_ids, "github")
    body, headers = signed(webhooks, "github")
    assert webhooks.deliver("github", body, headers).status == 404


def test_rotation_through_secrets_manager(webhooks: WebhookStack) -> None:
    old = webhooks.secret("lemonsqueezy")
    new = "whsec_rotated-" + uuid.uuid4().hex[:20]
    webhooks.put_secrets("lemonsqueezy", new, old)
    for secret in (new, old):
        body, headers = signed(webhooks, "lemonsqueezy", secret=secret)
        assert webhooks.deliver("lemonsqueezy", body, headers).body == {"status": "accepted"}
    webhooks.put_secrets("lemonsqueezy", new)
    body, headers = signed(webhooks, "lemonsqueezy", secret=old)
    assert webhooks.deliver("lemonsqueezy", body, headers).status == 401
    webhooks.put_secrets("lemonsqueezy")  # nothing active: fail closed
    body, headers = signed(webhooks, "lemonsqueezy", secret=new)
    assert webhooks.deliver("lemonsqueezy", body, headers).status == 401


def test_an_unusable_secret_is_a_500_that_shows_nothing(
    webhooks: WebhookStack, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "whsec_CANARY" + uuid.uuid4().hex
    webhooks.put_secrets("standard", canary + "!!not base64")
    body, headers = signed(webhooks, "standard", secret="whsec_" + "A" * 32)
    response = webhooks.deliver("standard", body, headers)
    assert response.status == 500
    assert any(record.exc_info for record in caplog.records)  # logged for the operator
    assert "CANARY" not in json.dumps(response.body) + logged(caplog)


def test_no_secret_or_signature_reaches_the_logs(
    webhooks: WebhookStack, caplog: pytest.LogCaptureFixture
) -> None:
    secret = webhooks.secret("stripe")
    body, headers = signed(webhooks, "stripe")
    webhooks.deliver("stripe", body, headers)
    webhooks.deliver("stripe", body + b" ", headers)
    text = logged(caplog)
    assert "webhook rejected" in text
    assert "no signature matches" in text  # the reason, for the operator
    assert secret not in text
    assert headers["Stripe-Signature"].split("v1=")[1] not in text


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the log records carry: messages, extra fields, exception text."""
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        parts.append(json.dumps(vars(record), default=str))
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
    return "\n".join(parts)


def test_a_verified_body_that_is_not_an_event_is_400(webhooks: WebhookStack) -> None:
    for body in (
        b"not json",
        b'["a list"]',
        b'{"type": "x"}',
        b'{"id": "evt_1", "id": "evt_2", "type": "x"}',
    ):
        _, headers = signed(webhooks, "stripe", body)
        response = webhooks.deliver("stripe", body, headers)
        assert response.status == 400, body
        assert response.body["error"]["code"] == "malformed_request"


def test_github_form_encoded_payloads_are_accepted_unparsed(webhooks: WebhookStack) -> None:
    body = b"payload=%7B%22zen%22%3A%22hi%22%7D"
    secret = webhooks.secret("github")
    headers = {**github_headers(body, secret, delivery=str(uuid.uuid4()))}
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert webhooks.deliver("github", body, headers).body == {"status": "accepted"}


def test_githubs_delivery_id_is_the_event_id(webhooks: WebhookStack) -> None:
    secret = webhooks.secret("github")
    body = b'{"zen": "same body"}'
    delivery = str(uuid.uuid4())
    assert webhooks.deliver(
        "github", body, github_headers(body, secret, delivery=delivery)
    ).body == {"status": "accepted"}
    assert webhooks.deliver(
        "github", body, github_headers(body, secret, delivery=delivery)
    ).body == {"status": "duplicate"}
    other = str(uuid.uuid4())
    assert webhooks.deliver("github", body, github_headers(body, secret, delivery=other)).body == {
        "status": "accepted"
    }


def test_standard_event_ids_are_the_signed_webhook_id(webhooks: WebhookStack) -> None:
    body = standard_event("invoice.created", custom=None)
    first, headers = signed(webhooks, "standard", body, message_id="msg_same")
    assert webhooks.deliver("standard", first, headers).body == {"status": "accepted"}
    # Re-sent later (a retry carries the same id with a new timestamp and signature).
    _, retry = signed(webhooks, "standard", body, message_id="msg_same", timestamp=T + 60)
    assert webhooks.deliver("standard", body, retry).body == {"status": "duplicate"}
