"""Signature schemes, each exactly as its platform documents it, over the body as received.

- stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]` (other schemes such as v0 are
  ignored), HMAC-SHA256 of `<t>.<body>` keyed with the secret's UTF-8 bytes; the timestamp must
  be within 300 s of now, on either side.
- standard (Standard Webhooks, as Svix sends them): `webhook-id`, `webhook-timestamp`,
  `webhook-signature` (or Svix's `svix-*` names for the same three; if both are present they
  must agree), signature header of space-separated `v1,<base64>` entries (other versions such
  as `v1a` ignored), HMAC-SHA256 of `<id>.<timestamp>.<body>` keyed with the base64 bytes of the
  `whsec_` secret; timestamps more than 300 s old or ahead are refused.
- github: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body keyed with the secret's
  UTF-8 bytes; `X-GitHub-Delivery` is the event id. GitHub signs only the body: no timestamp,
  and not the delivery id. So the event id deduplicates GitHub's own redeliveries, and is no
  replay protection: a captured delivery sent again under a fresh id verifies (`accepted`).
  That is harmless only because no GitHub event has an effect (events.py); one that gets an
  effect must make it idempotent on what the body itself says.
- lemonsqueezy: `X-Signature: <hex>`, HMAC-SHA256 of the body keyed with the secret's UTF-8
  bytes; the event's id is read from the (signed) body. No timestamp is signed either, so a
  captured delivery verifies again once its event marker (7 days) is gone. Its effect cannot
  repeat: an activation's nonce is single use, an update no newer than the state applied is
  ignored, and an end finds nothing left to end (billing.py).

Every active secret of the source is tried, so a secret rotates without downtime. Digests are
compared with `hmac.compare_digest`. Any failure (a missing, repeated or malformed header, a
timestamp out of tolerance, no matching signature, an empty or non-UTF-8 body) raises the same
`SignatureRejected`; its text names the reason for our logs only, and never holds input.
"""

from __future__ import annotations

import binascii
import functools
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from webhook_verifier.exceptions import SecretMisconfigured, SignatureRejected
from webhook_verifier.sources import Source

TOLERANCE_SECONDS = 300
# More signatures than a rotation needs is not a delivery from the platform: refuse the work.
MAX_SIGNATURES = 8
_SHA256 = "sha256"
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
# Event ids become parts of the dedupe key (through a digest) and of audit details.
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,256}")
_WHSEC_PREFIX = "whsec_"
_MIN_STANDARD_KEY_BYTES = 16
_MAX_STANDARD_KEY_BYTES = 64


class Verified(NamedTuple):
    """What the headers of a verified delivery name; the body is the caller's, unchanged.

    `event_id` is None where the platform puts it in the body (stripe, lemonsqueezy).
    `event_type` is GitHub's `X-GitHub-Event`, unsigned: a label, never a decision.
    """

    event_id: str | None = None
    event_type: str | None = None


_NOTHING_IN_HEADERS = Verified()


def normalize_headers(raw: Any) -> dict[str, Any]:
    """Header names lower-cased; two names that differ only in case are refused.

    API Gateway already lower-cases names and joins repeated headers with commas; an event
    that still holds `Stripe-Signature` next to `stripe-signature` did not come that way, and
    choosing one of them would let the other go unchecked. Values are checked where they are
    read (`_header`): only text is ever used.
    """
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SignatureRejected("headers are not a mapping")
    try:
        headers = {name.lower(): value for name, value in raw.items()}
    except (AttributeError, TypeError):
        raise SignatureRejected("a header name is not text") from None
    if len(headers) != len(raw):
        raise SignatureRejected("a header appears twice")
    return headers


def signing_keys(source: Source, values: tuple[str, ...]) -> tuple[bytes, ...]:
    """HMAC keys of the source's active secrets; SecretMisconfigured for an unusable one."""
    return _signing_keys(source, values)


@functools.lru_cache(maxsize=16)
def _signing_keys(source: Source, values: tuple[str, ...]) -> tuple[bytes, ...]:
    if source is Source.STANDARD:
        return tuple(_standard_key(value) for value in values)
    return tuple(value.encode("utf-8") for value in values)


def _standard_key(value: str) -> bytes:
    """The key of a `whsec_<base64>` secret (the prefix is optional, padding may be left out)."""
    encoded = value.removeprefix(_WHSEC_PREFIX)
    try:
        key = binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4), strict_mode=True)
    except (binascii.Error, ValueError):
        raise SecretMisconfigured("a standard webhook secret is not base64") from None
    if not _MIN_STANDARD_KEY_BYTES <= len(key) <= _MAX_STANDARD_KEY_BYTES:
        raise SecretMisconfigured("a standard webhook secret has the wrong length")
    return key


def verify(
    source: Source,
    headers: Mapping[str, Any],
    body: bytes,
    keys: tuple[bytes, ...],
    *,
    now: datetime,
) -> Verified:
    """Verify a delivery of `source` (headers lower-cased); SignatureRejected if it fails."""
    if not body:
        raise SignatureRejected("empty body")
    if source is Source.STRIPE:
        verified = verify_stripe(headers, body, keys, now=now.timestamp())
    elif source is Source.STANDARD:
        verified = verify_standard(headers, body, keys, now=now.timestamp())
    elif source is Source.GITHUB:
        verified = verify_github(headers, body, keys)
    else:
        verified = verify_lemonsqueezy(headers, body, keys)
    _require_utf8(body)
    return verified


# ---- schemes ----------------------------------------------------------------------------------


def verify_stripe(
    headers: Mapping[str, Any], body: bytes, keys: tuple[bytes, ...], *, now: float
) -> Verified:
    header = _header(headers, "stripe-signature")
    if not header:
        raise SignatureRejected("no Stripe-Signature header")
    timestamp: str | None = None
    provided: list[bytes] = []
    # "Split the header using , then each element using =": t is the timestamp, v1 the
    # signatures; other elements (v0, future schemes) are discarded, as Stripe documents.
    for element in header.split(","):
        prefix, sep, value = element.partition("=")
        if not sep:
            raise SignatureRejected("malformed Stripe-Signature element")
        if prefix == "t":
            if timestamp is not None:
                raise SignatureRejected("two timestamps")
            timestamp = value
        elif prefix == "v1":
            provided.append(_hex_digest(value))
    if timestamp is None or not provided or len(provided) > MAX_SIGNATURES:
        raise SignatureRejected("no timestamp or no v1 signature")
    _check_timestamp(timestamp, now)
    _match(keys, timestamp.encode("ascii") + b"." + body, provided)
    return _NOTHING_IN_HEADERS


def verify_standard(
    headers: Mapping[str, Any], body: bytes, keys: tuple[bytes, ...], *, now: float
) -> Verified:
    message_id, timestamp, signatures = _standard_headers(headers)
    if not _EVENT_ID.fullmatch(message_id):
        raise SignatureRejected("malformed webhook-id")
    _check_timestamp(timestamp, now)
    provided: list[bytes] = []
    for entry in signatures.split(" "):
        version, sep, value = entry.partition(",")
        if not sep:
            raise SignatureRejected("malformed webhook-signature entry")
        if version == "v1":
            provided.append(_base64_digest(value))
    if not provided or len(provided) > MAX_SIGNATURES:
        raise SignatureRejected("no v1 signature")
    signed = message_id.encode("ascii") + b"." + timestamp.encode("ascii") + b"." + body
    _match(keys, signed, provided)
    return Verified(event_id=message_id)


def verify_github(headers: Mapping[str, Any], body: bytes, keys: tuple[bytes, ...]) -> Verified:
    header = _header(headers, "x-hub-signature-256")
    if not header or not header.startswith("sha256="):
        raise SignatureRejected("no X-Hub-Signature-256 header")
    delivery = _header(headers, "x-github-delivery")
    if not delivery or not _EVENT_ID.fullmatch(delivery):
        raise SignatureRejected("no X-GitHub-Delivery header")
    _match(keys, body, [_hex_digest(header[len("sha256=") :])])
    event_type = _header(headers, "x-github-event")
    if event_type is not None and not re.fullmatch(r"[a-z_]{1,64}", event_type):
        event_type = None
    return Verified(event_id=delivery, event_type=event_type)


def verify_lemonsqueezy(
    headers: Mapping[str, Any], body: bytes, keys: tuple[bytes, ...]
) -> Verified:
    header = _header(headers, "x-signature")
    if not header:
        raise SignatureRejected("no X-Signature header")
    _match(keys, body, [_hex_digest(header)])
    return _NOTHING_IN_HEADERS


# ---- parts ------------------------------------------------------------------------------------


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    value = headers.get(name)
    if value is None or isinstance(value, str):
        return value
    raise SignatureRejected("a header is not text")


def _standard_headers(headers: Mapping[str, Any]) -> tuple[str, str, str]:
    """(id, timestamp, signatures) from the `webhook-*` or `svix-*` names, never a mix."""
    chosen = (
        _header(headers, "webhook-id"),
        _header(headers, "webhook-timestamp"),
        _header(headers, "webhook-signature"),
    )
    if "svix-id" in headers or "svix-timestamp" in headers or "svix-signature" in headers:
        svix = (
            _header(headers, "svix-id"),
            _header(headers, "svix-timestamp"),
            _header(headers, "svix-signature"),
        )
        if chosen == (None, None, None):
            chosen = svix
        elif chosen != svix:
            raise SignatureRejected("webhook-* and svix-* headers disagree")
    message_id, timestamp, signatures = chosen
    if not message_id or not timestamp or not signatures:
        raise SignatureRejected("a webhook-* header is missing")
    return message_id, timestamp, signatures


def _check_timestamp(text: str, now: float) -> None:
    # ASCII digits only (str.isdigit alone would take other scripts' digits), at most 12.
    if not (0 < len(text) <= 12 and text.isascii() and text.isdigit()):
        raise SignatureRejected("malformed timestamp")
    if abs(now - int(text)) > TOLERANCE_SECONDS:
        raise SignatureRejected("timestamp outside the tolerance")


def _hex_digest(text: str) -> bytes:
    # Lower-case hex, as the platforms send it: any other spelling is not their output.
    if not _HEX_DIGEST.fullmatch(text):
        raise SignatureRejected("malformed hex signature")
    return bytes.fromhex(text)


def _base64_digest(text: str) -> bytes:
    try:
        digest = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        raise SignatureRejected("malformed base64 signature") from None
    if len(digest) != 32:
        raise SignatureRejected("malformed base64 signature")
    return digest


def _match(keys: tuple[bytes, ...], signed: bytes, provided: list[bytes]) -> None:
    """Pass if any provided digest is the HMAC-SHA256 of `signed` under any active key."""
    for key in keys:
        expected = hmac.digest(key, signed, _SHA256)
        for digest in provided:
            if hmac.compare_digest(expected, digest):
                return
    raise SignatureRejected("no signature matches")


def _require_utf8(body: bytes) -> None:
    if body.isascii():
        return
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("the body is not UTF-8") from None
