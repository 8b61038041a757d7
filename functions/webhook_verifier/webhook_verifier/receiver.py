"""Receive one delivery: read it as sent, verify it, then record its event exactly once.

    receipt = receive(services, Source.STRIPE, event, now=now, request_id=request_id)

`event` is the API Gateway (payload v2) event: the body is taken exactly as received (base64
decoded when API Gateway encoded it) and is never re-serialised. The handler has already
refused bodies over 256 KiB (413) before any of this runs.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from strongroom.errors import NotFound
from webhook_verifier import billing
from webhook_verifier.events import read_event
from webhook_verifier.exceptions import SignatureRejected
from webhook_verifier.models import WebhookReceipt
from webhook_verifier.schemes import normalize_headers, signing_keys, verify
from webhook_verifier.services import Services
from webhook_verifier.sources import Source


def receive(
    services: Services,
    source: Source,
    event: Mapping[str, Any],
    *,
    now: datetime,
    request_id: str,
) -> WebhookReceipt:
    """Verify and record a delivery; SignatureRejected (401) if it does not verify.

    NotFound if the deployment configures no secret for the source; a secret that cannot be
    read or used raises the deployment-secret error (500, logged), never a pass.
    """
    secret_id = services.settings.webhook_secret_ids.get(source.value)
    if secret_id is None:
        raise NotFound("This webhook source is not configured.")
    headers = normalize_headers(event.get("headers"))
    body = raw_body(event)
    keys = signing_keys(source, services.secrets.values(secret_id))
    verified = verify(source, headers, body, keys, now=now)
    inbound = read_event(source, verified, body)
    status = billing.record_event(services, inbound, now=now, request_id=request_id)
    return WebhookReceipt(status=status)


def raw_body(event: Mapping[str, Any]) -> bytes:
    """The body's bytes as the sender sent them; SignatureRejected if they cannot be had."""
    body = event.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise SignatureRejected("the body is not text")
    if event.get("isBase64Encoded"):
        try:
            return binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError):
            raise SignatureRejected("the body is not base64") from None
    try:
        # A text body is the UTF-8 the sender sent, decoded by API Gateway: encode it back.
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureRejected("the body is not UTF-8") from None
