"""What the authorization server remembers: clients, codes, grants, tokens, assertion ids.

One lock guards everything, and every check-then-change (spending a code, rotating a refresh
token, spending a `jti`) happens inside one critical section, so concurrent requests see the
same outcomes a real server's transactions give: of twenty refreshes with one token, exactly
one rotates it.

A grant is the family of tokens descended from one authorization code (or one refresh chain):
revoking it, by reuse detection, /revoke of its refresh token or `invalidate_grants`, ends
every access and refresh token of the family. Tokens are looked up by their SHA-256, as a
server that never stores bearer tokens in the clear would.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field

from strongroom_local.authorization_server.clients import RegisteredClient
from strongroom_local.authorization_server.exceptions import InvalidGrant, InvalidScope
from strongroom_local.authorization_server.protocol import verifier_matches

AUTHORIZATION_CODE_TTL_SECONDS = 60
# Every counter `counts()` reports, zero until something happens.
COUNTER_NAMES = (
    "authorize",
    "authorize_errors",
    "codes_issued",
    "token_requests",
    "grant_authorization_code",
    "grant_refresh_token",
    "grant_client_credentials",
    "tokens_issued",
    "refreshes_succeeded",
    "code_reuse_detected",
    "refresh_reuse_detected",
    "revocations",
    "client_auth_failures",
    "invalid_grant",
    "faults_injected",
)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)  # 256 bits


@dataclass(frozen=True)
class TokenSet:
    """What a successful token request returns."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: tuple[str, ...]
    refresh_token: str | None = field(default=None, repr=False)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: tuple[str, ...]
    expires_at: float
    spent: bool = False
    grant_id: str | None = None


@dataclass
class _Grant:
    client_id: str
    scope: tuple[str, ...]
    refresh_token: str | None = field(default=None, repr=False)
    active: bool = True


@dataclass
class _AccessToken:
    client_id: str
    grant_id: str | None
    expires_at: float
    revoked: bool = False


@dataclass
class _RefreshToken:
    client_id: str
    grant_id: str


class Ledger:
    """The server's state, behind one lock; every method takes the time as `now`."""

    def __init__(self, *, access_token_ttl: int) -> None:
        self._lock = threading.Lock()
        self._access_token_ttl = access_token_ttl
        self._clients: dict[str, RegisteredClient] = {}
        self._codes: dict[str, _Code] = {}
        self._grants: dict[str, _Grant] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._refresh_tokens: dict[str, _RefreshToken] = {}
        self._spent_jtis: dict[tuple[str, str], float] = {}
        self._counters: Counter[str] = Counter()

    # Counters

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {**dict.fromkeys(COUNTER_NAMES, 0), **self._counters}

    # Clients

    def register(self, client: RegisteredClient) -> None:
        with self._lock:
            self._clients[client.client_id] = client

    def client(self, client_id: str) -> RegisteredClient | None:
        with self._lock:
            return self._clients.get(client_id)

    def spend_jti(self, client_id: str, jti: str, *, expires_at: float, now: float) -> bool:
        """Record an assertion id; False when the client already used it (a replay).

        An id is remembered until its assertion expires; after that the assertion itself is
        refused for its `exp`, so forgetting the id cannot let a replay through.
        """
        with self._lock:
            self._spent_jtis = {k: exp for k, exp in self._spent_jtis.items() if exp > now}
            if (client_id, jti) in self._spent_jtis:
                return False
            self._spent_jtis[(client_id, jti)] = expires_at
            return True

    # Authorization codes

    def issue_code(
        self,
        *,
        client_id: str,
        redirect_uri: str,
        code_challenge: str,
        scope: tuple[str, ...],
        now: float,
    ) -> str:
        code = _new_token()
        with self._lock:
            self._codes[_digest(code)] = _Code(
                client_id=client_id,
                redirect_uri=redirect_uri,
                code_challenge=code_challenge,
                scope=scope,
                expires_at=now + AUTHORIZATION_CODE_TTL_SECONDS,
            )
            self._counters["codes_issued"] += 1
        return code

    def redeem_code(
        self, *, client_id: str, code: str, redirect_uri: str, code_verifier: str, now: float
    ) -> TokenSet:
        """Exchange a code once. Any attempt spends it; a second attempt revokes its grant."""
        with self._lock:
            record = self._codes.get(_digest(code))
            if record is None:
                raise InvalidGrant("unknown authorization code")
            if record.spent:
                # RFC 6749 §4.1.2: the code may have been stolen; revoke what it gave.
                if record.grant_id is not None:
                    self._revoke_grant(record.grant_id)
                self._counters["code_reuse_detected"] += 1
                raise InvalidGrant("authorization code already used")
            record.spent = True
            if record.client_id != client_id:
                raise InvalidGrant("authorization code was issued to another client")
            if now >= record.expires_at:
                raise InvalidGrant("authorization code expired")
            if redirect_uri != record.redirect_uri:
                raise InvalidGrant("redirect_uri differs from the authorization request")
            if not verifier_matches(code_verifier, record.code_challenge):
                raise InvalidGrant("code_verifier does not match the code_challenge")
            grant_id = secrets.token_hex(8)
            self._grants[grant_id] = _Grant(client_id=client_id, scope=record.scope)
            record.grant_id = grant_id
            return self._issue(client_id, grant_id, record.scope, now)

    # Refresh tokens

    def refresh(
        self, *, client_id: str, refresh_token: str, scope: tuple[str, ...] | None, now: float
    ) -> TokenSet:
        """Rotate: a new refresh token replaces the presented one, which is dead from now on.

        Presenting a rotated-away token of a live grant is reuse: the whole grant is revoked,
        as servers with refresh token reuse detection do (RFC 9700 §4.14.2).
        """
        with self._lock:
            record = self._refresh_tokens.get(_digest(refresh_token))
            if record is None or record.client_id != client_id:
                raise InvalidGrant("unknown refresh token")
            grant = self._grants[record.grant_id]
            if not grant.active:
                raise InvalidGrant("refresh token revoked")
            if grant.refresh_token != refresh_token:
                self._revoke_grant(record.grant_id)
                self._counters["refresh_reuse_detected"] += 1
                raise InvalidGrant("refresh token already used")
            granted = grant.scope
            if scope is not None:
                if not set(scope) <= set(grant.scope):
                    raise InvalidScope("scope exceeds the scope of the grant")
                granted = scope
            self._counters["refreshes_succeeded"] += 1
            return self._issue(client_id, record.grant_id, granted, now)

    # Client credentials

    def issue_client_credentials(
        self, *, client_id: str, scope: tuple[str, ...], now: float
    ) -> TokenSet:
        """An access token only: RFC 6749 §4.4.3, no refresh token for this grant."""
        with self._lock:
            return self._issue(client_id, None, scope, now)

    # Revocation

    def revoke(self, *, client_id: str, token: str) -> None:
        """RFC 7009: a refresh token ends its grant; an access token ends itself.

        A token of another client, or an unknown one, changes nothing (the caller answers 200
        either way, so a client cannot probe for other clients' tokens).
        """
        with self._lock:
            digest = _digest(token)
            refresh = self._refresh_tokens.get(digest)
            if refresh is not None and refresh.client_id == client_id:
                self._revoke_grant(refresh.grant_id)
            access = self._access_tokens.get(digest)
            if access is not None and access.client_id == client_id:
                access.revoked = True

    def invalidate_grants(self, client_id: str) -> None:
        with self._lock:
            for grant_id, grant in self._grants.items():
                if grant.client_id == client_id:
                    self._revoke_grant(grant_id)

    # Inspection

    def is_active(self, token: str, *, now: float) -> bool:
        with self._lock:
            digest = _digest(token)
            access = self._access_tokens.get(digest)
            if access is not None:
                return (
                    not access.revoked
                    and now < access.expires_at
                    and (access.grant_id is None or self._grants[access.grant_id].active)
                )
            refresh = self._refresh_tokens.get(digest)
            if refresh is not None:
                grant = self._grants[refresh.grant_id]
                return grant.active and grant.refresh_token == token
            return False

    def current_refresh_tokens(self, client_id: str) -> list[str]:
        with self._lock:
            return [
                grant.refresh_token
                for grant in self._grants.values()
                if grant.client_id == client_id and grant.active and grant.refresh_token
            ]

    # Inside the lock

    def _issue(
        self, client_id: str, grant_id: str | None, scope: tuple[str, ...], now: float
    ) -> TokenSet:
        access_token = _new_token()
        self._access_tokens[_digest(access_token)] = _AccessToken(
            client_id=client_id, grant_id=grant_id, expires_at=now + self._access_token_ttl
        )
        refresh_token = None
        if grant_id is not None:
            refresh_token = _new_token()
            self._refresh_tokens[_digest(refresh_token)] = _RefreshToken(client_id, grant_id)
            self._grants[grant_id].refresh_token = refresh_token
        self._counters["tokens_issued"] += 1
        return TokenSet(access_token, self._access_token_ttl, scope, refresh_token)

    def _revoke_grant(self, grant_id: str) -> None:
        grant = self._grants[grant_id]
        grant.active = False
        grant.refresh_token = None
