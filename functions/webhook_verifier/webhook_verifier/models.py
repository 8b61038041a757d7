"""Request and response bodies of webhook_verifier's routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

# processed: the event changed something (audited); accepted: verified and recorded, nothing to
# do; ignored: a billing event whose nonce or product did not hold (nothing changed);
# duplicate: this event id was already received.
ReceiptStatus = Literal["processed", "accepted", "ignored", "duplicate"]


class WebhookReceipt(BaseModel):
    status: ReceiptStatus


class CheckoutCustomData(BaseModel):
    """Hand this to the checkout as its custom data (Stripe metadata, Lemon Squeezy
    `checkout[custom]`, a Standard Webhooks sender's metadata), unchanged."""

    strongroom_org_id: str
    strongroom_nonce: str


class CheckoutCreated(BaseModel):
    nonce: str = Field(description="Single use; bound to this org and the caller")
    expires_at: str
    custom_data: CheckoutCustomData
