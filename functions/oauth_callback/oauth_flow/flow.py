"""Start and finish an authorization-code flow (RFC 6749 §4.1 with PKCE S256, RFC 7636).

Start (admin, JWT): a state of 256 random bits and a PKCE verifier are made; the state item is
stored for 10 minutes in the org's partition under the SHA-256 of the state's secret part
(the table never holds a usable state), with the verifier sealed under the org's DEK, the
connection, the user who started it, the SHA-256 of a browser-binding secret, and the
provider's issuer identifier where the connection's settings tell it. The binding
secret goes back only in an HttpOnly, Secure, SameSite=Lax `__Host-` cookie (Path=/, no Domain).

Finish (public: a browser redirect from the provider, with no bearer token): the state item is
consumed by one conditional delete that also requires the binding cookie's hash, so a state is
used at most once and only by the browser of the user who started the flow. A response whose
`iss` (RFC 9207) differs from the issuer recorded at the start is refused like a bad state, its
state spent and its code never exchanged; one without `iss` is accepted (a provider that does not
implement RFC 9207). If the user who started the flow is still an admin or owner of the org,
the code is exchanged with the connection's client authentication and the grant is stored
sealed, in a transaction that checks their role again. Once the org's deletion has shredded its
key (`strongroom.shredded_orgs`), neither a start nor a grant is stored: a start answers 409, a
callback `org_deleting` (its code not exchanged, or the grant revoked if the key was shredded
while it was). The
browser is sent to the deployment's return URL with a result code and the connection id, never
a token, code or state.

The state's public prefix is the org id, so the callback reads only that org's partition.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final
from urllib.parse import urlencode, urlsplit, urlunsplit

from oauth_flow.models import AuthorizationStarted, CallbackResult
from oauth_flow.services import Services
from strongroom.api import Caller
from strongroom.audit.events import AuditAction, AuditEntry, Outcome
from strongroom.audit.exceptions import AuditUnavailable
from strongroom.crypto.exceptions import KeyringUnavailable
from strongroom.errors import Conflict, NotFound, StrongroomError
from strongroom.oauth import (
    ConnectionRecord,
    ConnectionUnusable,
    GrantNotStored,
    ProviderRefused,
    TokenUnavailable,
)
from strongroom.redaction import get_logger
from strongroom.roles import Role, has_role, require_role, still_allowed
from strongroom.shredded_orgs import (
    BEING_DELETED,
    ORG_KIND,
    is_shredded,
    refuse_if_shredded,
    unshredded,
)
from strongroom.tenancy import ConditionFailed, Create, ItemNotFound, TenancyError

logger = get_logger(service="oauth_callback")

STATE_KIND: Final = "OAUTH_STATE"
STATE_TTL: Final = timedelta(minutes=10)
# RFC 6265bis `__Host-`: browsers accept it only Secure, with Path=/ and no Domain, so a sibling
# subdomain cannot plant a binding of its choosing for another user's flow.
BINDING_COOKIE: Final = "__Host-strongroom_oauth_binding"
_STATE_SEALED_KIND: Final = "oauth_state"
_STATE = re.compile(r"^(org_[a-z2-7]{26})\.([A-Za-z0-9_-]{43})$")
_BINDING = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ERROR_CODE = re.compile(r"^[a-z_]{1,64}$")
# Okta, Auth0 and Entra issue a refresh token only when offline_access is asked for.
_OFFLINE_ACCESS_PROVIDERS: Final = frozenset({"okta", "auth0", "entra"})


@dataclass(frozen=True, slots=True)
class StartedFlow:
    body: AuthorizationStarted
    binding: str  # the browser-binding secret, for the cookie only


@dataclass(frozen=True, slots=True)
class FinishedFlow:
    location: str


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")


# ---- start ----------------------------------------------------------------------------------


def start_authorization(
    services: Services,
    caller: Caller,
    org_id: str,
    connection_id: str,
    *,
    now: datetime,
    request_id: str,
) -> StartedFlow:
    require_role(services.table, caller, org_id, Role.ADMIN, now=now)
    try:
        connection = services.tokens.connection(org_id, connection_id, now=now)
    except ConnectionUnusable:
        raise NotFound() from None
    if connection.auth_method != "authorization_code":
        raise Conflict("Only authorization_code connections are authorized through OAuth.")
    try:
        endpoints = services.tokens.endpoints(connection)
    except ConnectionUnusable:
        raise Conflict("The connection names no authorization endpoint.") from None
    if endpoints.authorization is None or connection.client_id is None:
        raise Conflict("The connection names no authorization endpoint.")
    # Before sealing (the org's key may be shredded): a state stored now would outlive the org.
    # The write's condition covers a shredding after this read.
    try:
        refuse_if_shredded(services.table.get(org_id, ORG_KIND, now=now))
    except ItemNotFound:
        raise NotFound() from None
    secret = _b64url(secrets.token_bytes(32))
    state = f"{org_id}.{secret}"
    state_id = _digest(secret)
    binding = _b64url(secrets.token_bytes(32))
    verifier = _b64url(secrets.token_bytes(64))  # 86 characters (RFC 7636: 43 to 128)
    challenge = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
    redirect_uri = services.settings.oauth_redirect_uri
    sealed_verifier = services.keyrings.for_org(org_id).seal_field(
        verifier, kind=_STATE_SEALED_KIND, item_id=state_id, field="code_verifier"
    )
    state_item = Create(
        STATE_KIND,
        state_id,
        attributes={
            "connection_id": connection_id,
            "started_by": caller.sub,
            "binding_hash": _digest(binding),
            "sealed_code_verifier": sealed_verifier,
            "redirect_uri": redirect_uri,
            "created_at": _iso(now),
            # RFC 9207: what the response's `iss` must be, so a mix-up is refused at the callback.
            **({"issuer": endpoints.issuer} if endpoints.issuer is not None else {}),
        },
        ttl=STATE_TTL,
    )
    try:
        services.table.transact(org_id, [state_item, unshredded()], now=now)
    except ItemNotFound:
        raise NotFound() from None  # the org is gone
    except ConditionFailed:
        raise Conflict(BEING_DELETED) from None
    query = {
        "response_type": "code",
        "client_id": connection.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(_scopes(connection)),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorized = _entry(
        actor=caller.sub,
        action=AuditAction.OAUTH_AUTHORIZE,
        connection_id=connection_id,
        outcome="success",
        request_id=request_id,
        details={},
    )
    services.audit.append(org_id, authorized, now=now)
    return StartedFlow(
        body=AuthorizationStarted(
            authorization_url=_with_query(endpoints.authorization, query),
            expires_at=_iso(now + STATE_TTL),
        ),
        binding=binding,
    )


def _scopes(connection: ConnectionRecord) -> list[str]:
    scopes = list(connection.scopes)
    if connection.provider in _OFFLINE_ACCESS_PROVIDERS and "offline_access" not in scopes:
        scopes.append("offline_access")
    return scopes


def _with_query(url: str, query: dict[str, str]) -> str:
    parts = urlsplit(url)
    encoded = urlencode(query)
    combined = f"{parts.query}&{encoded}" if parts.query else encoded
    return urlunsplit((parts.scheme, parts.netloc, parts.path, combined, ""))


# ---- finish ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _ConsumedState:
    org_id: str
    state_id: str
    connection_id: str
    started_by: str
    sealed_code_verifier: bytes
    redirect_uri: str
    issuer: str | None  # None: not known at the start (or a state stored before it was kept)


def finish_authorization(
    services: Services,
    *,
    state: str | None,
    code: str | None,
    error: str | None,
    binding: str | None,
    now: datetime,
    request_id: str,
    iss: str | None = None,
) -> FinishedFlow:
    """Consume the state and finish the flow; always a redirect to the return URL."""
    consumed = _consume_state(services, state, binding, now=now)
    if consumed is None:
        # Unknown, malformed, expired, already used, or started in another user's browser.
        return _finished(services, CallbackResult.INVALID_STATE)
    if not _same_issuer(consumed, iss):
        # Another authorization server answered (RFC 9207 §2.4: a mix-up): its code must go to
        # no token endpoint. Answered like a bad state, the state spent, nothing stored; the
        # state was this browser's own, so the attempt is audited.
        logger.warning(
            "an OAuth callback named another issuer than the flow's",
            extra={"org_id": consumed.org_id, "connection_id": consumed.connection_id},
        )
        _audit_failure(
            services, consumed, "failure", "issuer_mismatch", now=now, request_id=request_id
        )
        return _finished(services, CallbackResult.INVALID_STATE)
    try:
        result, reason = _finish(services, consumed, code, error, now=now, request_id=request_id)
    except StrongroomError as exc:
        # The state is spent: an error page would strand the user. No grant is left unheld (one
        # not stored is revoked), and one stored has its entry with it. An outage is for retrying
        # later; anything else (a stored value that cannot be opened, a defect) is for people.
        transient = isinstance(
            exc, TenancyError | KeyringUnavailable | AuditUnavailable | TokenUnavailable
        )
        (logger.warning if transient else logger.exception)(
            "an OAuth callback could not be finished",
            extra={"org_id": consumed.org_id, "error_type": type(exc).__name__},
        )
        reason = "store_unavailable" if transient else "internal_error"
        result = CallbackResult.UNAVAILABLE
    # CONNECTED: its entry was recorded with the grant, and the token service appended it after
    # the commit (an audit outage leaves it to the sweep).
    if result is not CallbackResult.CONNECTED:
        outcome: Outcome = "denied" if result is CallbackResult.NOT_ALLOWED else "failure"
        _audit_failure(services, consumed, outcome, reason, now=now, request_id=request_id)
    return _finished(services, result, consumed.connection_id)


def _audit_failure(
    services: Services,
    consumed: _ConsumedState,
    outcome: Outcome,
    reason: str | None,
    *,
    now: datetime,
    request_id: str,
) -> None:
    details = {} if reason is None else {"reason": reason}
    entry = _connect_entry(consumed, outcome, request_id, details=details)
    # The browser gets its redirect whatever happens to the entry: the flow changed nothing
    # and its state is spent, so an error page would only strand the user.
    if services.audit.record_outcome(consumed.org_id, entry, now=now):
        services.audit.flush_after_commit(consumed.org_id, now=now)


def _connect_entry(
    consumed: _ConsumedState, outcome: Outcome, request_id: str, *, details: dict[str, str]
) -> AuditEntry:
    return _entry(
        actor=consumed.started_by,
        action=AuditAction.OAUTH_CONNECT,
        connection_id=consumed.connection_id,
        outcome=outcome,
        request_id=request_id,
        details=details,
    )


def _consume_state(
    services: Services, state: str | None, binding: str | None, *, now: datetime
) -> _ConsumedState | None:
    """The state's item, deleted by this call, if it exists and the binding matches; else None.

    One conditional delete: of concurrent callbacks with one state, exactly one gets the item.
    A binding that does not match leaves the state for its own user's browser.
    """
    match = _STATE.fullmatch(state or "")
    if match is None or binding is None or _BINDING.fullmatch(binding) is None:
        return None
    org_id, secret = match.groups()
    state_id = _digest(secret)
    try:
        item = services.table.consume(
            org_id, STATE_KIND, state_id, now=now, expect={"binding_hash": _digest(binding)}
        )
    except (ItemNotFound, ConditionFailed):
        return None
    a = item.attributes
    return _ConsumedState(
        org_id=org_id,
        state_id=state_id,
        connection_id=str(a["connection_id"]),
        started_by=str(a["started_by"]),
        sealed_code_verifier=a["sealed_code_verifier"],
        redirect_uri=str(a["redirect_uri"]),
        issuer=str(a["issuer"]) if "issuer" in a else None,
    )


def _same_issuer(consumed: _ConsumedState, iss: str | None) -> bool:
    """Whether the response's `iss` may be the recorded issuer's: equal (exactly, RFC 9207
    §2.4), or either unknown. The flow has no provider metadata, so an absent `iss` cannot be
    told from one a provider that announces `authorization_response_iss_parameter_supported`
    left out: it is accepted."""
    if iss is None or consumed.issuer is None:
        return True
    return hmac.compare_digest(iss.encode("utf-8"), consumed.issuer.encode("utf-8"))


def _finish(
    services: Services,
    consumed: _ConsumedState,
    code: str | None,
    error: str | None,
    *,
    now: datetime,
    request_id: str,
) -> tuple[CallbackResult, str | None]:
    """The flow's result and, for a failure, the reason to audit."""
    if error is not None:
        reason = error if _ERROR_CODE.fullmatch(error) else "unrecognised_error"
        denied = error == "access_denied"
        return (CallbackResult.ACCESS_DENIED if denied else CallbackResult.PROVIDER_ERROR), reason
    if not code:
        return CallbackResult.INVALID_REQUEST, "missing_code"
    # The flow acts for the user who started it: removed or demoted since (the state lives for
    # minutes), they may no longer connect the org's connection to an account of their choice.
    if not has_role(services.table, consumed.started_by, consumed.org_id, Role.ADMIN, now=now):
        return CallbackResult.NOT_ALLOWED, "not_allowed"
    # A grant stored now could not be sealed (or would be, under a dead key) and would be deleted
    # unused: the code is not exchanged. The grant's condition covers a shredding after this.
    if is_shredded(services.table, consumed.org_id, now=now):
        return CallbackResult.ORG_DELETING, "org_deleting"
    return _exchange(services, consumed, code, now=now, request_id=request_id)


def _exchange(
    services: Services, consumed: _ConsumedState, code: str, *, now: datetime, request_id: str
) -> tuple[CallbackResult, str | None]:
    # Recorded with the grant, so a stored grant is never without its audit entry.
    connected = _connect_entry(consumed, "success", request_id, details={})
    recorded = services.audit.prepare(consumed.org_id, connected, now=now)
    try:
        connection = services.tokens.connection(consumed.org_id, consumed.connection_id, now=now)
        verifier = services.keyrings.for_org(consumed.org_id).open_text_field(
            consumed.sealed_code_verifier,
            kind=_STATE_SEALED_KIND,
            item_id=consumed.state_id,
            field="code_verifier",
        )
        services.tokens.exchange_code(
            connection,
            code=code,
            code_verifier=verifier,
            redirect_uri=consumed.redirect_uri,
            now=now,
            request_id=request_id,
            actor=consumed.started_by,
            # The grant is stored only if its user is still allowed when it lands, and the
            # org's key is not shredded.
            with_grant=[still_allowed(consumed.started_by, Role.ADMIN), unshredded(), *recorded],
        )
    except ConnectionUnusable:
        return _not_stored(services, consumed, now=now)
    except ProviderRefused as exc:
        return CallbackResult.EXCHANGE_REFUSED, exc.error
    except GrantNotStored:
        return CallbackResult.UNAVAILABLE, "grant_not_stored"
    except TokenUnavailable:
        return CallbackResult.PROVIDER_UNAVAILABLE, "provider_unavailable"
    return CallbackResult.CONNECTED, None


def _not_stored(
    services: Services, consumed: _ConsumedState, *, now: datetime
) -> tuple[CallbackResult, str]:
    """Why a grant's store was refused: its user lost their role, the org's key was shredded,
    its connection is gone, or the connection changed while the code was exchanged (another
    flow's grant landed first, its secret was replaced, or its token refreshed): then the flow
    can be started again."""
    if not has_role(services.table, consumed.started_by, consumed.org_id, Role.ADMIN, now=now):
        return CallbackResult.NOT_ALLOWED, "not_allowed"
    if is_shredded(services.table, consumed.org_id, now=now):
        return CallbackResult.ORG_DELETING, "org_deleting"
    try:
        services.tokens.connection(consumed.org_id, consumed.connection_id, now=now)
    except ConnectionUnusable:
        return CallbackResult.CONNECTION_GONE, "connection_gone"
    return CallbackResult.CONNECTION_CHANGED, "connection_changed"


def _finished(
    services: Services, result: CallbackResult, connection_id: str | None = None
) -> FinishedFlow:
    query = {"result": result.value}
    if connection_id is not None:
        query["connection_id"] = connection_id
    return FinishedFlow(location=_with_query(services.settings.oauth_return_url, query))


def _entry(
    *,
    actor: str,
    action: AuditAction,
    connection_id: str,
    outcome: Outcome,
    request_id: str,
    details: dict[str, str],
) -> AuditEntry:
    return AuditEntry(
        actor=actor,
        action=action.value,
        request_id=request_id,
        outcome=outcome,
        target_kind="connection",
        target_id=connection_id,
        details=details,
    )
