"""Webhook verifications per second, per scheme, against the standardwebhooks library's verify.

Run: .venv/bin/python benchmarks/bench_webhooks.py

"Ours" is what the function does for every delivery before it reads the event: lower-case the
headers (refusing case duplicates), take the keys of the active secrets (cached), and verify
(header parsing, timestamp, HMAC-SHA256, constant-time compare, UTF-8 check). The baseline is
`standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False)` (the Webhook built
once, as a server would) on the same body in the same run; for the Stripe scheme, Stripe's own
`WebhookSignature.verify_header` is shown as well. Bodies are JSON of 1 KiB, 16 KiB and 256 KiB
(the largest body the API accepts). Ours and the libraries take turns, best of 41 short runs
each, so drift in the machine's speed hits both alike. Target: ours at least as fast as the
baseline (>= 1.00). The rotation row (two active keys, signed with the older one, so two HMACs)
shows what a rotation in progress costs; the library takes one key, so it is not in the target.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import standardwebhooks
import stripe

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "functions" / "webhook_verifier"))
sys.path.insert(0, str(REPO_ROOT))

from webhook_verifier.schemes import normalize_headers, signing_keys, verify  # noqa: E402
from webhook_verifier.sources import Source  # noqa: E402

from tests.support.webhooks import github_headers, lemonsqueezy_headers  # noqa: E402

SIZES = (1024, 16 * 1024, 256 * 1024)
# Work per timed run: about the same number of bytes hashed whatever the body size, and short
# (a few milliseconds) so that the best of many runs misses the machine's other work.
BYTES_PER_RUN = 512 * 1024
REPEATS = 41


def body_of(size: int) -> bytes:
    filler = "x" * (size - len(json.dumps({"id": "evt_bench", "type": "ping", "data": ""})))
    body = json.dumps({"id": "evt_bench", "type": "ping", "data": filler}).encode()
    assert len(body) == size
    return body


def best_rates(
    ours: Callable[[], None], theirs: Callable[[], None], ops: int
) -> tuple[float, float]:
    """(ours ops/s, theirs ops/s), each the best of REPEATS runs, the two taking turns."""
    best = {ours: float("inf"), theirs: float("inf")}
    for _ in range(REPEATS):
        for run in (ours, theirs):
            started = time.perf_counter()
            run()
            best[run] = min(best[run], time.perf_counter() - started)
    return ops / best[ours], ops / best[theirs]


def loop(ops: int, call: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(ops):
            call()

    return run


def ours(
    source: Source, headers: dict[str, str], body: bytes, values: tuple[str, ...]
) -> Callable[[], object]:
    def call() -> object:
        keys = signing_keys(source, values)
        return verify(source, normalize_headers(headers), body, keys, now=datetime.now(UTC))

    call()  # verifies, or the benchmark is meaningless
    return call


def main() -> int:
    plain = "whsec_" + secrets.token_urlsafe(24)
    whsec = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    library = standardwebhooks.Webhook(whsec)
    print(f"{'scheme':<28}{'body':>8}{'ours/s':>12}{'baseline/s':>13}{'ratio':>8}  baseline")
    worst = float("inf")
    for size in SIZES:
        body = body_of(size)
        ops = max(4, BYTES_PER_RUN // size)
        now = int(time.time())
        standard = {
            "webhook-id": "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
            "webhook-timestamp": str(now),
            "webhook-signature": library.sign(
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", datetime.fromtimestamp(now, UTC), body.decode()
            ),
        }
        baseline = loop(ops, lambda h=standard, b=body: library.verify(b, h, json_parse=False))
        stripe_header = stripe.WebhookSignature.generate_signature_header(
            body.decode(), plain, timestamp=now
        )
        older = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        rotated = dict(standard)
        rotated["webhook-signature"] = standardwebhooks.Webhook(older).sign(
            "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", datetime.fromtimestamp(now, UTC), body.decode()
        )
        cases: list[tuple[str, Callable[[], object], Callable[[], None], str]] = [
            (
                "standard",
                ours(Source.STANDARD, standard, body, (whsec,)),
                baseline,
                "standardwebhooks",
            ),
            (
                "standard, 2 keys, old signer",
                ours(Source.STANDARD, rotated, body, (whsec, older)),
                baseline,
                "standardwebhooks",
            ),
            (
                "stripe",
                ours(Source.STRIPE, {"Stripe-Signature": stripe_header}, body, (plain,)),
                baseline,
                "standardwebhooks",
            ),
            (
                "stripe",
                ours(Source.STRIPE, {"Stripe-Signature": stripe_header}, body, (plain,)),
                loop(
                    ops,
                    lambda b=body, h=stripe_header: stripe.WebhookSignature.verify_header(
                        b, h, plain, 300
                    ),
                ),
                "stripe verify_header",
            ),
            (
                "github",
                ours(Source.GITHUB, github_headers(body, plain, delivery="d-1"), body, (plain,)),
                baseline,
                "standardwebhooks",
            ),
            (
                "lemonsqueezy",
                ours(
                    Source.LEMONSQUEEZY,
                    lemonsqueezy_headers(body, plain, event_name="order_created"),
                    body,
                    (plain,),
                ),
                baseline,
                "standardwebhooks",
            ),
        ]
        for name, call, theirs, label in cases:
            ours_rate, their_rate = best_rates(loop(ops, call), theirs, ops)
            ratio = ours_rate / their_rate
            if label == "standardwebhooks" and "2 keys" not in name:
                worst = min(worst, ratio)
            print(
                f"{name:<28}{size // 1024:>6}Ki{ours_rate:>12,.0f}{their_rate:>13,.0f}"
                f"{ratio:>8.2f}  {label}"
            )
    print(f"\nworst ratio against standardwebhooks (one key): {worst:.2f} (target >= 1.00)")
    return 0 if worst >= 1.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
