"""Each signature scheme against the platforms' own signers, and every part tampered.

No AWS here: `verify` gets the headers, the body and the keys. The handler tests drive the same
code through Secrets Manager and the HTTP event.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from tests.support.webhooks import (
    GITHUB_EXAMPLE_BODY,
    GITHUB_EXAMPLE_SECRET,
    GITHUB_EXAMPLE_SIGNATURE,
    github_headers,
    hex_hmac,
    lemonsqueezy_headers,
    standard_headers,
    stripe_headers,
)

NOW = datetime(2026, 11, 23, 9, 0, 0, tzinfo=UTC)
T = int(NOW.timestamp())
BODY = json.dumps({"id": "evt_1", "type": "ping", "data": {"object": {}}}, indent=2).encode()


def _schemes():  # type: ignore[no-untyped-def]
    from webhook_verifier import schemes
    from webhook_verifier.exceptions import SecretMisconfigured, SignatureRejected
    from webhook_verifier.sources import Source

    return schemes, Source, SignatureRejected, SecretMisconfigured


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def _plain() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


Signer = Callable[[bytes, str, int], dict[str, str]]
SIGNERS: dict[str, Signer] = {
    "stripe": lambda body, secret, t: stripe_headers(body, secret, timestamp=t),
    "standard": lambda body, secret, t: standard_headers(
        body, secret, message_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp=t
    ),
    "svix": lambda body, secret, t: standard_headers(
        body, secret, message_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", timestamp=t, library="svix"
    ),
    "github": lambda body, secret, t: github_headers(
        body, secret, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958"
    ),
    "lemonsqueezy": lambda body, secret, t: lemonsqueezy_headers(
        body, secret, event_name="order_created"
    ),
}
SOURCE_OF = {"svix": "standard"}


def _check(scheme: str, headers: dict[str, str], body: bytes, *secrets_: str, now: datetime = NOW):  # type: ignore[no-untyped-def]
    schemes, source_type, _, _ = _schemes()
    source = source_type(SOURCE_OF.get(scheme, scheme))
    keys = schemes.signing_keys(source, tuple(secrets_))
    return schemes.verify(source, schemes.normalize_headers(headers), body, keys, now=now)


def _secret_for(scheme: str) -> str:
    return _whsec() if scheme in ("standard", "svix") else _plain()


def _rejected(
    scheme: str, headers: dict[str, str], body: bytes, *secrets_: str, now: datetime = NOW
) -> None:
    _, _, rejected, _ = _schemes()
    with pytest.raises(rejected):
        _check(scheme, headers, body, *secrets_, now=now)


# ---- the platforms' own signatures verify -----------------------------------------------------


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_a_delivery_signed_by_the_platform_verifies(scheme: str) -> None:
    secret = _secret_for(scheme)
    verified = _check(scheme, SIGNERS[scheme](BODY, secret, T), BODY, secret)
    if scheme in ("standard", "svix"):
        assert verified.event_id == "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
    if scheme == "github":
        assert verified.event_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
        assert verified.event_type == "push"


def test_githubs_documented_example_verifies() -> None:
    headers = {
        "X-Hub-Signature-256": GITHUB_EXAMPLE_SIGNATURE,
        "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
    }
    _check("github", headers, GITHUB_EXAMPLE_BODY, GITHUB_EXAMPLE_SECRET)
    _rejected("github", headers, GITHUB_EXAMPLE_BODY + b" ", GITHUB_EXAMPLE_SECRET)


def test_stripe_several_v1_signatures_and_other_schemes() -> None:
    secret = _plain()
    good = stripe_headers(BODY, secret, timestamp=T)["Stripe-Signature"]
    t, v1 = good.split(",")
    other = "v1=" + "0" * 64
    for header in (f"{t},{other},{v1}", f"{t},{v1},v0={'a' * 64}", f"{v1},{t}"):
        _check("stripe", {"Stripe-Signature": header}, BODY, secret)
    # Only v0 (or an unknown scheme) is no signature at all.
    _rejected("stripe", {"Stripe-Signature": f"{t},v0={v1[3:]}"}, BODY, secret)


def test_standard_several_signatures_and_asymmetric_entries_are_skipped() -> None:
    secret = _whsec()
    headers = SIGNERS["standard"](BODY, secret, T)
    good = headers["webhook-signature"]
    wrong = "v1," + base64.b64encode(b"\0" * 32).decode()
    asymmetric = "v1a," + base64.b64encode(b"\1" * 64).decode()
    for value in (f"{wrong} {good}", f"{asymmetric} {good}", f"{good} {wrong}"):
        _check("standard", {**headers, "webhook-signature": value}, BODY, secret)
    _rejected("standard", {**headers, "webhook-signature": asymmetric}, BODY, secret)


def test_standard_secrets_without_prefix_or_padding_are_the_same_key() -> None:
    key = secrets.token_bytes(32)  # 44 base64 characters with one "=" of padding
    prefixed = "whsec_" + base64.b64encode(key).decode()
    headers = SIGNERS["standard"](BODY, prefixed, T)
    for secret in (prefixed, prefixed[len("whsec_") :], prefixed.rstrip("=")):
        _check("standard", headers, BODY, secret)


# ---- rotation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_rotation_accepts_old_and_new_and_nothing_else(scheme: str) -> None:
    old, new, retired = _secret_for(scheme), _secret_for(scheme), _secret_for(scheme)
    for signer in (old, new):
        _check(scheme, SIGNERS[scheme](BODY, signer, T), BODY, new, old)
    _rejected(scheme, SIGNERS[scheme](BODY, retired, T), BODY, new, old)
    # Once the old one is dropped, what it signs no longer verifies.
    _rejected(scheme, SIGNERS[scheme](BODY, old, T), BODY, new)
    _rejected(scheme, SIGNERS[scheme](BODY, old, T), BODY)  # nothing active: nothing verifies


# ---- every part tampered ----------------------------------------------------------------------


def _flip_byte(body: bytes, index: int) -> bytes:
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
@pytest.mark.parametrize("where", [0, len(BODY) // 2, len(BODY) - 1])
def test_any_body_byte_changed_fails(scheme: str, where: int) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    _rejected(scheme, headers, _flip_byte(BODY, where), secret)


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_whitespace_altered_or_reserialised_json_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    same_json = json.loads(BODY)
    for variant in (
        json.dumps(same_json).encode(),  # re-serialised: same JSON, other bytes
        BODY + b"\n",
        b" " + BODY,
        BODY.replace(b": ", b":"),
    ):
        _rejected(scheme, headers, variant, secret)


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_a_wrong_secret_fails(scheme: str) -> None:
    headers = SIGNERS[scheme](BODY, _secret_for(scheme), T)
    _rejected(scheme, headers, BODY, _secret_for(scheme))


def _tamper_signature(value: str) -> list[str]:
    """The signature with one character changed, cut short, lengthened, upper-cased, emptied."""
    last = value[-1]
    swapped = "0" if last != "0" else "1"
    if last.isalpha() and value[-2:] != "==":
        swapped = "A" if last != "A" else "B"
    return [value[:-1] + swapped, value[:-2], value + "00", value.upper(), ""]


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_a_tampered_signature_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    name = {
        "stripe": "Stripe-Signature",
        "standard": "webhook-signature",
        "svix": "svix-signature",
        "github": "X-Hub-Signature-256",
        "lemonsqueezy": "X-Signature",
    }[scheme]
    original = headers[name]
    for value in _tamper_signature(original):
        if value == original:
            continue
        _rejected(scheme, {**headers, name: value}, BODY, secret)


@pytest.mark.parametrize("scheme", ["stripe", "standard", "svix"])
def test_a_changed_timestamp_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    if scheme == "stripe":
        header = headers["Stripe-Signature"]
        tampered = {"Stripe-Signature": header.replace(f"t={T}", f"t={T + 1}")}
    else:
        name = "webhook-timestamp" if scheme == "standard" else "svix-timestamp"
        tampered = {**headers, name: str(T - 1)}
    _rejected(scheme, tampered, BODY, secret)


@pytest.mark.parametrize("scheme", ["standard", "svix"])
def test_a_changed_message_id_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    name = "webhook-id" if scheme == "standard" else "svix-id"
    for value in ("msg_other", headers[name] + " ", headers[name] + ",x", ""):
        _rejected(scheme, {**headers, name: value}, BODY, secret)


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_a_renamed_or_missing_header_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    for name in list(headers):
        if name in ("X-GitHub-Event", "X-Event-Name"):
            continue  # labels, not part of verification
        value = headers[name]
        others = {k: v for k, v in headers.items() if k != name}
        _rejected(scheme, others, BODY, secret)
        for renamed in (name + "-x", name.replace("-", "_"), name.replace("-", "\u2010")):
            _rejected(scheme, {**others, renamed: value}, BODY, secret)


def test_the_legacy_sha1_github_header_is_not_enough() -> None:
    secret = _plain()
    headers = github_headers(BODY, secret, delivery="d-1")
    legacy = {"X-Hub-Signature": "sha1=" + "0" * 40, "X-GitHub-Delivery": "d-1"}
    _rejected("github", legacy, BODY, secret)
    # sha256 digest but the sha1 prefix, or no prefix: refused.
    digest = headers["X-Hub-Signature-256"].split("=", 1)[1]
    for value in ("sha1=" + digest, digest, "SHA256=" + digest, "sha256 =" + digest):
        _rejected("github", {**headers, "X-Hub-Signature-256": value}, BODY, secret)


# ---- timestamps -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["stripe", "standard", "svix"])
@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-300, True), (-301, False), (300, True), (301, False), (0, True), (-86400, False)],
)
def test_timestamp_boundaries_on_both_sides(scheme: str, offset: int, accepted: bool) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T + offset)
    if accepted:
        _check(scheme, headers, BODY, secret)
    else:
        _rejected(scheme, headers, BODY, secret)


@pytest.mark.parametrize("scheme", ["stripe", "standard"])
@pytest.mark.parametrize(
    # 5,000 digits: past int()'s limit, so only the length cap keeps it a rejection.
    "timestamp",
    ["", "1e9", f"{T}.0", f" {T}", f"-{T}", "\u0661" * 10, "9" * 13, "9" * 5000],
)
def test_malformed_timestamps_fail(scheme: str, timestamp: str) -> None:
    secret = _secret_for(scheme)
    if scheme == "stripe":
        digest = hex_hmac(secret, f"{timestamp}.".encode() + BODY)
        headers = {"Stripe-Signature": f"t={timestamp},v1={digest}"}
    else:
        headers = {**SIGNERS["standard"](BODY, secret, T), "webhook-timestamp": timestamp}
    _rejected(scheme, headers, BODY, secret)


# ---- malformed headers, header tricks, bodies --------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=,v1=",
        "v1=" + "a" * 64,
        "garbage",
        "t=1,v1",
        "t=1,t=2,v1=" + "a" * 64,
        ",".join(["t=1"] + ["v1=" + "a" * 64] * 9),
    ],
)
def test_malformed_stripe_headers_fail(header: str) -> None:
    _rejected("stripe", {"Stripe-Signature": header}, BODY, _plain())


def test_a_stripe_header_sent_twice_fails_even_if_one_copy_is_valid() -> None:
    secret = _plain()
    good = stripe_headers(BODY, secret, timestamp=T)["Stripe-Signature"]
    forged = stripe_headers(BODY, _plain(), timestamp=T)["Stripe-Signature"]
    # API Gateway joins a repeated header with a comma: two timestamps.
    _rejected("stripe", {"stripe-signature": f"{forged},{good}"}, BODY, secret)


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_two_header_names_differing_only_in_case_fail(scheme: str) -> None:
    secret = _secret_for(scheme)
    headers = SIGNERS[scheme](BODY, secret, T)
    forged = SIGNERS[scheme](BODY, _secret_for(scheme), T)
    for name, value in forged.items():
        other_case = name.upper() if name != name.upper() else name.lower()
        # Either copy first: whichever a lenient reader kept, the pair is refused.
        _rejected(scheme, {**headers, other_case: value}, BODY, secret)
        _rejected(scheme, {other_case: value, **headers}, BODY, secret)
    # The same name in any case alone is fine: HTTP header names are case-insensitive.
    upper = {name.upper(): value for name, value in headers.items()}
    _check(scheme, upper, BODY, secret)


def test_standard_and_svix_names_must_agree() -> None:
    secret = _whsec()
    standard = SIGNERS["standard"](BODY, secret, T)
    svix_names = SIGNERS["svix"](BODY, secret, T)
    _check("standard", {**standard, **svix_names}, BODY, secret)  # identical values: fine
    forged = SIGNERS["svix"](BODY, _whsec(), T)
    _rejected("standard", {**standard, **forged}, BODY, secret)
    partial = {"webhook-id": standard["webhook-id"], **svix_names}
    _rejected("standard", partial, BODY, secret)


@pytest.mark.parametrize(
    "signature",
    [
        "v1",
        "v1,",
        "v1,not base64!",
        "v1," + base64.b64encode(b"\0" * 31).decode(),
        "v1," + base64.b64encode(b"\0" * 32).decode().rstrip("="),
        " ".join(["v1," + base64.b64encode(b"\0" * 32).decode()] * 9),
    ],
)
def test_malformed_standard_signatures_fail(signature: str) -> None:
    secret = _whsec()
    headers = {**SIGNERS["standard"](BODY, secret, T), "webhook-signature": signature}
    _rejected("standard", headers, BODY, secret)


def test_more_than_eight_signatures_fail_even_with_a_valid_one_among_them() -> None:
    secret = _plain()
    good = stripe_headers(BODY, secret, timestamp=T)["Stripe-Signature"]
    junk = ["v1=" + "0" * 64] * 8
    _check("stripe", {"Stripe-Signature": ",".join([good, *junk[:7]])}, BODY, secret)
    _rejected("stripe", {"Stripe-Signature": ",".join([good, *junk])}, BODY, secret)
    whsec = _whsec()
    headers = SIGNERS["standard"](BODY, whsec, T)
    junk = ["v1," + base64.b64encode(b"\0" * 32).decode()] * 8
    signed = headers["webhook-signature"]
    _check("standard", {**headers, "webhook-signature": " ".join([signed, *junk[:7]])}, BODY, whsec)
    _rejected("standard", {**headers, "webhook-signature": " ".join([signed, *junk])}, BODY, whsec)


@pytest.mark.parametrize("message_id", ["msg_\u00e9", "msg 1", "x" * 257])
def test_a_malformed_standard_message_id_fails_even_when_signed(message_id: str) -> None:
    secret = _whsec()
    headers = standard_headers(BODY, secret, message_id="msg_1", timestamp=T)
    if message_id.isascii():  # signed over the malformed id, so only the id check refuses it
        headers = standard_headers(BODY, secret, message_id=message_id, timestamp=T)
    _rejected("standard", {**headers, "webhook-id": message_id}, BODY, secret)


@pytest.mark.parametrize("delivery", ["\u00e9", "a b", "x" * 257])
def test_a_malformed_github_delivery_id_fails_even_when_signed(delivery: str) -> None:
    secret = _plain()
    _rejected("github", github_headers(BODY, secret, delivery=delivery), BODY, secret)


@pytest.mark.parametrize("event", ["Push", "push; drop", "x" * 65, "p\u00fcsh"])
def test_an_odd_github_event_name_is_not_passed_on(event: str) -> None:
    secret = _plain()
    headers = github_headers(BODY, secret, delivery="d-1", event=event)
    assert _check("github", headers, BODY, secret).event_type is None


@pytest.mark.parametrize("scheme", sorted(SIGNERS))
def test_an_empty_body_fails(scheme: str) -> None:
    secret = _secret_for(scheme)
    _rejected(scheme, SIGNERS[scheme](b"", secret, T), b"", secret)


@pytest.mark.parametrize("scheme", ["github", "lemonsqueezy"])
def test_a_non_utf8_body_fails_even_when_correctly_signed(scheme: str) -> None:
    secret = _plain()
    body = b'{"name": "\xff\xfe"}'
    headers = (
        {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, body), "X-GitHub-Delivery": "d"}
        if scheme == "github"
        else {"X-Signature": hex_hmac(secret, body)}
    )
    _rejected(scheme, headers, body, secret)
    utf8 = '{"name": "Zoë ✓"}'.encode()
    good = {
        **headers,
        **(
            {"X-Signature": hex_hmac(secret, utf8)}
            if scheme != "github"
            else {"X-Hub-Signature-256": "sha256=" + hex_hmac(secret, utf8)}
        ),
    }
    _check(scheme, good, utf8, secret)


def test_headers_that_are_not_text_fail() -> None:
    schemes, _, rejected, _ = _schemes()
    for raw in ([("a", "b")], {1: "x"}):
        with pytest.raises(rejected):
            schemes.normalize_headers(raw)
    assert schemes.normalize_headers(None) == {}
    secret = _whsec()
    good = SIGNERS["standard"](BODY, secret, T)
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        for value in ([good[name]], None, 7):
            _rejected("standard", {**good, name: value}, BODY, secret)  # type: ignore[dict-item]
    _rejected("stripe", {"stripe-signature": ["t=1"]}, BODY, secret)  # type: ignore[dict-item]
    _rejected(
        "github", {"x-hub-signature-256": b"sha256=00", "x-github-delivery": "d"}, BODY, secret
    )  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "secret", ["whsec_not base64", "whsec_" + base64.b64encode(b"short").decode(), "whsec_"]
)
def test_an_unusable_standard_secret_is_a_configuration_error(secret: str) -> None:
    schemes, source, _, misconfigured = _schemes()
    with pytest.raises(misconfigured) as caught:
        schemes.signing_keys(source.STANDARD, (secret,))
    assert secret not in str(caught.value)
