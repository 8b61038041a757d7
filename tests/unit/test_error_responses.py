"""One place maps errors to DESIGN.md's error body; nothing else leaks."""

from __future__ import annotations

import re

import pytest

from strongroom import errors
from strongroom.error_responses import HTTP_ERRORS, error_response

EXPECTED = {
    errors.MalformedRequest: 400,
    errors.Unauthenticated: 401,
    errors.ReauthRequired: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.PayloadTooLarge: 413,
    errors.InvalidField: 422,
    errors.RateLimited: 429,
}


@pytest.mark.parametrize(("error_type", "status"), EXPECTED.items())
def test_api_errors_map_to_design_statuses(error_type: type[Exception], status: int) -> None:
    got_status, body = error_response(error_type())
    assert got_status == status
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", body["error"]["code"])


def test_reauth_has_its_own_code() -> None:
    assert error_response(errors.ReauthRequired())[1]["error"]["code"] == "reauth_required"


def test_every_api_error_class_is_mapped() -> None:
    mapped = {exc_type for exc_type, _ in HTTP_ERRORS}
    api_errors = {
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.ApiError) and obj is not errors.ApiError
    }
    assert api_errors <= mapped


def test_unknown_and_internal_errors_say_nothing() -> None:
    canary = "AKIA-canary-secret"
    for exc in (RuntimeError(canary), KeyError(canary), errors.StrongroomError(canary)):
        status, body = error_response(exc)
        assert status == 500
        assert canary not in str(body)


def test_detail_is_shown_only_for_api_errors() -> None:
    _, body = error_response(errors.InvalidField("name: Field required"))
    assert body["error"]["message"] == "name: Field required"


def test_every_listings_bad_cursor_answers_alike() -> None:
    from strongroom.audit import InvalidAuditCursor
    from strongroom.tenancy import InvalidCursor

    tenancy = error_response(InvalidCursor("the cursor belongs to another org"))
    audit = error_response(InvalidAuditCursor("the cursor belongs to another org"))
    assert tenancy == audit
    assert audit[0] == 422
    assert audit[1]["error"]["code"] == "invalid_cursor"
