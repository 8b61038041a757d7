"""The one place that maps errors to the HTTP error body of DESIGN.md.

An error's own text is for (redacted) logs only. Callers get the fixed code and message of its
HTTP class, or an `ApiError`'s `detail`, which our code writes and never fills with input, so no
stack trace, value or secret reaches a response body. Anything unknown is a bare 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strongroom.audit.exceptions import InvalidAuditCursor
from strongroom.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidField,
    MalformedRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ReauthRequired,
    Unauthenticated,
)
from strongroom.tenancy import InvalidCursor


@dataclass(frozen=True)
class HttpError:
    status: int
    code: str
    message: str

    def body(self, detail: str | None = None) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": detail or self.message}}


INTERNAL = HttpError(500, "internal_error", "Something went wrong. The request id is in the logs.")
_INVALID_CURSOR = HttpError(422, "invalid_cursor", "The cursor is not valid for this listing.")

# Most specific class first: the first isinstance match wins.
HTTP_ERRORS: tuple[tuple[type[BaseException], HttpError], ...] = (
    (MalformedRequest, HttpError(400, "malformed_request", "The request could not be parsed.")),
    (ReauthRequired, HttpError(401, "reauth_required", "Sign in again to do this.")),
    (Unauthenticated, HttpError(401, "unauthenticated", "Authentication required.")),
    (Forbidden, HttpError(403, "forbidden", "Your role does not allow this.")),
    (NotFound, HttpError(404, "not_found", "Not found.")),
    (Conflict, HttpError(409, "conflict", "The request conflicts with the current state.")),
    (PayloadTooLarge, HttpError(413, "payload_too_large", "The request body is too large.")),
    (InvalidField, HttpError(422, "invalid_field", "A field is missing or invalid.")),
    # A cursor that is malformed, forged, or belongs to another org or listing; the audit log's
    # cursors are its own, and answer as every other listing's.
    (InvalidCursor, _INVALID_CURSOR),
    (InvalidAuditCursor, _INVALID_CURSOR),
    (RateLimited, HttpError(429, "rate_limited", "Too many requests.")),
)


def http_error_for(exc: BaseException) -> tuple[HttpError, str | None]:
    """The HTTP error for `exc` and the safe detail to show; anything unknown is a bare 500."""
    for exc_type, http_error in HTTP_ERRORS:
        if isinstance(exc, exc_type):
            detail = exc.detail if isinstance(exc, ApiError) else None
            return http_error, detail
    return INTERNAL, None


def error_response(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """(status, body) for `exc` in the DESIGN.md error shape."""
    http_error, detail = http_error_for(exc)
    return http_error.status, http_error.body(detail)
