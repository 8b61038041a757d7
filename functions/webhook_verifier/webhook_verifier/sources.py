"""The webhook sources DESIGN.md names, as they appear in `POST /webhooks/{source}`."""

from __future__ import annotations

import enum


class Source(enum.StrEnum):
    STRIPE = "stripe"
    STANDARD = "standard"  # Standard Webhooks, as Svix sends them
    GITHUB = "github"
    LEMONSQUEEZY = "lemonsqueezy"
