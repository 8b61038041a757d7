"""Token and revocation requests (RFC 6749 §3.2, §5; RFC 7009) through the outbound client.

Requests are never redirected (a token endpoint that redirects is misconfigured, and a redirect
could carry the form elsewhere). A grant that spends a code or a rotating refresh token is sent
once: repeating it after the provider acted would spend the grant twice. Client-credentials
requests may be retried. What the provider says is reduced to a fixed set of outcomes; its
`error_description` (free text that may echo a secret) is never kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from strongroom.oauth.client_auth import ClientAuthentication
from strongroom.oauth.exceptions import InvalidGrant, ProviderRefused, TokenUnavailable
from strongroom.outbound import OutboundResponse
from strongroom.outbound.exceptions import OutboundError

if TYPE_CHECKING:
    # Only a type here: the client (and requests) load when a function first builds one.
    from strongroom.outbound.client import OutboundClient

# A token response is small; a provider answering megabytes is broken or hostile.
MAX_TOKEN_RESPONSE_BYTES: Final = 64 * 1024
# When a provider omits expires_in (RFC 6749 makes it RECOMMENDED), assume a short life.
DEFAULT_EXPIRES_IN: Final = 300
_MAX_EXPIRES_IN: Final = 366 * 24 * 3600
_EXPIRES_IN_TEXT = re.compile(r"[0-9]{1,10}")
_ERROR_CODE = re.compile(r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$")
_FORM_HEADERS: Final = {"Accept": "application/json"}


@dataclass(frozen=True, slots=True, repr=False)
class TokenGrant:
    """A token endpoint's successful answer. The repr shows no token."""

    access_token: str
    expires_at: int
    refresh_token: str | None
    scope: str | None

    def __repr__(self) -> str:
        return f"TokenGrant(expires_at={self.expires_at})"


def request_token(
    outbound: OutboundClient,
    token_endpoint: str,
    grant: Mapping[str, str],
    client: ClientAuthentication,
    *,
    now: float,
    retryable: bool,
    once: bool = False,
) -> TokenGrant:
    """POST a grant to the token endpoint; with `once`, a single attempt whatever fails (a
    refresh under a lease: a retry's wait could outlast it).

    InvalidGrant: the code or refresh token is refused. ProviderRefused: another RFC 6749 error
    (invalid_client, unauthorized_client, ...). TokenUnavailable: timeout, 5xx, rate limit,
    redirect, oversized, non-JSON or malformed answer.
    """
    form = {**grant, **client.form}
    response = _post(outbound, token_endpoint, form, client, retryable, once=once)
    document = _json_object(response)
    if response.status != 200:
        _raise_refusal(response.status, document)
    return _token_grant(document, now)


def revoke_token(
    outbound: OutboundClient,
    revocation_endpoint: str,
    token: str,
    client: ClientAuthentication,
    *,
    token_type_hint: str = "refresh_token",  # noqa: S107 - an RFC 7009 hint name
    deadline: float | None = None,
) -> bool:
    """RFC 7009 revocation; True when the server answered 200 (revoked or already unknown).
    `deadline` (epoch seconds) bounds the waits between attempts, as `OutboundClient.request`."""
    form = {"token": token, "token_type_hint": token_type_hint, **client.form}
    try:
        response = _post(
            outbound, revocation_endpoint, form, client, retryable=True, deadline=deadline
        )
    except TokenUnavailable:
        return False
    return response.status == 200


def _post(
    outbound: OutboundClient,
    url: str,
    form: Mapping[str, str],
    client: ClientAuthentication,
    retryable: bool,
    *,
    deadline: float | None = None,
    once: bool = False,
) -> OutboundResponse:
    try:
        response = outbound.post(
            url,
            data=dict(form),
            headers={**_FORM_HEADERS, **client.headers},
            retryable=retryable,
            allow_redirects=False,
            deadline=deadline,
            max_attempts=1 if once else None,
        )
    except OutboundError:
        raise TokenUnavailable("the token endpoint did not answer usably") from None
    if len(response.body) > MAX_TOKEN_RESPONSE_BYTES or 300 <= response.status < 400:
        raise TokenUnavailable("the token endpoint did not answer usably")
    return response


def _json_object(response: OutboundResponse) -> dict[str, Any]:
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise TokenUnavailable("the token endpoint answered with something that is not JSON")
    try:
        document = json.loads(response.body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
        raise TokenUnavailable("the token endpoint answered with malformed JSON") from None
    if not isinstance(document, dict):
        raise TokenUnavailable("the token endpoint answered with malformed JSON")
    return document


def _raise_refusal(status: int, document: Mapping[str, Any]) -> None:
    error = document.get("error")
    if status not in (400, 401) or not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        raise TokenUnavailable("the token endpoint failed")
    if error == "invalid_grant":
        raise InvalidGrant("the grant was refused", error=error)
    raise ProviderRefused("the token request was refused", error=error)


def _token_grant(document: Mapping[str, Any], now: float) -> TokenGrant:
    access_token = document.get("access_token")
    token_type = document.get("token_type")
    expires_in = document.get("expires_in", DEFAULT_EXPIRES_IN)
    refresh_token = document.get("refresh_token")
    scope = document.get("scope")
    # Some providers send it as a string. ASCII digits only, and few: str.isdigit() passes
    # "²", which int() refuses, and int() refuses more than 4,300 digits.
    if isinstance(expires_in, str) and _EXPIRES_IN_TEXT.fullmatch(expires_in):
        expires_in = int(expires_in)
    if (
        not isinstance(access_token, str)
        or not access_token
        or not isinstance(token_type, str)
        or token_type.lower() != "bearer"
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int)
        or not 0 < expires_in <= _MAX_EXPIRES_IN
        or (refresh_token is not None and (not isinstance(refresh_token, str) or not refresh_token))
        or (scope is not None and not isinstance(scope, str))
    ):
        raise TokenUnavailable("the token endpoint answered with a malformed token response")
    return TokenGrant(
        access_token=access_token,
        expires_at=int(now) + expires_in,
        refresh_token=refresh_token,
        scope=scope,
    )
