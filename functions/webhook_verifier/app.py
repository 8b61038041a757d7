"""webhook_verifier: signed inbound webhooks (public) and the billing checkout nonce (owner).

Thin handler: the shared resolver refuses bodies over 256 KiB (413) before any route runs, so
before any secret is read or any HMAC computed; each route makes one call into
`webhook_verifier.receiver` or `webhook_verifier.billing`, which take their clients and `now`.
A delivery that does not verify answers one opaque 401, whatever the reason, and counts one
`WebhookSignatureRejected` metric (EMF) for its source.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext
from webhook_verifier import billing, receiver
from webhook_verifier.exceptions import EventUnreadable, SignatureRejected
from webhook_verifier.models import CheckoutCreated, WebhookReceipt
from webhook_verifier.services import services
from webhook_verifier.sources import Source

from strongroom.api import caller_from_event, create_resolver, handle_request
from strongroom.errors import MalformedRequest, Unauthenticated
from strongroom.redaction import get_logger
from strongroom.tracing import create_tracer

SERVICE = "webhook_verifier"
REJECTED_METRIC = "WebhookSignatureRejected"

logger = get_logger(service=SERVICE)
tracer = create_tracer(SERVICE)
app = create_resolver(logger)


def _error(description: str) -> Any:
    """An error response of DESIGN.md's shape, for the OpenAPI document."""
    text = {"type": "string"}
    error = {"type": "object", "properties": {"code": text, "message": text}}
    schema = {"type": "object", "properties": {"error": error}}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


OrgId = Annotated[str, Path(pattern=r"^org_[a-z2-7]{26}$", max_length=30)]


@app.post(
    "/webhooks/<source>",
    tags=["webhooks"],
    summary="Receive a signed webhook from a payment or code platform",
    description=(
        "The raw body is verified with the source's scheme (Stripe-Signature, Standard"
        " Webhooks, X-Hub-Signature-256, X-Signature) against every active secret. Any failure"
        " is 401; a body over 256 KiB is 413 before any verification."
    ),
    responses={
        200: {"description": "Verified; `status` says what became of the event"},
        400: _error("Verified, but the body is not an event of this source"),
        401: _error("Not verified (one answer for every reason)"),
        413: _error("Body over 256 KiB"),
    },
)
def receive_webhook(source: Annotated[Source, Path()]) -> WebhookReceipt:
    try:
        receipt = receiver.receive(
            services(), source, app.current_event.raw_event, now=_now(), request_id=_request_id()
        )
    except SignatureRejected as exc:
        _count_rejection(source)
        # The reason is our own fixed text, never input; the caller learns nothing from it.
        logger.warning("webhook rejected", extra={"source": source.value, "reason": str(exc)})
        raise Unauthenticated() from None
    except EventUnreadable as exc:
        raise MalformedRequest(str(exc).capitalize() + ".") from None
    logger.info("webhook received", extra={"source": source.value, "status": receipt.status})
    return receipt


@app.post(
    "/orgs/<org_id>/billing/checkout",
    tags=["billing"],
    summary="Mint a single-use checkout nonce bound to the org and the calling owner",
    description=(
        "The nonce is valid for 24 hours; hand `custom_data` to the payment platform's checkout"
        f" unchanged. An org can mint {billing.MAX_CHECKOUTS_PER_DAY} a UTC day; past that, 429"
        " and nothing is minted."
    ),
    responses={
        201: {"description": "Minted: the nonce, its expiry, and the custom data to hand over"},
        403: _error("A member of the org, but not an owner"),
        404: _error("No such org, or the caller is not a member of it"),
        409: _error("The org is being deleted (its key is shredded): nothing is minted"),
        429: _error("The org's checkouts of the day (UTC) are used up"),
    },
)
def create_checkout(org_id: OrgId) -> tuple[CheckoutCreated, int]:
    caller = caller_from_event(app.current_event.raw_event)
    created = billing.create_checkout(
        services(), caller, org_id, now=_now(), request_id=_request_id()
    )
    logger.info("checkout nonce minted", extra={"org_id": org_id})
    return created, 201


def _count_rejection(source: Source) -> None:
    with single_metric(
        name=REJECTED_METRIC,
        unit=MetricUnit.Count,
        value=1,
        default_dimensions={"service": SERVICE},
    ) as metric:
        metric.add_dimension(name="source", value=source.value)


def _now() -> datetime:
    return datetime.now(UTC)


def _request_id() -> str:
    return str(app.current_event.request_context.request_id)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # A webhook's body is verified as the bytes it was sent as, whatever its content type.
    return handle_request(app, event, context, json_bodies=False)
