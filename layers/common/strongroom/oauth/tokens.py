"""The token service: a valid access token for a connection, fetched or refreshed at most once.

    tokens = token_service(settings, table=table, keyrings=keyrings, audit=audit)
    token = tokens.access_token(org_id, connection_id, now=now, request_id=rid,
                                actor="system:scheduled_backup")
    headers = {"Authorization": token.authorization}

Warm path: one strongly consistent GetItem of the connection and an open of its sealed access
token under the org's cached DEK: no KMS call, no write. A token is served from the cache while
more than 60 s of it remain.

Otherwise the caller takes the connection's lease (an item created only if absent or expired,
with a TTL, so a crashed holder frees it by itself), reads the connection again, and fetches
(client credentials, private_key_jwt) or refreshes (authorization code) only if no other caller
did meanwhile. Just before a refresh is sent, the lease must outlast the request (its total
timeout) and the store of its answer (REFRESH_STORE_SECONDS) with a margin, or is extended to
that while still ours; one that cannot be is given up with LeaseTimeout, nothing sent. A holder
that dies mid-refresh therefore holds off the others for about eight minutes, rather than one
of them spending the same refresh token while the holder's store still waits on DynamoDB. A
refresh is then sent once, never retried (not even after a 429), since a retry's wait could
outlast the lease: a refresh token is single-use, and a second worker refreshing it while ours
is still in flight would set off the provider's reuse detection, which revokes the grant. The
new token is written only if `token_generation` still holds the value read under the lease, so
a caller whose lease ran out can never overwrite a newer token (nor the newer refresh token of
a rotating provider). Callers that find the lease taken wait for the holder's token, and give
up with LeaseTimeout, never with an error that blames the credentials.

`invalid_grant` on a refresh marks the connection `needs_reauth`, with its audit entries in the
same transaction. Every use of a stored credential is audited, whatever its outcome: a token
request's success is recorded in the transaction that stores the token (prepared before the
request, so an audit log that cannot record it stops the request first), so an audit outage can
never lose a grant the provider has already rotated; the entries reach the chain after the
commit, or by the sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from strongroom.audit.events import AuditAction, AuditEntry
from strongroom.audit.exceptions import AuditError
from strongroom.audit.log import AuditLog
from strongroom.aws_limits import PROMPT_CALLS, worst_case_seconds
from strongroom.crypto import Keyrings, OrgKeyring
from strongroom.crypto.exceptions import CryptoError, KeyringUnavailable
from strongroom.lazy import on_first_use
from strongroom.oauth.client_auth import (
    ClientAuthentication,
    client_secret_basic,
    client_secret_post,
    private_key_jwt,
)
from strongroom.oauth.connection import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_EXPIRES_AT,
    CONNECTION_KIND,
    REFRESH_TOKEN,
    SEALED_KIND,
    STATUS,
    TOKEN_GENERATION,
    ConnectionRecord,
    ConnectionStatus,
    read_connection,
    sealed_attribute,
)
from strongroom.oauth.endpoints import ProviderEndpoints, provider_endpoints
from strongroom.oauth.exceptions import (
    ConnectionUnusable,
    GrantNotStored,
    InvalidGrant,
    LeaseTimeout,
    NeedsReauthorization,
    ProviderRefused,
    TokenUnavailable,
)
from strongroom.oauth.token_endpoint import (
    MAX_TOKEN_RESPONSE_BYTES,
    TokenGrant,
    request_token,
    revoke_token,
)
from strongroom.outbound import Resolver, system_resolver
from strongroom.settings import Settings
from strongroom.tenancy import (
    ConditionFailed,
    ItemExists,
    ItemNotFound,
    Operation,
    TenancyError,
    TenantTable,
    Update,
    transaction_worst_case_seconds,
)

if TYPE_CHECKING:
    from strongroom.outbound.client import OutboundClient

_LOGGER = logging.getLogger(__name__)
LEASE_KIND: Final = "TOKEN_LEASE"
MIN_REMAINING_SECONDS: Final = 60
# The token client's total timeout: no one token request attempt takes longer.
REQUEST_SECONDS: Final = 30.0
# Longer than one token request can take (the token client's total timeout), so a live holder
# keeps its lease for the whole request.
LEASE_SECONDS: Final = 45
# A refresh is sent only with this much more than the request's timeout left on the lease: the
# lease's expiry is whole seconds, and the clocks of workers and DynamoDB differ a little.
LEASE_MARGIN_SECONDS: Final = 5
# The connection attribute naming the store of its current authorized grant (random, no secret).
GRANT_NONCE: Final = "grant_nonce"
# A refreshed token whose store fails is tried this many times (a pause of this many seconds
# times the attempt between them) before it is given up, and its refresh token revoked.
_REFRESH_STORE_ATTEMPTS: Final = 3
_REFRESH_STORE_PAUSE: Final = 0.2
# The longest the store of a refreshed token can take: each attempt a KMS call (a DEK rotated
# since the refresh token was sealed), the transaction (run again after a conflict) and a read
# back, each call at its worst (timeouts and SDK retries). A refresh's lease must outlast its
# request and this: if it ran out while the store still waited on DynamoDB, a second worker
# would refresh the spent token.
REFRESH_STORE_SECONDS: Final = _REFRESH_STORE_ATTEMPTS * (
    2 * worst_case_seconds(PROMPT_CALLS)
    + transaction_worst_case_seconds(worst_case_seconds(PROMPT_CALLS))
    + _REFRESH_STORE_PAUSE
)


def token_client(
    settings: Settings,
    *,
    resolver: Resolver = system_resolver,
    read_timeout: float = 10.0,
    total_timeout: float = REQUEST_SECONDS,
) -> OutboundClient:
    """The outbound client for token and revocation endpoints: short timeouts, small bodies."""
    # Loaded here, not at import: it brings requests, which cold starts need not pay for.
    from strongroom.outbound.client import OutboundClient  # noqa: PLC0415

    return OutboundClient(
        allow_hosts=settings.dev_allow_hosts,
        resolver=resolver,
        max_response_bytes=MAX_TOKEN_RESPONSE_BYTES,
        connect_timeout=min(5.0, read_timeout),
        read_timeout=read_timeout,
        total_timeout=total_timeout,
    )


def token_service(
    settings: Settings,
    *,
    table: TenantTable,
    keyrings: Keyrings,
    audit: AuditLog,
    resolver: Resolver = system_resolver,
    read_timeout: float = 10.0,
    total_timeout: float = REQUEST_SECONDS,
) -> TokenService:
    """The deployment's token service: its own token client (made when a token request is
    first sent), the settings' dev allow-list."""
    return TokenService(
        table=table,
        keyrings=keyrings,
        outbound=on_first_use(
            lambda: token_client(
                settings, resolver=resolver, read_timeout=read_timeout, total_timeout=total_timeout
            )
        ),
        audit=audit,
        dev_hosts=settings.dev_allow_hosts,
        request_seconds=total_timeout,
    )


@dataclass(frozen=True, slots=True, repr=False)
class AccessToken:
    """A credential to call the provider's API with. The repr shows no value."""

    scheme: str  # "Bearer", or "SSWS" for an Okta API token
    value: str
    expires_at: int | None  # epoch seconds; None for a static API token

    @property
    def authorization(self) -> str:
        """The value of the Authorization header."""
        return f"{self.scheme} {self.value}"

    def __repr__(self) -> str:
        return f"AccessToken({self.scheme}, expires_at={self.expires_at})"


class TokenService:
    """Access tokens for connections; see the module docstring."""

    def __init__(
        self,
        *,
        table: TenantTable,
        keyrings: Keyrings,
        outbound: OutboundClient,
        audit: AuditLog,
        dev_hosts: Collection[tuple[str, int]] = (),
        lease_seconds: int = LEASE_SECONDS,
        wait_seconds: float = LEASE_SECONDS + 5,
        request_seconds: float = REQUEST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`request_seconds` is the outbound client's total timeout (one attempt)."""
        if lease_seconds < request_seconds + LEASE_MARGIN_SECONDS:
            # Not even a fresh lease would outlast a refresh: every one would be given up.
            raise ValueError("lease_seconds must exceed request_seconds and its margin")
        self._table = table
        self._keyrings = keyrings
        self._outbound = outbound
        self._audit = audit
        self._dev_hosts = frozenset(dev_hosts)
        self._lease = timedelta(seconds=lease_seconds)
        self._wait_seconds = wait_seconds
        self._request_seconds = request_seconds
        self._clock = clock
        self._sleep = sleep

    # ---- reading --------------------------------------------------------------------------

    def connection(self, org_id: str, connection_id: str, *, now: datetime) -> ConnectionRecord:
        """The connection's record; ConnectionUnusable if the org holds no such connection."""
        try:
            item = self._table.get(org_id, CONNECTION_KIND, connection_id, now=now)
        except ItemNotFound:
            raise ConnectionUnusable("no such connection") from None
        return read_connection(org_id, item)

    def endpoints(self, connection: ConnectionRecord) -> ProviderEndpoints:
        return provider_endpoints(connection, self._dev_hosts)

    # ---- access tokens --------------------------------------------------------------------

    def access_token(
        self,
        org_id: str,
        connection_id: str,
        *,
        now: datetime,
        request_id: str,
        actor: str = "system:token_service",
    ) -> AccessToken:
        """A token with more than 60 s left. Raises NeedsReauthorization, ProviderRefused,
        TokenUnavailable (LeaseTimeout among them) or ConnectionUnusable."""
        record = self.connection(org_id, connection_id, now=now)
        if record.auth_method == "api_token":
            return self._api_token(record, now=now, request_id=request_id, actor=actor)
        cached = self._cached(record, now)
        if cached is not None:
            return cached
        return self._renew(record, now=now, request_id=request_id, actor=actor)

    def _api_token(
        self, record: ConnectionRecord, *, now: datetime, request_id: str, actor: str
    ) -> AccessToken:
        sealed = record.sealed("token")
        if sealed is None:
            raise ConnectionUnusable("the connection holds no API token")
        used = self._use_entry(
            record,
            request_id=request_id,
            actor=actor,
            outcome="success",
            details={"grant": "api_token"},
        )
        # Recorded before the token leaves: a use that cannot be audited is not made (AuditError).
        self._audit.record(record.org_id, used, now=now)
        self._audit.flush_after_commit(record.org_id, now=now)
        value = self._open(record, sealed, "token")
        return AccessToken("SSWS" if record.provider == "okta" else "Bearer", value, None)

    def _cached(self, record: ConnectionRecord, now: datetime) -> AccessToken | None:
        expires_at = record.access_token_expires_at
        sealed = record.sealed(ACCESS_TOKEN)
        if sealed is None or expires_at is None:
            return None
        if expires_at - now.timestamp() <= MIN_REMAINING_SECONDS:
            return None
        return AccessToken("Bearer", self._open(record, sealed, ACCESS_TOKEN), expires_at)

    def _renew(
        self, record: ConnectionRecord, *, now: datetime, request_id: str, actor: str
    ) -> AccessToken:
        if record.status is ConnectionStatus.NEEDS_REAUTH:
            raise NeedsReauthorization("the connection must be authorized again")
        holder = secrets.token_urlsafe(16)
        started = self._clock()
        pause = 0.02
        while True:
            current = now + timedelta(seconds=self._clock() - started)
            try:
                taken = self._table.create(
                    record.org_id,
                    LEASE_KIND,
                    record.connection_id,
                    attributes={"holder": holder},
                    ttl=self._lease,
                    now=current,
                )
                break
            except ItemExists:
                pass
            if self._clock() - started >= self._wait_seconds:
                raise LeaseTimeout("another caller holds the connection's token lease")
            self._sleep(pause)
            pause = min(pause * 2, 0.25)
            record = self.connection(record.org_id, record.connection_id, now=current)
            cached = self._cached(record, current)
            if cached is not None:
                return cached
            if record.status is ConnectionStatus.NEEDS_REAUTH:
                raise NeedsReauthorization("the connection must be authorized again")
        try:
            # Another caller may have renewed between our read and our lease.
            record = self.connection(record.org_id, record.connection_id, now=current)
            cached = self._cached(record, current)
            if cached is not None:
                return cached
            lease = _Lease(
                holder=holder,
                expires_at=int(taken.expires_at or 0),
                now=lambda: now + timedelta(seconds=self._clock() - started),
            )
            return self._fetch(record, now=current, request_id=request_id, actor=actor, lease=lease)
        finally:
            with contextlib.suppress(TenancyError):
                self._table.delete(
                    record.org_id,
                    LEASE_KIND,
                    record.connection_id,
                    expect={"holder": holder},
                    now=current,
                )

    def _keep_lease(self, record: ConnectionRecord, lease: _Lease) -> None:
        """Make the lease outlast the refresh about to be sent and the store of what it
        returns (see the module docstring): extended, if too little is left, by an update that
        holds only while it is still ours; LeaseTimeout if it cannot be (ran out, taken by
        another caller, DynamoDB failing)."""
        current = lease.now()
        needed = self._request_seconds + REFRESH_STORE_SECONDS + LEASE_MARGIN_SECONDS
        if lease.expires_at - current.timestamp() >= needed:
            return
        try:
            kept = self._table.update(
                record.org_id,
                LEASE_KIND,
                record.connection_id,
                now=current,
                expect={"holder": lease.holder},
                ttl=timedelta(seconds=math.ceil(needed) + LEASE_MARGIN_SECONDS),
            )
        except TenancyError:  # ItemNotFound (ran out) and ConditionFailed (taken) among them
            raise LeaseTimeout("the token lease ran out before the refresh was sent") from None
        lease.expires_at = int(kept.expires_at or 0)
        # The extension's own answer may have been slow (SDK retries): measured again.
        if lease.expires_at - lease.now().timestamp() < needed:
            raise LeaseTimeout("the token lease ran out before the refresh was sent")

    def _fetch(
        self,
        record: ConnectionRecord,
        *,
        now: datetime,
        request_id: str,
        actor: str,
        lease: _Lease | None = None,
    ) -> AccessToken:
        if record.status is ConnectionStatus.NEEDS_REAUTH:
            raise NeedsReauthorization("the connection must be authorized again")
        endpoints = self.endpoints(record)
        client = self._client_authentication(record, endpoints, now)
        if record.auth_method == "authorization_code":
            sealed_refresh = record.sealed(REFRESH_TOKEN)
            if sealed_refresh is None:
                raise NeedsReauthorization("the connection has not been authorized")
            grant_type = "refresh_token"
            grant = {
                "grant_type": grant_type,
                "refresh_token": self._open(record, sealed_refresh, REFRESH_TOKEN),
            }
        else:
            grant_type = "client_credentials"
            grant = {"grant_type": grant_type}
            if record.scopes:
                grant["scope"] = " ".join(record.scopes)
        use = self._request(
            record,
            endpoints.token,
            grant,
            client,
            now=now,
            request_id=request_id,
            actor=actor,
            # A refresh spends a rotating refresh token: never sent twice.
            retryable=grant_type == "client_credentials",
            before_send=(
                (lambda: self._keep_lease(record, lease))
                if lease is not None and grant_type == "refresh_token"
                else None
            ),
        )
        if grant_type == "refresh_token":
            self._store_refreshed(
                record,
                use,
                spent=grant["refresh_token"],
                now=now,
                request_id=request_id,
                actor=actor,
            )
        else:
            self._store_token(record, use, now=now)
        return AccessToken("Bearer", use.token.access_token, use.token.expires_at)

    def _store_refreshed(
        self,
        record: ConnectionRecord,
        use: _Use,
        *,
        spent: str,
        now: datetime,
        request_id: str,
        actor: str,
    ) -> None:
        """Store what a refresh returned. The refresh spent `spent`: a provider that rotates
        refresh tokens refuses it from now on (and may revoke the grant if it comes back), so the
        new one must not be lost. A change that kept the grant meanwhile (a secret rotated for
        the same client: the generation moved, the refresh token is still `spent`) gets the
        token stored on top of it; a failed write (DynamoDB, KMS) is tried again, and one whose
        answer was lost counts if the connection holds our access token. A new refresh token
        that ends up held by nobody (the connection deleted, its client or grant replaced, the
        store failing throughout) is revoked.

        ConnectionUnusable: the grant was dropped or replaced meanwhile. TenancyError or
        CryptoError: the store kept failing.
        """
        failure: Exception | None = None
        for attempt in range(_REFRESH_STORE_ATTEMPTS):
            if attempt:
                self._sleep(_REFRESH_STORE_PAUSE * attempt)
            try:
                self._store_token(record, use, now=now, keep_newer=False, audit_unstored=False)
                return
            except (ConnectionUnusable, TenancyError, CryptoError) as exc:
                failure = exc
            current = self._read_again(record, now)
            if current is not None and self._holds_access_token(current, use.token):
                self._audit.flush_after_commit(record.org_id, now=now)  # ours, answer lost
                return
            if current is None or not self._keeps_grant(current, record, spent):
                failure = ConnectionUnusable("the connection's grant changed meanwhile")
                break
            record = current
        self._record_unstored_use(record, use, now=now)
        issued = use.token.refresh_token
        if (
            issued is not None
            and not hmac.compare_digest(issued.encode("utf-8"), spent.encode("utf-8"))
            and not self._connection_holds(record, use.token, now)
        ):
            self._revoke_unheld(record, use.token, now=now, request_id=request_id, actor=actor)
        assert failure is not None  # noqa: S101 - the loop ends only after a failure
        raise failure

    def _read_again(self, record: ConnectionRecord, now: datetime) -> ConnectionRecord | None:
        """The connection as stored now; None if it is gone or cannot be read."""
        try:
            item = self._table.get(record.org_id, CONNECTION_KIND, record.connection_id, now=now)
            return read_connection(record.org_id, item)
        except Exception:  # noqa: BLE001 - gone, unreadable or damaged: treated as gone
            return None

    def _keeps_grant(self, current: ConnectionRecord, record: ConnectionRecord, spent: str) -> bool:
        """Whether `current` still holds the grant `record` refreshed: same method and client,
        and still the refresh token that was spent (no newer grant stored meanwhile)."""
        return (
            current.auth_method == record.auth_method
            and current.client_id == record.client_id
            and self._holds_refresh_token(current, spent)
        )

    def _holds_access_token(self, record: ConnectionRecord, token: TokenGrant) -> bool:
        sealed = record.sealed(ACCESS_TOKEN)
        if sealed is None:
            return False
        try:
            held = self._open(record, sealed, ACCESS_TOKEN)
        except CryptoError:
            return False
        return hmac.compare_digest(held.encode("utf-8"), token.access_token.encode("utf-8"))

    # ---- the authorization-code grant -------------------------------------------------------

    def exchange_code(
        self,
        record: ConnectionRecord,
        *,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        now: datetime,
        request_id: str,
        actor: str,
        with_grant: Sequence[Operation] = (),
    ) -> None:
        """Exchange an authorization code and store the grant on the connection.

        `with_grant` commits in the grant's own transaction: checks that must still hold (the
        user who started the flow is still allowed to connect it) and writes that must land
        with it (its audit entry).
        InvalidGrant / ProviderRefused / TokenUnavailable: nothing is stored.
        ConnectionUnusable: the connection was deleted or changed meanwhile, or a check of
        `with_grant` failed; nothing is stored. GrantNotStored (a TokenUnavailable): DynamoDB
        or KMS failed. Either way the grant was revoked at the provider, unless the connection
        holds it already. A store whose answer was lost but which committed (its `grant_nonce`
        read back) counts as stored. A replaced grant is revoked (a failure is audited, never
        raised).
        """
        if record.auth_method != "authorization_code":
            raise ConnectionUnusable("not an authorization-code connection")
        endpoints = self.endpoints(record)
        client = self._client_authentication(record, endpoints, now)
        grant = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        use = self._request(
            record,
            endpoints.token,
            grant,
            client,
            now=now,
            request_id=request_id,
            actor=actor,
            retryable=False,
        )
        if use.token.refresh_token is None:
            # Without a refresh token the connection could not run unattended backups.
            self._record_unstored_use(record, use, now=now)
            self._revoke_unheld(record, use.token, now=now, request_id=request_id, actor=actor)
            raise ProviderRefused("the provider issued no refresh token", error="no_refresh_token")
        # Names this store: after a write whose answer was lost, it tells whether that write
        # committed (a token's value cannot: providers may hand the same refresh token back).
        nonce = secrets.token_hex(16)
        try:
            self._store_token(
                record, use, now=now, authorized=True, with_token=with_grant, grant_nonce=nonce
            )
        except Exception as exc:
            if isinstance(exc, TenancyError) and self._holds_grant(record, nonce, now):
                self._audit.flush_after_commit(record.org_id, now=now)
            else:
                # Not stored, whatever stopped it (the connection changed, its user lost their
                # role, DynamoDB or KMS failing): nobody holds the grant, so it must not stay
                # live at the provider.
                if isinstance(exc, TenancyError):
                    self._record_unstored_use(record, use, now=now)
                # Unless the connection holds it after all: the provider handed back the refresh
                # token it holds, or another flow stored the same one meanwhile.
                if not self._connection_holds(record, use.token, now):
                    self._revoke_unheld(
                        record, use.token, now=now, request_id=request_id, actor=actor
                    )
                if isinstance(exc, TenancyError | KeyringUnavailable):
                    raise GrantNotStored("the grant could not be stored") from exc
                raise
        if record.sealed(REFRESH_TOKEN) is not None and not self._same_refresh_token(
            record, use.token
        ):
            # A new authorization replaces the grant: the old one must not stay usable at the
            # provider, where nobody would ever revoke it. The new one is stored: nothing here
            # may fail the flow (an old value that cannot be opened now is audited as failed).
            try:
                previous = self.revoke(record, now=now)
            except CryptoError:
                previous = "failed"
            self._record_revocation(
                record,
                previous,
                "replaced_by_new_grant",
                now=now,
                request_id=request_id,
                actor=actor,
            )

    # ---- revocation -----------------------------------------------------------------------

    def revocable(self, record: ConnectionRecord, *, now: datetime) -> bool:
        """Whether `revoke` would send anything: the connection holds a grant (a refresh token, or
        a live access token) and its provider has a revocation endpoint. No KMS or network call."""
        try:
            holds = record.sealed(REFRESH_TOKEN) is not None or (
                record.sealed(ACCESS_TOKEN) is not None
                and (record.access_token_expires_at or 0) > now.timestamp()
            )
            return holds and self.endpoints(record).revocation is not None
        except ConnectionUnusable:
            return True  # a damaged value or missing settings: `revoke` reports it as failed

    def revoke(
        self, record: ConnectionRecord, *, now: datetime, deadline: float | None = None
    ) -> str:
        """Revoke the connection's grant at the provider (RFC 7009), for a change that dropped
        it (a deletion, a rotation; or the sweep of revocations still owed).

        "revoked", "failed" (recorded by the caller; the change stands) or
        "not_applicable" (no grant, or the provider has no revocation endpoint). `deadline`
        (epoch seconds) bounds the waits between attempts at the provider.
        """
        sealed_refresh = record.sealed(REFRESH_TOKEN)
        sealed_access = record.sealed(ACCESS_TOKEN)
        if sealed_refresh is not None:
            field, hint, sealed = REFRESH_TOKEN, "refresh_token", sealed_refresh
        elif sealed_access is not None and (record.access_token_expires_at or 0) > now.timestamp():
            field, hint, sealed = ACCESS_TOKEN, "access_token", sealed_access
        else:
            return "not_applicable"
        return self._revoke_at_provider(
            record, lambda: self._open(record, sealed, field), hint, now=now, deadline=deadline
        )

    def _revoke_at_provider(
        self,
        record: ConnectionRecord,
        token: Callable[[], str],
        hint: str,
        *,
        now: datetime,
        deadline: float | None = None,
    ) -> str:
        """RFC 7009 revocation of `token()` (opened only if there is an endpoint to send it to):
        "revoked", "failed" or "not_applicable"."""
        try:
            endpoints = self.endpoints(record)
            if endpoints.revocation is None:
                return "not_applicable"
            client = self._client_authentication(record, endpoints, now)
            value = token()
        except (ConnectionUnusable, TokenUnavailable):
            return "failed"
        revoked = revoke_token(
            self._outbound,
            endpoints.revocation,
            value,
            client,
            token_type_hint=hint,
            deadline=deadline,
        )
        return "revoked" if revoked else "failed"

    def _holds_grant(self, record: ConnectionRecord, nonce: str, now: datetime) -> bool:
        """Whether the connection holds the grant stored under `nonce` (read again after a write
        whose answer was lost); False if that cannot be told, so it is revoked (fail closed)."""
        try:
            item = self._table.get(record.org_id, CONNECTION_KIND, record.connection_id, now=now)
        except TenancyError:  # ItemNotFound among them
            return False
        return item.attributes.get(GRANT_NONCE) == nonce

    def _connection_holds(self, record: ConnectionRecord, token: TokenGrant, now: datetime) -> bool:
        """Whether the connection, read now, holds `token`'s refresh token; False if that cannot
        be told (so an unheld grant is revoked: fail closed)."""
        try:
            item = self._table.get(record.org_id, CONNECTION_KIND, record.connection_id, now=now)
            return self._same_refresh_token(read_connection(record.org_id, item), token)
        except Exception:  # noqa: BLE001 - gone, unreadable or damaged: not known to be held
            return False

    def _same_refresh_token(self, record: ConnectionRecord, token: TokenGrant) -> bool:
        """Whether the provider handed back the refresh token the connection held already (some
        reuse them): it is the new grant too, and must not be revoked as replaced."""
        return token.refresh_token is not None and self._holds_refresh_token(
            record, token.refresh_token
        )

    def _holds_refresh_token(self, record: ConnectionRecord, value: str) -> bool:
        sealed = record.sealed(REFRESH_TOKEN)
        if sealed is None:
            return False
        try:
            held = self._open(record, sealed, REFRESH_TOKEN)
        except CryptoError:
            return False
        return hmac.compare_digest(held.encode("utf-8"), value.encode("utf-8"))

    def _revoke_unheld(
        self,
        record: ConnectionRecord,
        token: TokenGrant,
        *,
        now: datetime,
        request_id: str,
        actor: str,
    ) -> None:
        """Revoke a grant the provider issued but nobody holds (not stored: its connection
        changed, its user lost their role, it came without a refresh token, or DynamoDB or KMS
        failed): it must not stay usable at the provider, where nobody would ever revoke it.
        Best effort, and audited."""
        if token.refresh_token is not None:
            value, hint = token.refresh_token, "refresh_token"
        else:
            value, hint = token.access_token, "access_token"
        try:
            outcome = self._revoke_at_provider(record, lambda: value, hint, now=now)
        except CryptoError:
            outcome = "failed"  # the client's own credential cannot be opened now
        self._record_revocation(
            record, outcome, "grant_not_stored", now=now, request_id=request_id, actor=actor
        )

    def _record_revocation(
        self,
        record: ConnectionRecord,
        outcome: str,
        reason: str,
        *,
        now: datetime,
        request_id: str,
        actor: str,
    ) -> None:
        entry = AuditEntry(
            actor=actor,
            action=AuditAction.CREDENTIAL_REVOKE.value,
            request_id=request_id,
            outcome="success" if outcome == "revoked" else "failure",
            target_kind="connection",
            target_id=record.connection_id,
            details={"revocation": outcome, "reason": reason},
        )
        self._record_entry(record, entry, now=now, failure="a revocation could not be audited")

    # ---- helpers ----------------------------------------------------------------------------

    def _request(
        self,
        record: ConnectionRecord,
        token_endpoint: str,
        grant: dict[str, str],
        client: ClientAuthentication,
        *,
        now: datetime,
        request_id: str,
        actor: str,
        retryable: bool,
        before_send: Callable[[], None] | None = None,
    ) -> _Use:
        """One token request made with the connection's credentials, audited whatever happens.

        `before_send` runs last before the request leaves; what it raises stops the request
        (nothing sent, so nothing to audit). A request with `before_send` makes one attempt
        only: it checked the time for that one, and a retry's wait could outlast it.

        Its success is recorded by writes prepared before the request, so an audit log that
        cannot take them stops the request before a credential leaves (AuditError); the caller
        commits them with the token (`_store_token`), so an audit outage can never lose a grant
        the provider has already rotated. A failure is recorded here; a refused refresh marks
        the connection needs_reauth with its entries and raises NeedsReauthorization.
        """
        details: dict[str, Any] = {"grant": grant["grant_type"]}
        succeeded = self._use_entry(
            record, request_id=request_id, actor=actor, outcome="success", details=details
        )
        audited = self._audit.prepare(record.org_id, succeeded, now=now)
        if before_send is not None:
            before_send()
        try:
            token = request_token(
                self._outbound,
                token_endpoint,
                grant,
                client,
                now=now.timestamp(),
                retryable=retryable,
                once=before_send is not None,
            )
        except Exception as exc:
            failed = self._use_entry(
                record,
                request_id=request_id,
                actor=actor,
                outcome="failure",
                details={**details, "error": _use_error(exc)},
            )
            if isinstance(exc, InvalidGrant) and grant["grant_type"] == "refresh_token":
                self._mark_needs_reauth(record, failed, now=now, request_id=request_id, actor=actor)
                raise NeedsReauthorization("the provider refused the grant") from None
            self._record_entry(
                record, failed, now=now, failure="a failed token request could not be audited"
            )
            raise
        return _Use(token, audited)

    def _keyring(self, record: ConnectionRecord) -> OrgKeyring:
        return self._keyrings.for_org(record.org_id)

    def _open(self, record: ConnectionRecord, sealed: bytes, field: str) -> str:
        return self._keyring(record).open_text_field(
            sealed, kind=SEALED_KIND, item_id=record.connection_id, field=field
        )

    def _seal(self, record: ConnectionRecord, value: str, field: str) -> bytes:
        return self._keyring(record).seal_field(
            value, kind=SEALED_KIND, item_id=record.connection_id, field=field
        )

    def _client_authentication(
        self, record: ConnectionRecord, endpoints: ProviderEndpoints, now: datetime
    ) -> ClientAuthentication:
        if not record.client_id:
            raise ConnectionUnusable("the connection has no client id")
        if record.auth_method == "private_key_jwt":
            sealed_key = record.sealed("private_key")
            if sealed_key is None or not record.key_algorithm:
                raise ConnectionUnusable("the connection holds no private key")
            pem = self._keyring(record).open_field(
                sealed_key, kind=SEALED_KIND, item_id=record.connection_id, field="private_key"
            )
            return private_key_jwt(
                client_id=record.client_id,
                audience=endpoints.token,
                private_key_pem=pem,
                algorithm=record.key_algorithm,
                key_id=record.key_id,
                now=now.timestamp(),
            )
        sealed_secret = record.sealed("client_secret")
        if sealed_secret is None:
            raise ConnectionUnusable("the connection holds no client secret")
        secret = self._open(record, sealed_secret, "client_secret")
        if endpoints.client_secret_in_body:
            return client_secret_post(record.client_id, secret)
        return client_secret_basic(record.client_id, secret)

    def _store_token(
        self,
        record: ConnectionRecord,
        use: _Use,
        *,
        now: datetime,
        authorized: bool = False,
        with_token: Sequence[Operation] = (),
        grant_nonce: str | None = None,
        keep_newer: bool = True,
        audit_unstored: bool = True,
    ) -> None:
        """Store the token with its use's audit entry (and `with_token`) in one transaction; if
        the token is not stored, its use is still recorded (with `grant_nonce`, which names an
        authorized store, a DynamoDB failure leaves that to the caller, who can tell whether the
        write committed after all; with `audit_unstored` False, every failure does).
        A connection changed meanwhile keeps what it holds: a fetched token is dropped
        (`keep_newer`) or ConnectionUnusable is raised (an authorized store, or not keep_newer).
        """
        token = use.token
        try:
            changes: dict[str, Any] = {
                sealed_attribute(ACCESS_TOKEN): self._seal(
                    record, token.access_token, ACCESS_TOKEN
                ),
                ACCESS_TOKEN_EXPIRES_AT: token.expires_at,
                TOKEN_GENERATION: record.token_generation + 1,
            }
            if token.refresh_token is not None and (
                authorized or record.auth_method == "authorization_code"
            ):
                changes[sealed_attribute(REFRESH_TOKEN)] = self._seal(
                    record, token.refresh_token, REFRESH_TOKEN
                )
        except CryptoError:
            # Not sealed (KMS failing): not stored, but the credential was used all the same.
            if audit_unstored:
                self._record_unstored_use(record, use, now=now)
            raise
        if authorized:
            changes[STATUS] = ConnectionStatus.ACTIVE.value
            if grant_nonce is not None:
                changes[GRANT_NONCE] = grant_nonce
            # Shown as "[REDACTED]" with a fingerprint, like every other credential.
            changes["credentials"] = {
                **record.credentials(),
                REFRESH_TOKEN: {"fingerprint": _fingerprint(token), "created_at": _iso(now)},
            }
        expect = {
            TOKEN_GENERATION: record.token_generation or None,
            "auth_method": record.auth_method,
        }
        update = Update(CONNECTION_KIND, record.connection_id, changes=changes, expect=expect)
        try:
            self._table.transact(record.org_id, [update, *use.audited, *with_token], now=now)
        except ItemNotFound:
            if audit_unstored:
                self._record_unstored_use(record, use, now=now)
            raise ConnectionUnusable("the connection was deleted meanwhile") from None
        except ConditionFailed:
            if audit_unstored:
                self._record_unstored_use(record, use, now=now)
            # A newer token was stored meanwhile (our lease ran out): keep it, it is newer.
            if authorized or not keep_newer:
                raise ConnectionUnusable("the connection changed meanwhile") from None
            return
        except TenancyError:
            if grant_nonce is None and audit_unstored:
                self._record_unstored_use(record, use, now=now)
            raise
        self._audit.flush_after_commit(record.org_id, now=now)

    def _mark_needs_reauth(
        self,
        record: ConnectionRecord,
        failed: AuditEntry,
        *,
        now: datetime,
        request_id: str,
        actor: str,
    ) -> None:
        """Mark the connection needs_reauth with the refused use and the mark's entries in one
        transaction. If another caller changed the connection meanwhile, only the use is
        recorded; if nothing can be recorded, nothing is marked (the next refresh is refused
        again and marks it)."""
        marked = AuditEntry(
            actor=actor,
            action=AuditAction.CONNECTION_NEEDS_REAUTH.value,
            request_id=request_id,
            outcome="failure",
            target_kind="connection",
            target_id=record.connection_id,
            details={"reason": "invalid_grant"},
        )
        update = Update(
            CONNECTION_KIND,
            record.connection_id,
            changes={
                STATUS: ConnectionStatus.NEEDS_REAUTH.value,
                TOKEN_GENERATION: record.token_generation + 1,
            },
            remove=[sealed_attribute(ACCESS_TOKEN), ACCESS_TOKEN_EXPIRES_AT],
            expect={TOKEN_GENERATION: record.token_generation or None},
        )
        try:
            entries = self._audit.prepare(record.org_id, failed, marked, now=now)
            self._table.transact(record.org_id, [update, *entries], now=now)
        except (ConditionFailed, ItemNotFound):
            self._record_entry(
                record, failed, now=now, failure="a failed token request could not be audited"
            )
            return
        except (AuditError, TenancyError) as exc:
            _LOGGER.error(
                "a refused grant could not be recorded; the connection stays as it was",
                extra=_log_fields(record, exc),
            )
            return
        self._audit.flush_after_commit(record.org_id, now=now)

    def _record_entry(
        self, record: ConnectionRecord, entry: AuditEntry, *, now: datetime, failure: str
    ) -> None:
        """Record an entry that has no change to join (an outcome: a failed token request, a
        revocation) and append it; an audit failure is logged as `failure`, not raised, so the
        outcome stays what the caller reports."""
        try:
            self._audit.record(record.org_id, entry, now=now)
        except AuditError as exc:
            # Which outcome went unrecorded: the action and its outcome, never its details.
            extra = {**_log_fields(record, exc), "action": entry.action, "outcome": entry.outcome}
            _LOGGER.error(failure, extra=extra)
            return
        self._audit.flush_after_commit(record.org_id, now=now)

    def _record_unstored_use(self, record: ConnectionRecord, use: _Use, *, now: datetime) -> None:
        """Record a successful token request whose token was not stored (the connection changed
        meanwhile, or the store failed): the credential was used all the same."""
        try:
            self._table.transact(record.org_id, list(use.audited), now=now)
        except TenancyError as exc:
            _LOGGER.error("a token request could not be audited", extra=_log_fields(record, exc))
            return
        self._audit.flush_after_commit(record.org_id, now=now)

    def _use_entry(
        self,
        record: ConnectionRecord,
        *,
        request_id: str,
        actor: str,
        outcome: Literal["success", "failure"],
        details: dict[str, Any],
    ) -> AuditEntry:
        """The credential.use entry of one use of the connection's stored credentials."""
        return AuditEntry(
            actor=actor,
            action=AuditAction.CREDENTIAL_USE.value,
            request_id=request_id,
            outcome=outcome,
            target_kind="connection",
            target_id=record.connection_id,
            details={"method": record.auth_method, **details},
        )


@dataclass(slots=True)
class _Lease:
    """The token lease a caller holds: its holder id, its expiry as stored (epoch seconds, moved
    on by an extension), and the caller's clock (`now` advanced by the time spent since)."""

    holder: str
    expires_at: int
    now: Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class _Use:
    """A token the provider issued, and the prepared writes that record its request."""

    token: TokenGrant
    audited: Sequence[Operation]


def _use_error(exc: Exception) -> str:
    if isinstance(exc, ProviderRefused):  # InvalidGrant among them
        return exc.error
    if isinstance(exc, TokenUnavailable):
        return "unavailable"
    return "unexpected"


def _log_fields(record: ConnectionRecord, exc: Exception) -> dict[str, str]:
    return {
        "org_id": record.org_id,
        "connection_id": record.connection_id,
        "error_type": type(exc).__name__,
    }


def _fingerprint(token: TokenGrant) -> str:
    # A short hash of a random token of at least 128 bits identifies it and reveals nothing.
    digest = hashlib.sha256((token.refresh_token or "").encode("utf-8")).hexdigest()
    return "sha256:" + digest[:16]


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")
