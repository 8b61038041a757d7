"""The token service against the authorization server double: cache, refresh once, failures."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.client
import botocore.exceptions
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from strongroom.audit import AuditUnavailable
from strongroom.aws_limits import PROMPT_CALLS, worst_case_seconds
from strongroom.oauth import (
    AccessToken,
    ConnectionUnusable,
    LeaseTimeout,
    NeedsReauthorization,
    TokenService,
    TokenUnavailable,
)
from strongroom.oauth.tokens import (
    LEASE_KIND,
    LEASE_MARGIN_SECONDS,
    REFRESH_STORE_SECONDS,
    REQUEST_SECONDS,
)
from strongroom.tenancy import ItemNotFound, StoreUnavailable
from tests.support.events import load_event
from tests.unit.credential_store.conftest import LambdaContext
from tests.unit.oauth_flow.conftest import OAuthWorld, rebuild_tokens


def _tokens(world: OAuthWorld) -> TokenService:
    tokens: TokenService = world.oauth_callback.services().tokens
    return tokens


def _get(
    world: OAuthWorld, org: str, connection_id: str, *, at: datetime | None = None
) -> AccessToken:
    return _tokens(world).access_token(
        org, connection_id, now=at or datetime.now(UTC), request_id="req-1", actor="system:test"
    )


def _connected(world: OAuthWorld) -> tuple[str, str, str]:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    return org, connection_id, client_id


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        calls[f"{self.meta.service_model.service_name}:{operation}"] += 1
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", counting)
    return calls


def test_a_cached_token_costs_one_dynamodb_read_and_no_kms_call(
    world: OAuthWorld, aws_calls: Counter[str]
) -> None:
    org, connection_id, _ = _connected(world)
    first = _get(world, org, connection_id)  # stored by the callback's code exchange
    aws_calls.clear()
    again = _get(world, org, connection_id)
    assert again.value == first.value
    assert dict(aws_calls) == {"dynamodb:GetItem": 1}
    assert world.server.counts()["grant_refresh_token"] == 0
    assert "Bearer" in repr(again)
    assert again.value not in repr(again)


def test_a_token_with_a_minute_or_less_left_is_refreshed_with_rotation(world: OAuthWorld) -> None:
    org, connection_id, client_id = _connected(world)
    [old_refresh] = world.server.current_refresh_tokens(client_id)
    first = _get(world, org, connection_id)
    assert first.expires_at is not None
    near_expiry = datetime.fromtimestamp(first.expires_at - 60, UTC)
    renewed = _get(world, org, connection_id, at=near_expiry)
    assert renewed.value != first.value
    assert world.server.counts()["grant_refresh_token"] == 1
    assert world.server.is_active(renewed.value)
    assert not world.server.is_active(old_refresh)
    # The rotated refresh token was stored: the next refresh works too.
    later = datetime.fromtimestamp((renewed.expires_at or 0) - 30, UTC)
    assert _get(world, org, connection_id, at=later).value != renewed.value
    assert world.server.counts()["grant_refresh_token"] == 2


def test_twenty_concurrent_callers_cause_exactly_one_refresh(
    world: OAuthWorld, atomic_aws: None
) -> None:
    org, connection_id, _ = _connected(world)
    first = _get(world, org, connection_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    world.server.set_token_delay(0.3)  # the refresh is slow: everyone piles up on the lease
    results: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def caller() -> None:
        barrier.wait()
        try:
            results.append(_get(world, org, connection_id, at=near_expiry).value)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert world.server.counts()["grant_refresh_token"] == 1
    assert len(results) == 20
    assert len(set(results)) == 1
    assert results[0] != first.value
    assert world.server.is_active(results[0])


def test_invalid_grant_marks_the_connection_needs_reauth_and_audits_it(world: OAuthWorld) -> None:
    org, connection_id, client_id = _connected(world)
    first = _get(world, org, connection_id)
    world.server.invalidate_grants(client_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    with pytest.raises(NeedsReauthorization):
        _get(world, org, connection_id, at=near_expiry)
    assert world.connection(org, connection_id).body["status"] == "needs_reauth"
    page = world.oauth_callback.services().audit.list_events(org, now=near_expiry)
    actions = [(e.action, e.outcome) for e in page.events]
    assert ("connection.needs_reauth", "failure") in actions
    assert ("credential.use", "failure") in actions
    requests_before = world.server.counts()["token_requests"]
    with pytest.raises(NeedsReauthorization):
        _get(world, org, connection_id, at=near_expiry)
    assert world.server.counts()["token_requests"] == requests_before
    # Authorizing again brings it back.
    assert world.connect(org, connection_id)["result"] == "connected"
    assert world.connection(org, connection_id).body["status"] == "active"


@pytest.mark.parametrize(
    "fault",
    ["status_500", "html", "oversized", "hang", "odd_expires_in", "long_expires_in", "deep_json"],
)
def test_a_provider_outage_is_not_reported_as_bad_credentials(
    world: OAuthWorld, fault: str
) -> None:
    org, connection_id, _ = _connected(world)
    rebuild_tokens(world, read_timeout=0.5, total_timeout=2.0)
    first = _get(world, org, connection_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    world.server.fail_next_token_requests(1, fault, hang_seconds=3.0)  # type: ignore[arg-type]
    with pytest.raises(TokenUnavailable):
        _get(world, org, connection_id, at=near_expiry)
    assert world.connection(org, connection_id).body["status"] == "active"
    # The grant was never spent: the next attempt refreshes.
    assert _get(world, org, connection_id, at=near_expiry).value != first.value


def test_a_held_lease_times_out_without_blaming_the_credentials(world: OAuthWorld) -> None:
    org, connection_id, _ = _connected(world)
    first = _get(world, org, connection_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    built = world.oauth_callback.services()
    built.table.create(
        org,
        LEASE_KIND,
        connection_id,
        attributes={"holder": "someone"},
        ttl=timedelta(seconds=45),
        now=near_expiry,
    )
    impatient = TokenService(
        table=built.table,
        keyrings=built.keyrings,
        outbound=built.tokens._outbound,
        audit=built.audit,
        dev_hosts=world.settings.dev_allow_hosts,
        wait_seconds=0.2,
    )
    with pytest.raises(LeaseTimeout):
        impatient.access_token(org, connection_id, now=near_expiry, request_id="r")
    assert world.connection(org, connection_id).body["status"] == "active"
    assert world.server.counts()["grant_refresh_token"] == 0
    # A holder that crashed frees the lease when its TTL passes.
    after_lease = near_expiry + timedelta(seconds=46)
    assert impatient.access_token(org, connection_id, now=after_lease, request_id="r").value


class _SlowAfterLease:
    """A table whose clock runs `seconds` on (a slow KMS, a slow audit write) just after the
    token lease is taken, then runs `meanwhile`; it records the lease's updates."""

    def __init__(self, real: Any, clock: list[float], seconds: float) -> None:
        self._real = real
        self._clock = clock
        self._seconds = seconds
        self.meanwhile: Callable[[datetime], None] = lambda _: None
        self.lease_updates: list[datetime] = []
        self.lease_ttls: list[timedelta] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def create(self, org_id: str, kind: str, item_id: str | None = None, **kwargs: Any) -> Any:
        created = self._real.create(org_id, kind, item_id, **kwargs)
        if kind == LEASE_KIND:
            self._clock[0] += self._seconds
            self.meanwhile(kwargs["now"] + timedelta(seconds=self._seconds))
        return created

    def update(self, org_id: str, kind: str, item_id: str | None = None, **kwargs: Any) -> Any:
        if kind == LEASE_KIND:
            self.lease_updates.append(kwargs["now"])
            self.lease_ttls.append(kwargs["ttl"])
        return self._real.update(org_id, kind, item_id, **kwargs)


def _slow_after_lease(world: OAuthWorld, seconds: float) -> tuple[TokenService, _SlowAfterLease]:
    built = world.oauth_callback.services()
    clock = [0.0]
    table = _SlowAfterLease(built.table, clock, seconds)
    tokens = TokenService(
        table=table,  # type: ignore[arg-type]
        keyrings=built.keyrings,
        outbound=built.tokens._outbound,
        audit=built.audit,
        dev_hosts=world.settings.dev_allow_hosts,
        clock=lambda: clock[0],
        sleep=lambda _: None,
    )
    return tokens, table


def test_a_lease_is_extended_to_outlast_the_refresh_and_its_store_before_it_is_sent(
    world: OAuthWorld,
) -> None:
    org, connection_id, _ = _connected(world)
    near_expiry = _due_for_refresh(world, org, connection_id)
    # 15 s gone by the time the refresh would be sent. A fresh lease (45 s) covers a token
    # request, not the store of its answer at DynamoDB's slowest: extended first, at that
    # moment, to the request, the store and a margin; then the refresh goes out.
    tokens, table = _slow_after_lease(world, 15)
    renewed = tokens.access_token(org, connection_id, now=near_expiry, request_id="r")
    assert table.lease_updates == [near_expiry + timedelta(seconds=15)]
    (ttl,) = table.lease_ttls
    needed = REQUEST_SECONDS + REFRESH_STORE_SECONDS + LEASE_MARGIN_SECONDS
    assert needed <= ttl.total_seconds() <= needed + 2 * LEASE_MARGIN_SECONDS
    # At DynamoDB's slowest (timeouts and retries), each store attempt (KMS, the transaction's
    # three runs, a read back: five calls) fits the budget.
    assert 3 * 5 * worst_case_seconds(PROMPT_CALLS) <= REFRESH_STORE_SECONDS
    assert renewed.value
    assert world.server.counts()["grant_refresh_token"] == 1
    # Released once done, like any lease.
    with pytest.raises(ItemNotFound):
        table.get(org, LEASE_KIND, connection_id, now=near_expiry + timedelta(seconds=15))


def test_a_refresh_is_sent_once_even_when_the_provider_asks_for_a_retry(
    world: OAuthWorld,
) -> None:
    # A retry's wait (Retry-After) could outlast the lease checked for the first attempt: a
    # second worker could then refresh the same token while ours goes out again.
    org, connection_id, _ = _connected(world)
    near_expiry = _due_for_refresh(world, org, connection_id)
    before = world.server.counts()["grant_refresh_token"]
    world.server.fail_next_token_requests(1, "status_429")
    with pytest.raises(TokenUnavailable):
        _get(world, org, connection_id, at=near_expiry)
    assert world.server.counts()["grant_refresh_token"] == before + 1
    assert world.connection(org, connection_id).body["status"] == "active"
    # The refresh token was not spent: the next caller, under a new lease, refreshes.
    assert _get(world, org, connection_id, at=near_expiry).value


def test_a_lease_extension_whose_answer_was_slow_is_measured_again(world: OAuthWorld) -> None:
    org, connection_id, _ = _connected(world)
    near_expiry = _due_for_refresh(world, org, connection_id)
    tokens, table = _slow_after_lease(world, 15)
    answered = table.update

    def slow_answer(org_id: str, kind: str, item_id: str | None = None, **kwargs: Any) -> Any:
        kept = answered(org_id, kind, item_id, **kwargs)
        if kind == LEASE_KIND:
            table._clock[0] += 15  # the extension's answer took 15 s: 30 s of it left
        return kept

    table.update = slow_answer  # type: ignore[method-assign]
    before = world.server.counts()["grant_refresh_token"]
    with pytest.raises(LeaseTimeout):
        tokens.access_token(org, connection_id, now=near_expiry, request_id="r")
    assert world.server.counts()["grant_refresh_token"] == before
    assert world.connection(org, connection_id).body["status"] == "active"


@pytest.mark.parametrize("lost", ["expired", "taken"])
def test_a_lease_that_cannot_be_renewed_before_the_refresh_sends_nothing(
    world: OAuthWorld, lost: str
) -> None:
    # A refresh token is single-use: a POST still in flight when our lease ends could race a
    # second worker's refresh of the same token, and the provider's reuse detection would
    # revoke the whole grant.
    org, connection_id, client_id = _connected(world)
    near_expiry = _due_for_refresh(world, org, connection_id)
    tokens, table = _slow_after_lease(world, 46 if lost == "expired" else 40)
    if lost == "taken":
        # Our lease was lost meanwhile (its TTL passed) and another worker holds one now.
        def take(at: datetime) -> None:
            table.put(
                org,
                LEASE_KIND,
                connection_id,
                attributes={"holder": "another worker"},
                ttl=timedelta(seconds=45),
                now=at,
            )

        table.meanwhile = take
    [refresh_token] = world.server.current_refresh_tokens(client_id)
    requests_before = world.server.counts()["token_requests"]
    with pytest.raises(LeaseTimeout):
        tokens.access_token(org, connection_id, now=near_expiry, request_id="r")
    assert len(table.lease_updates) == 1
    assert world.server.counts()["token_requests"] == requests_before
    assert world.server.current_refresh_tokens(client_id) == [refresh_token]
    assert world.connection(org, connection_id).body["status"] == "active"
    if lost == "taken":  # the other worker's lease is left alone
        after = near_expiry + timedelta(seconds=40)
        lease = table.get(org, LEASE_KIND, connection_id, now=after)
        assert lease.attributes["holder"] == "another worker"


def _client_connection(world: OAuthWorld, org: str, auth: dict[str, Any]) -> str:
    reply = world.call(
        "POST",
        f"/orgs/{org}/connections",
        sub="bob",
        route="/orgs/{org_id}/connections",
        path_parameters={"org_id": org},
        body={
            "name": "Machine client",
            "provider": "oauth2",
            "token_endpoint": world.server.token_endpoint,
            "revocation_endpoint": world.server.revocation_endpoint,
            "scopes": ["api.read"],
            "auth": auth,
            "schedule": "rate(1 day)",
        },
    )
    assert reply.status == 201, reply.body
    return str(reply.body["connection_id"])


class _Interleaving:
    """An outbound client that runs `meanwhile` once, just before its first POST is sent."""

    def __init__(self, real: Any, meanwhile: Any) -> None:
        self._real = real
        self._meanwhile = meanwhile

    def post(self, url: str, **kwargs: Any) -> Any:
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return self._real.post(url, **kwargs)


def test_a_caller_whose_lease_ran_out_never_overwrites_a_newer_token(world: OAuthWorld) -> None:
    org = world.new_org()
    secret = "CANARY" + secrets.token_hex(12)
    world.server.register_client("machine", redirect_uris=[], secret=secret)
    connection_id = _client_connection(
        world,
        org,
        {"method": "client_credentials", "client_id": "machine", "client_secret": secret},
    )
    built = world.oauth_callback.services()
    now = datetime.now(UTC)
    newer: list[AccessToken] = []
    # While the slow caller's request is on the wire, its lease runs out and another caller
    # takes the lease and stores a token.
    other = built.tokens
    slow = TokenService(
        table=built.table,
        keyrings=built.keyrings,
        outbound=_Interleaving(
            built.tokens._outbound,
            lambda: newer.append(
                other.access_token(
                    org, connection_id, now=now + timedelta(seconds=46), request_id="b"
                )
            ),
        ),
        audit=built.audit,
        dev_hosts=world.settings.dev_allow_hosts,
    )
    late = slow.access_token(org, connection_id, now=now, request_id="a")
    assert world.server.counts()["grant_client_credentials"] == 2
    assert late.value != newer[0].value
    stored = other.access_token(org, connection_id, now=now + timedelta(seconds=47), request_id="c")
    assert stored.value == newer[0].value
    assert world.server.counts()["grant_client_credentials"] == 2


def test_private_key_jwt_assertions_verify_at_the_server(world: OAuthWorld) -> None:
    org = world.new_org()
    key = ec.generate_private_key(ec.SECP256R1())
    public_jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public_jwk.update(kid="key-2026-11", use="sig", alg="ES256")
    world.server.register_client(
        "signer", redirect_uris=[], jwks={"keys": [public_jwk]}, auth_methods=["private_key_jwt"]
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    connection_id = _client_connection(
        world,
        org,
        {
            "method": "private_key_jwt",
            "client_id": "signer",
            "private_key": pem,
            "key_id": "key-2026-11",
        },
    )
    first = _get(world, org, connection_id)
    # New credentials (the same key, as after a re-upload) drop the cached token.
    reply = world.call(
        "PUT",
        f"/orgs/{org}/connections/{connection_id}/credentials",
        sub="bob",
        route="/orgs/{org_id}/connections/{connection_id}/credentials",
        path_parameters={"org_id": org, "connection_id": connection_id},
        body={
            "auth": {
                "method": "private_key_jwt",
                "client_id": "signer",
                "private_key": pem,
                "key_id": "key-2026-11",
            }
        },
    )
    assert reply.status == 200, reply.body
    # The token it dropped was revoked, the client authenticating as it does for tokens.
    assert not world.server.is_active(first.value)
    second = _get(world, org, connection_id)
    assert first.value != second.value
    assert world.server.is_active(second.value)
    seen = world.server.assertions_seen
    assert len(seen) == 3  # the first token, its revocation, the second token
    assert all(a.accepted for a in seen)
    assert {a.header["kid"] for a in seen} == {"key-2026-11"}
    assert len({a.claims["jti"] for a in seen}) == 3
    assert all(0 < a.claims["exp"] - a.claims["iat"] <= 300 for a in seen)


def test_a_wrong_client_secret_is_refused_and_audited(world: OAuthWorld) -> None:
    org = world.new_org()
    world.server.register_client("machine", redirect_uris=[], secret="the-right-one")
    connection_id = _client_connection(
        world,
        org,
        {
            "method": "client_credentials",
            "client_id": "machine",
            "client_secret": "CANARYwrong0000",
        },
    )
    from strongroom.oauth import ProviderRefused

    with pytest.raises(ProviderRefused) as caught:
        _get(world, org, connection_id)
    assert caught.value.error == "invalid_client"
    page = world.oauth_callback.services().audit.list_events(org, now=datetime.now(UTC))
    assert ("credential.use", "failure") in [(e.action, e.outcome) for e in page.events]
    assert world.connection(org, connection_id).body["status"] == "active"


def _delete(world: OAuthWorld, org: str, connection_id: str) -> int:
    return world.call(
        "DELETE",
        f"/orgs/{org}/connections/{connection_id}",
        sub="bob",
        route="/orgs/{org_id}/connections/{connection_id}",
        path_parameters={"org_id": org, "connection_id": connection_id},
    ).status


def test_delete_revokes_the_refresh_token_at_the_provider(world: OAuthWorld) -> None:
    org, connection_id, client_id = _connected(world)
    [refresh_token] = world.server.current_refresh_tokens(client_id)
    assert _delete(world, org, connection_id) == 204
    assert world.server.counts()["revocations"] == 1
    assert not world.server.is_active(refresh_token)
    page = world.oauth_callback.services().audit.list_events(org, now=datetime.now(UTC))
    assert ("credential.revoke", "success") in [(e.action, e.outcome) for e in page.events]


def test_a_grant_the_provider_would_not_revoke_at_deletion_is_revoked_by_the_sweep(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection_id, client_id, secret = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    [refresh_token] = world.server.current_refresh_tokens(client_id)
    redirect = [world.settings.oauth_redirect_uri]
    # The provider refuses the client for a while (its secret changed there, then back).
    world.server.register_client(client_id, redirect_uris=redirect, secret="not-" + secret)
    assert _delete(world, org, connection_id) == 204
    assert world.server.is_active(refresh_token)
    world.server.register_client(client_id, redirect_uris=redirect, secret=secret)

    # The sweep opens the grant from the debt the delete left (sealed as the connection's) and
    # revokes it as the client it was issued to.
    later = datetime.now(UTC) + _revocations_due_after()
    monkeypatch.setattr(world.credential_store, "_now", lambda: later)
    report = world.credential_store.lambda_handler(
        load_event("credential_store/finish_stalled_deletions"), LambdaContext()
    )
    assert report["revocations"] == {"attempts": 1, "revoked": 1, "gave_up": 0}
    assert not world.server.is_active(refresh_token)
    page = world.oauth_callback.services().audit.list_events(org, now=datetime.now(UTC))
    revoked = [
        (e.actor, e.outcome, e.details)
        for e in reversed(page.events)
        if e.action == "credential.revoke"
    ]
    assert revoked == [
        ("bob", "failure", {"revocation": "failed", "retry_scheduled": True}),
        ("system:revocation", "success", {"revocation": "revoked", "attempt": 2}),
    ]


def _revocations_due_after() -> timedelta:
    from credential_store import revocations

    return revocations.MARKS.grace + timedelta(seconds=1)


def test_a_delete_that_loses_a_race_leaves_the_grant_live(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection_id, client_id = _connected(world)
    [refresh_token] = world.server.current_refresh_tokens(client_id)
    table = world.credential_store.services().table
    transact = table.transact

    def after_a_concurrent_change(*args: Any, **kwargs: Any) -> Any:
        # Another request changes the connection between the delete's read and its write.
        table.update(org, "CONN", connection_id, now=datetime.now(UTC), changes={"version": 99})
        return transact(*args, **kwargs)

    monkeypatch.setattr(table, "transact", after_a_concurrent_change)
    assert _delete(world, org, connection_id) == 409
    assert world.connection(org, connection_id).status == 200
    assert world.server.counts()["revocations"] == 0
    assert world.server.is_active(refresh_token)


def test_a_failed_revocation_still_deletes_and_is_audited(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    org, connection_id, client_id = _connected(world)
    built = world.credential_store.services()
    table = built.table
    table.update(
        org,
        "CONN",
        connection_id,
        now=datetime.now(UTC),
        changes={"revocation_endpoint": f"http://{closed}/revoke"},
    )
    allowed = world.settings.dev_allow_hosts | {("127.0.0.1", int(closed.rsplit(":", 1)[1]))}
    world.settings = world.settings.model_copy(update={"dev_allow_hosts": allowed})
    rebuild_tokens(world, read_timeout=0.5, total_timeout=2.0)
    assert _delete(world, org, connection_id) == 204
    assert world.connection(org, connection_id).status == 404
    page = world.oauth_callback.services().audit.list_events(org, now=datetime.now(UTC))
    actions = [(e.action, e.outcome) for e in page.events]
    assert ("credential.revoke", "failure") in actions
    assert ("connection.delete", "success") in actions
    assert world.server.current_refresh_tokens(client_id)  # still live at the provider


def _audit_bucket_down(tokens: TokenService) -> Callable[[], None]:
    """The audit bucket refuses every write until the returned function is called."""

    def refuse(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "ServiceUnavailable"}}, "PutObject"
        )

    events = tokens._audit._objects._s3.meta.events
    events.register("before-parameter-build.s3.PutObject", refuse, unique_id="audit-down")
    return lambda: events.unregister("before-parameter-build.s3.PutObject", unique_id="audit-down")


def test_a_refresh_during_an_audit_outage_keeps_the_new_grant_and_audits_it_later(
    world: OAuthWorld,
) -> None:
    org, connection_id, _ = _connected(world)
    first = _get(world, org, connection_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    tokens = _tokens(world)
    back_up = _audit_bucket_down(tokens)
    # The provider rotated the refresh token: losing the new one would end the connection.
    renewed = _get(world, org, connection_id, at=near_expiry)
    assert renewed.value != first.value
    assert world.server.is_active(renewed.value)
    back_up()
    assert tokens._audit.flush(org, now=near_expiry) >= 1
    page = tokens._audit.list_events(org, now=near_expiry)
    uses = [(e.outcome, e.details["grant"]) for e in page.events if e.action == "credential.use"]
    assert uses.count(("success", "refresh_token")) == 1
    # The stored grant is the provider's current one: the next refresh succeeds.
    later = datetime.fromtimestamp((renewed.expires_at or 0) - 30, UTC)
    again = _get(world, org, connection_id, at=later)
    assert world.server.is_active(again.value)
    assert world.connection(org, connection_id).body["status"] == "active"


def test_a_refused_grant_during_an_audit_outage_still_marks_the_connection_and_audits_it(
    world: OAuthWorld,
) -> None:
    org, connection_id, client_id = _connected(world)
    first = _get(world, org, connection_id)
    world.server.invalidate_grants(client_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    tokens = _tokens(world)
    back_up = _audit_bucket_down(tokens)
    with pytest.raises(NeedsReauthorization):
        _get(world, org, connection_id, at=near_expiry)
    assert world.connection(org, connection_id).body["status"] == "needs_reauth"
    back_up()
    tokens._audit.flush(org, now=near_expiry)
    page = tokens._audit.list_events(org, now=near_expiry)
    actions = [(e.action, e.outcome) for e in page.events]
    assert actions.count(("connection.needs_reauth", "failure")) == 1
    assert actions.count(("credential.use", "failure")) == 1


def test_a_refresh_whose_use_cannot_be_recorded_sends_no_credential(world: OAuthWorld) -> None:
    org, connection_id, _ = _connected(world)
    first = _get(world, org, connection_id)
    near_expiry = datetime.fromtimestamp((first.expires_at or 0) - 30, UTC)
    tokens = _tokens(world)

    def refuse_marks(params: dict[str, Any], **_: Any) -> None:
        if params["Item"]["pk"]["S"].startswith("AUDIT_SWEEP#"):
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ServiceUnavailable"}}, "PutItem"
            )

    dynamodb = tokens._audit._platform._store.client
    dynamodb.meta.events.register("before-parameter-build.dynamodb.PutItem", refuse_marks)
    requests_before = world.server.counts()["token_requests"]
    with pytest.raises(AuditUnavailable):
        _get(world, org, connection_id, at=near_expiry)
    assert world.server.counts()["token_requests"] == requests_before
    dynamodb.meta.events.unregister("before-parameter-build.dynamodb.PutItem", refuse_marks)
    # Nothing was spent: the grant still refreshes.
    assert _get(world, org, connection_id, at=near_expiry).value != first.value


class _AfterAnswer:
    """An outbound client that runs `meanwhile` once, just after its first POST is answered:
    the provider has rotated the refresh token, and our store has not happened yet."""

    def __init__(self, real: Any, meanwhile: Callable[[], None]) -> None:
        self._real = real
        self._meanwhile: Callable[[], None] | None = meanwhile

    def post(self, url: str, **kwargs: Any) -> Any:
        answer = self._real.post(url, **kwargs)
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return answer


def _refreshing(world: OAuthWorld, meanwhile: Callable[[], None]) -> TokenService:
    built = world.oauth_callback.services()
    return TokenService(
        table=built.table,
        keyrings=built.keyrings,
        outbound=_AfterAnswer(built.tokens._outbound, meanwhile),
        audit=built.audit,
        dev_hosts=world.settings.dev_allow_hosts,
        sleep=lambda _: None,
    )


def _put_credentials(world: OAuthWorld, org: str, connection_id: str, auth: dict[str, Any]) -> None:
    reply = world.call(
        "PUT",
        f"/orgs/{org}/connections/{connection_id}/credentials",
        sub="bob",
        route="/orgs/{org_id}/connections/{connection_id}/credentials",
        path_parameters={"org_id": org, "connection_id": connection_id},
        body={"auth": auth},
    )
    assert reply.status == 200, reply.body


def _due_for_refresh(world: OAuthWorld, org: str, connection_id: str) -> datetime:
    first = _get(world, org, connection_id)
    assert first.expires_at is not None
    return datetime.fromtimestamp(first.expires_at - 30, UTC)


def test_a_refresh_racing_a_rotation_of_the_same_clients_secret_keeps_the_rotated_grant(
    world: OAuthWorld,
) -> None:
    org = world.new_org()
    connection_id, client_id, secret = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    near = _due_for_refresh(world, org, connection_id)
    [spent] = world.server.current_refresh_tokens(client_id)
    # The admin rotates the client's secret (same client) while the refresh is answered: the
    # connection keeps its grant, and its generation moves.
    rotation = {"method": "authorization_code", "client_id": client_id, "client_secret": secret}
    refreshing = _refreshing(world, lambda: _put_credentials(world, org, connection_id, rotation))
    refreshing.access_token(org, connection_id, now=near, request_id="r1")
    [rotated] = world.server.current_refresh_tokens(client_id)
    assert rotated != spent
    assert not world.server.is_active(spent)
    # The rotated refresh token was stored on top of the rotation: the next refresh uses it.
    later = near + timedelta(hours=2)
    assert _get(world, org, connection_id, at=later).value
    assert world.server.counts()["refresh_reuse_detected"] == 0
    assert world.connection(org, connection_id).body["status"] == "active"


def test_a_refresh_racing_a_deletion_revokes_the_token_nobody_holds(world: OAuthWorld) -> None:
    org, connection_id, client_id = _connected(world)
    near = _due_for_refresh(world, org, connection_id)
    refreshing = _refreshing(world, lambda: _delete_ok(world, org, connection_id))
    with pytest.raises(ConnectionUnusable):
        refreshing.access_token(org, connection_id, now=near, request_id="r1")
    # The deletion revoked what it held; the rotated token it never saw is revoked too.
    assert world.server.current_refresh_tokens(client_id) == []


def _delete_ok(world: OAuthWorld, org: str, connection_id: str) -> None:
    assert _delete(world, org, connection_id) == 204


def test_a_refreshed_token_whose_store_fails_once_is_stored_by_the_next_try(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection_id, _ = _connected(world)
    near = _due_for_refresh(world, org, connection_id)
    built = world.oauth_callback.services()
    transact = built.table.transact
    failures = [StoreUnavailable("throttled (not committed)")]

    def once_failing(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return transact(*args, **kwargs)

    monkeypatch.setattr(built.table, "transact", once_failing)
    refreshing = _refreshing(world, lambda: None)
    refreshing.access_token(org, connection_id, now=near, request_id="r1")
    monkeypatch.setattr(built.table, "transact", transact)
    assert _get(world, org, connection_id, at=near + timedelta(hours=2)).value
    assert world.server.counts()["refresh_reuse_detected"] == 0


def test_a_refreshed_token_that_cannot_be_stored_is_revoked_not_left_live(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org, connection_id, client_id = _connected(world)
    near = _due_for_refresh(world, org, connection_id)
    built = world.oauth_callback.services()
    transact = built.table.transact

    def failing(org_id: str, operations: Any, *, now: datetime) -> Any:
        # The token's store fails throughout; recording what happened still works.
        if any(getattr(op, "kind", None) == "CONN" for op in operations):
            raise StoreUnavailable("DynamoDB is down (not committed)")
        return transact(org_id, operations, now=now)

    monkeypatch.setattr(built.table, "transact", failing)
    with pytest.raises(StoreUnavailable):
        _refreshing(world, lambda: None).access_token(org, connection_id, now=near, request_id="r1")
    monkeypatch.setattr(built.table, "transact", transact)
    assert world.server.current_refresh_tokens(client_id) == []  # the new one: revoked
    page = built.audit
    page.flush(org, now=datetime.now(UTC))
    events = page.list_events(org, now=datetime.now(UTC)).events
    assert ("credential.revoke", "success", "grant_not_stored") in [
        (e.action, e.outcome, e.details.get("reason")) for e in events
    ]
