"""The root of every Strongroom error and the API's error classes.

Each concern has its own `exceptions.py` whose root subclasses `StrongroomError`.
`strongroom.error_responses` maps all of them to HTTP in one place.
"""

from __future__ import annotations


class StrongroomError(Exception):
    """Root of every error raised by Strongroom code."""


class ApiError(StrongroomError):
    """An error the API answers with; `detail` is a safe, caller-facing message."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or "")
        self.detail = detail


class MalformedRequest(ApiError):
    """The request could not be parsed (bad JSON, bad encoding)."""


class Unauthenticated(ApiError):
    """No valid identity came with the request."""


class ReauthRequired(ApiError):
    """The action needs a sign-in more recent than the caller's."""


class Forbidden(ApiError):
    """The caller is a member of the org but their role is too low."""


class NotFound(ApiError):
    """No such resource, or it belongs to another org (the two are indistinguishable)."""


class Conflict(ApiError):
    """The request conflicts with the current state."""


class PayloadTooLarge(ApiError):
    """The request body exceeds the limit."""


class InvalidField(ApiError):
    """A field is unknown, missing or invalid."""


class RateLimited(ApiError):
    """Too many requests, or a plan limit was reached."""
