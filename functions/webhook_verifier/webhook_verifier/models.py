"""Request and response bodies of webhook_verifier's routes.

Schemas are built when first used (`defer_build`): a cold start builds only what its first
request's route needs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# processed: the event changed something (audited); accepted: verified and recorded, nothing to
# do; ignored: a billing event whose nonce, product or order did not hold (nothing changed);
# duplicate: this event id was already received.
ReceiptStatus = Literal["processed", "accepted", "ignored", "duplicate"]


class WebhookReceipt(BaseModel):
    model_config = ConfigDict(defer_build=True)

    status: ReceiptStatus


class CheckoutCustomData(BaseModel):
    """Hand this to the checkout as its custom data (Stripe metadata, Lemon Squeezy
    `checkout[custom]`, a Standard Webhooks sender's metadata), unchanged."""

    model_config = ConfigDict(defer_build=True)

    strongroom_org_id: str
    strongroom_nonce: str


class CheckoutCreated(BaseModel):
    model_config = ConfigDict(defer_build=True)

    nonce: str = Field(description="Single use; bound to this org and the caller")
    expires_at: str
    custom_data: CheckoutCustomData
