"""The authorization-code flow: authorize, the provider's redirect, the callback, and bad paths."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from tests.support.http import http_event
from tests.unit.credential_store.conftest import LambdaContext
from tests.unit.oauth_flow.conftest import OAuthWorld, rebuild_tokens


class _Outage:
    """AWS calls that fail (the endpoint unreachable) while `during()` lasts, for the calls whose
    parameters `hit` picks. Made before the world's clients are: they copy the session's hooks."""

    def __init__(self, world: OAuthWorld, event: str, hit: Callable[[Any], bool]) -> None:
        self._on = False

        def fail(params: dict[str, Any], **_: Any) -> None:
            if self._on and hit(params):
                raise EndpointConnectionError(endpoint_url="https://aws.invalid")

        assert world.aws is not None
        world.aws.events.register(event, fail)

    @contextlib.contextmanager
    def during(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False


def _audit_actions(world: OAuthWorld, org: str) -> list[tuple[str, str]]:
    built = world.oauth_callback.services()
    page = built.audit.list_events(org, now=datetime.now(UTC), limit=100)
    return [(event.action, event.outcome) for event in page.events]


def test_a_full_flow_connects_and_stores_the_grant_sealed(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"

    result = world.connect(org, connection_id)

    assert result == {"result": "connected", "connection_id": connection_id}
    counts = world.server.counts()
    assert counts["grant_authorization_code"] == 1
    body = world.connection(org, connection_id).body
    assert body["status"] == "active"
    records = {c["field"]: c for c in body["credentials"]}
    assert records["refresh_token"]["value"] == "[REDACTED]"
    [refresh_token] = world.server.current_refresh_tokens(client_id)
    assert refresh_token not in str(body)
    assert ("oauth.connect", "success") in _audit_actions(world, org)


def test_the_authorization_url_carries_pkce_state_scopes_and_the_exact_redirect_uri(
    world: OAuthWorld,
) -> None:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org, scopes=("a.read", "b.read"))
    reply = world.authorize(org, connection_id)
    assert reply.status == 200
    url = reply.body["authorization_url"]
    assert url.startswith(world.server.authorization_endpoint + "?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == client_id
    assert query["redirect_uri"] == world.settings.oauth_redirect_uri
    assert query["scope"] == "a.read b.read"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    prefix, _, secret = query["state"].partition(".")
    assert prefix == org
    assert len(secret) == 43  # 256 bits, base64url
    expires = datetime.fromisoformat(reply.body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=9) < expires - datetime.now(UTC) <= timedelta(minutes=10)
    assert _set_cookie(reply.cookies[0])[1] == {
        "path": "/",
        "max-age": "600",
        "secure": "",
        "httponly": "",
        "samesite": "Lax",
    }
    assert reply.headers["cache-control"] == "no-store"


def _set_cookie(header: str) -> tuple[str, dict[str, str]]:
    """A Set-Cookie header's cookie name and its attributes (lower-cased names, in a dict)."""
    pair, *attributes = (part.strip() for part in header.split(";"))
    name = pair.partition("=")[0]
    parsed = {key.lower(): value for key, _, value in (a.partition("=") for a in attributes)}
    assert len(parsed) == len(attributes)  # no attribute twice
    return name, parsed


def test_the_binding_cookie_is_host_prefixed_when_set_and_when_cleared(world: OAuthWorld) -> None:
    # RFC 6265bis `__Host-`: a browser keeps it only with Secure, Path=/ and no Domain, so no
    # sibling subdomain can plant or overwrite the binding of another user's flow.
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    started = world.authorize(org, connection_id)
    url = str(started.body["authorization_url"])
    cookie = started.cookies[0].split(";")[0]
    cleared = world.callback(world.browse(url), cookie)
    for header in (started.cookies[0], *cleared.cookies):
        name, attributes = _set_cookie(header)
        assert name == "__Host-strongroom_oauth_binding"
        assert "secure" in attributes
        assert attributes["path"] == "/"
        assert "domain" not in attributes
    assert len(cleared.cookies) == 1
    assert _set_cookie(cleared.cookies[0])[1]["max-age"] == "0"
    assert world.result(cleared)["result"] == "connected"


def test_a_replayed_state_fails_and_spends_no_second_code(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    assert world.result(world.callback(query, cookie))["result"] == "connected"
    again = world.result(world.callback(query, cookie))
    assert again == {"result": "invalid_state"}
    assert world.server.counts()["grant_authorization_code"] == 1


def test_an_expired_state_fails_and_stores_nothing(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    later = datetime.now(UTC) + timedelta(minutes=10, seconds=1)
    monkeypatch.setattr(world.oauth_callback, "_now", lambda: later)
    assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}
    assert world.server.counts()["grant_authorization_code"] == 0
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"


@pytest.mark.parametrize(
    "forge",
    [
        lambda org, state: f"{org}." + secrets.token_urlsafe(32)[:43],  # right shape, unknown
        lambda org, state: "org_" + "b" * 26 + "." + state.partition(".")[2],  # other org
        lambda org, state: state + "x",
        lambda org, state: state.partition(".")[2],
        lambda org, state: "",
    ],
)
def test_a_forged_state_fails_and_the_real_one_still_works(world: OAuthWorld, forge: Any) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    forged = {**query, "state": forge(org, query["state"])}
    assert world.result(world.callback(forged, cookie)) == {"result": "invalid_state"}
    assert world.result(world.callback(query, cookie))["result"] == "connected"


def test_another_users_state_fails_without_spending_it(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, bobs_cookie = world.start(org, connection_id, sub="bob")
    _, alices_cookie = world.start(org, connection_id, sub="alice")
    query = world.browse(url)
    for cookie in (alices_cookie, None, "__Host-strongroom_oauth_binding=" + "A" * 43):
        assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}
    assert world.server.counts()["grant_authorization_code"] == 0
    # The state was not spent by the wrong browser: its own user can still finish.
    assert world.result(world.callback(query, bobs_cookie))["result"] == "connected"


def test_a_binding_cookie_sent_twice_is_ambiguous_and_spends_nothing(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, bobs_cookie = world.start(org, connection_id, sub="bob")
    _, alices_cookie = world.start(org, connection_id, sub="alice")
    query = world.browse(url)
    # Whichever copy a lenient reader kept (first or last), two are refused.
    for cookies in ([alices_cookie, bobs_cookie], [bobs_cookie, alices_cookie]):
        assert world.result(world.callback(query, cookies)) == {"result": "invalid_state"}
    assert world.server.counts()["grant_authorization_code"] == 0
    assert world.result(world.callback(query, bobs_cookie))["result"] == "connected"


def test_a_callback_naming_another_issuer_is_refused_spends_the_state_and_stores_nothing(
    world: OAuthWorld,
) -> None:
    # RFC 9207: a response that names another authorization server than the one the flow was
    # sent to (a mix-up) is refused like a bad state, before its code goes anywhere.
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org, provider="okta")
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    assert query["iss"] == world.server.url
    for other in (world.server.url + "/", "https://attacker.example", ""):
        url, cookie = world.start(org, connection_id)
        query = world.browse(url)
        refused = world.result(world.callback({**query, "iss": other}, cookie))
        assert refused == {"result": "invalid_state"}
        # The state is spent: the same response with the right issuer cannot follow it.
        assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}
    assert world.server.counts()["grant_authorization_code"] == 0
    assert world.server.current_refresh_tokens(client_id) == []
    # Each refused attempt is audited (its state was the browser's own); the replays are not.
    built = world.oauth_callback.services()
    events = built.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    refusals = [e.details for e in events if (e.action, e.outcome) == ("oauth.connect", "failure")]
    assert refusals == [{"reason": "issuer_mismatch"}] * 3
    body = world.connection(org, connection_id).body
    assert body["status"] == "pending_authorization"
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}


@pytest.mark.parametrize("iss", ["the server's", "absent"])
def test_a_callback_with_the_issuer_or_none_connects(world: OAuthWorld, iss: str) -> None:
    # A provider without RFC 9207 sends no iss: nothing to compare, so the flow goes on.
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org, provider="okta")
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    assert query["iss"] == world.server.url
    if iss == "absent":
        del query["iss"]
    result = world.result(world.callback(query, cookie))
    assert result == {"result": "connected", "connection_id": connection_id}
    assert world.connection(org, connection_id).body["status"] == "active"


def test_an_oauth2_connection_names_no_issuer_so_any_iss_is_accepted(world: OAuthWorld) -> None:
    # Its settings hold endpoints only: an issuer to compare with is not known.
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = {**world.browse(url), "iss": "https://elsewhere.example"}
    assert world.result(world.callback(query, cookie))["result"] == "connected"


def test_access_denied_is_reported_audited_and_stores_nothing(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    world.server.deny_next_authorization()
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    assert query["error"] == "access_denied"
    result = world.result(world.callback(query, cookie))
    assert result == {"result": "access_denied", "connection_id": connection_id}
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"
    assert ("oauth.connect", "failure") in _audit_actions(world, org)
    # The state is spent by the error answer too.
    assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}


def test_a_failed_flow_during_an_audit_outage_still_redirects_and_is_audited_afterwards(
    world: OAuthWorld,
) -> None:
    audit_bucket = _Outage(
        world,
        "before-parameter-build.s3.PutObject",
        lambda params: b'"action":"oauth.connect"' in bytes(params.get("Body", b"")),
    )
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    world.server.deny_next_authorization()
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with audit_bucket.during():
        result = world.result(world.callback(query, cookie))

    # The browser lands on the return URL with the flow's own result, not on an error page.
    assert result == {"result": "access_denied", "connection_id": connection_id}
    assert ("oauth.connect", "failure") not in _audit_actions(world, org)
    _change_member(world, org, "carol", "admin")  # the org's next change flushes
    assert _audit_actions(world, org).count(("oauth.connect", "failure")) == 1


def test_a_failed_flow_whose_entry_cannot_be_recorded_still_redirects(
    world: OAuthWorld, caplog: pytest.LogCaptureFixture
) -> None:
    table_down = _Outage(
        world,
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params: "AUDIT_PENDING" in str(params.get("TransactItems", [])),
    )
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    world.server.deny_next_authorization()
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with table_down.during():
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "access_denied", "connection_id": connection_id}
    # Nothing was recorded; operators are told, naming the action only.
    (logged,) = [
        r for r in caplog.records if r.getMessage() == "an audit entry could not be recorded"
    ]
    assert logged.levelname == "ERROR"
    assert logged.__dict__["actions"] == ["oauth.connect"]
    (written,) = logged.__dict__["entries"]
    assert written == {
        "actor": "bob",
        "action": "oauth.connect",
        "outcome": "failure",
        "target": f"connection:{connection_id}",
        "request_id": written["request_id"],
    }
    assert ("oauth.connect", "failure") not in _audit_actions(world, org)
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"


def test_a_grant_that_cannot_be_stored_is_revoked_at_the_provider(world: OAuthWorld) -> None:
    # DynamoDB fails the grant's own transaction (the one that seals the refresh token in).
    grant_not_stored = _Outage(
        world,
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params: "sealed_refresh_token" in str(params.get("TransactItems", [])),
    )
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with grant_not_stored.during():
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "unavailable", "connection_id": connection_id}
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"
    # Nobody holds the grant the provider issued: it must not stay live there.
    assert world.server.counts()["revocations"] == 1
    assert world.server.current_refresh_tokens(client_id) == []
    built = world.oauth_callback.services()
    built.audit.flush(org, now=datetime.now(UTC))
    events = built.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    outcomes = {(e.action, e.outcome, e.details.get("reason")) for e in events}
    assert ("credential.revoke", "success", "grant_not_stored") in outcomes
    assert ("oauth.connect", "failure", "grant_not_stored") in outcomes


def _outcomes(world: OAuthWorld, org: str) -> list[tuple[str, str, Any]]:
    built = world.oauth_callback.services()
    built.audit.flush(org, now=datetime.now(UTC))
    events = built.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    return [(e.action, e.outcome, e.details.get("reason")) for e in events]


def test_a_grant_stored_though_its_answer_was_lost_is_kept_and_replaces_the_old_one(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.oauth import tokens as tokens_module

    armed = {"now": False}

    def answer_lost(http_response: Any, model: Any, **_: Any) -> None:
        # DynamoDB commits the grant's transaction, but its answer never arrives.
        if armed["now"] and http_response.status_code == 200:
            armed["now"] = False
            raise EndpointConnectionError(endpoint_url="https://dynamodb.invalid")

    assert world.aws is not None
    world.aws.events.register("after-call.dynamodb.TransactWriteItems", answer_lost)
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    [old] = world.server.current_refresh_tokens(client_id)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    store = tokens_module.TokenService._store_token

    def grant_store_armed(self: Any, *args: Any, **kwargs: Any) -> Any:
        armed["now"] = True
        return store(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(tokens_module.TokenService, "_store_token", grant_store_armed)
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "connected", "connection_id": connection_id}
    # The stored grant is live; the one it replaced is revoked, as after any re-authorization.
    [new] = world.server.current_refresh_tokens(client_id)
    assert new != old
    assert world.connection(org, connection_id).body["status"] == "active"
    outcomes = _outcomes(world, org)
    assert ("credential.revoke", "success", "replaced_by_new_grant") in outcomes
    assert ("oauth.connect", "failure", "grant_not_stored") not in outcomes


def test_an_old_grant_that_cannot_be_opened_now_does_not_fail_a_stored_one(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.crypto.exceptions import KeyringUnavailable
    from strongroom.oauth import tokens as tokens_module

    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    real_open = tokens_module.TokenService._open

    def old_refresh_token_unopenable(self: Any, record: Any, sealed: bytes, field: str) -> str:
        if field == "refresh_token":  # the old grant's, sealed under a DEK KMS cannot unwrap now
            raise KeyringUnavailable("KMS Decrypt failed (ThrottlingException)")
        return str(real_open(self, record, sealed, field))

    with monkeypatch.context() as patch:
        patch.setattr(tokens_module.TokenService, "_open", old_refresh_token_unopenable)
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "connected", "connection_id": connection_id}
    outcomes = _outcomes(world, org)
    assert ("credential.revoke", "failure", "replaced_by_new_grant") in outcomes
    assert not any(a == "oauth.connect" and o == "failure" for a, o, _ in outcomes)


def test_a_grant_that_cannot_be_sealed_is_revoked_and_the_credential_use_still_audited(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.crypto.exceptions import KeyringUnavailable
    from strongroom.oauth import tokens as tokens_module

    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)

    def kms_down(*_: Any, **__: Any) -> bytes:
        raise KeyringUnavailable("KMS GenerateDataKey failed (ThrottlingException)")

    with monkeypatch.context() as patch:
        patch.setattr(tokens_module.TokenService, "_seal", kms_down)
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "unavailable", "connection_id": connection_id}
    assert world.server.current_refresh_tokens(client_id) == []
    outcomes = _outcomes(world, org)
    assert ("credential.revoke", "success", "grant_not_stored") in outcomes
    # The client secret was used for the exchange, stored token or not.
    assert any(a == "credential.use" for a, _, _ in outcomes)


def _provider_reuses(monkeypatch: pytest.MonkeyPatch, refresh_token: str) -> None:
    """A provider that hands the same refresh token out again on a new authorization."""
    from strongroom.oauth import tokens as tokens_module

    issue = tokens_module.request_token

    def reusing(*args: Any, **kwargs: Any) -> Any:
        return replace(issue(*args, **kwargs), refresh_token=refresh_token)

    monkeypatch.setattr(tokens_module, "request_token", reusing)


def test_a_refresh_token_handed_back_again_is_kept_not_revoked_as_replaced(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    [held] = world.server.current_refresh_tokens(client_id)
    _provider_reuses(monkeypatch, held)
    assert world.connect(org, connection_id)["result"] == "connected"
    assert world.server.is_active(held)
    assert not any(reason == "replaced_by_new_grant" for _, _, reason in _outcomes(world, org))


def test_a_grant_not_stored_that_the_connection_holds_already_is_not_revoked(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    grant_not_stored = _Outage(
        world,
        "before-parameter-build.dynamodb.TransactWriteItems",
        lambda params: "sealed_refresh_token" in str(params.get("TransactItems", [])),
    )
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    [held] = world.server.current_refresh_tokens(client_id)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    _provider_reuses(monkeypatch, held)
    with grant_not_stored.during():
        result = world.result(world.callback(query, cookie))

    # Not stored (the write never ran): reported so, and the grant the connection holds, which
    # the provider handed back, stays live.
    assert result == {"result": "unavailable", "connection_id": connection_id}
    assert world.server.is_active(held)
    outcomes = _outcomes(world, org)
    assert ("oauth.connect", "failure", "grant_not_stored") in outcomes
    # The client secret was used once per exchange, each recorded once.
    assert [o[0] for o in outcomes].count("credential.use") == 2


def test_a_second_tab_handed_the_same_refresh_token_leaves_the_first_tabs_grant_live(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.oauth import tokens as tokens_module

    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    # Two tabs: two states, two codes, for the same connection.
    url_a, cookie_a = world.start(org, connection_id)
    query_a = world.browse(url_a)
    url_b, cookie_b = world.start(org, connection_id)
    query_b = world.browse(url_b)
    issue = tokens_module.request_token
    first: list[str] = []

    def provider_reusing(*args: Any, **kwargs: Any) -> Any:
        if not first:
            # While B's code is at the provider, A's callback completes and stores its grant.
            first.append("")
            assert world.result(world.callback(query_a, cookie_a))["result"] == "connected"
            return replace(issue(*args, **kwargs), refresh_token=first[-1])
        grant = issue(*args, **kwargs)
        first.append(str(grant.refresh_token))
        return grant

    monkeypatch.setattr(tokens_module, "request_token", provider_reusing)
    result_b = world.result(world.callback(query_b, cookie_b))

    # B's store lost the race (A's grant came first), but the connection holds the very refresh
    # token B was handed: it is not revoked as unheld.
    assert result_b == {"result": "connection_changed", "connection_id": connection_id}
    assert world.server.is_active(first[-1])
    assert world.connection(org, connection_id).body["status"] == "active"


def test_a_store_outage_after_the_state_is_spent_still_redirects(world: OAuthWorld) -> None:
    members_unreadable = _Outage(
        world,
        "before-parameter-build.dynamodb.GetItem",
        lambda params: str(params.get("Key", {}).get("sk", {})).find("MEMBER#") >= 0,
    )
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with members_unreadable.during():
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "unavailable", "connection_id": connection_id}
    assert world.connection(org, connection_id).body["status"] == "pending_authorization"
    assert ("oauth.connect", "failure") in _audit_actions(world, org)
    # The state is spent all the same.
    assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("status_500", "provider_unavailable"),
        ("html", "provider_unavailable"),
        ("oversized", "provider_unavailable"),
        ("invalid_grant", "exchange_refused"),
        ("hang", "provider_unavailable"),
        ("odd_expires_in", "provider_unavailable"),
        ("long_expires_in", "provider_unavailable"),
        ("deep_json", "provider_unavailable"),
    ],
)
def test_token_endpoint_failures_end_in_a_clear_result_and_nothing_stored(
    world: OAuthWorld, fault: str, expected: str
) -> None:
    rebuild_tokens(world, read_timeout=0.5, total_timeout=2.0)
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    world.server.fail_next_token_requests(1, fault, hang_seconds=3.0)  # type: ignore[arg-type]
    result = world.result(world.callback(query, cookie))
    assert result == {"result": expected, "connection_id": connection_id}
    body = world.connection(org, connection_id).body
    assert body["status"] == "pending_authorization"
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}


def test_a_token_endpoint_that_now_resolves_to_an_internal_address_is_not_called(
    world: OAuthWorld,
) -> None:
    org = world.new_org()
    # At creation the provider's host resolved to a public address...
    cs = world.credential_store.services()
    public = replace(cs, resolver=lambda host, port: ["93.184.216.34"])
    world.credential_store.services = lambda: public
    body = {
        "name": "Rebinding IdP",
        "provider": "oauth2",
        "authorization_endpoint": "https://idp.example.test/authorize",
        "token_endpoint": "https://idp.example.test/token",
        "scopes": ["api.read"],
        "auth": {
            "method": "authorization_code",
            "client_id": "c1",
            "client_secret": "CANARY" + secrets.token_hex(8),
        },
        "schedule": "rate(1 day)",
    }
    reply = world.call(
        "POST",
        f"/orgs/{org}/connections",
        sub="bob",
        body=body,
        route="/orgs/{org_id}/connections",
        path_parameters={"org_id": org},
    )
    assert reply.status == 201, reply.body
    connection_id = reply.body["connection_id"]
    # ...and now it answers with the metadata service's: the exchange is never sent.
    attempts: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        attempts.append(host)
        return ["169.254.169.254"]

    rebuild_tokens(world, resolver=rebinding)
    reply = world.authorize(org, connection_id)
    state = parse_qs(urlsplit(reply.body["authorization_url"]).query)["state"][0]
    cookie = reply.cookies[0].split(";")[0]
    result = world.result(world.callback({"code": "abc", "state": state}, cookie))
    assert result == {"result": "provider_unavailable", "connection_id": connection_id}
    assert attempts == ["idp.example.test"]


def test_authorize_is_for_admins_of_the_org_and_authorization_code_connections(
    world: OAuthWorld,
) -> None:
    org = world.new_org()
    other_org = world.new_org(owner="mallory")
    connection_id, _, _ = world.new_code_connection(org)
    assert world.authorize(org, connection_id, sub="carol").status == 403
    assert world.authorize(org, connection_id, sub="mallory").status == 404
    assert world.authorize(other_org, connection_id, sub="mallory").status == 404
    unknown = "conn_" + "a" * 26
    assert world.authorize(org, unknown, sub="bob").status == 404
    token_connection = world.call(
        "POST",
        f"/orgs/{org}/connections",
        sub="bob",
        route="/orgs/{org_id}/connections",
        path_parameters={"org_id": org},
        body={
            "name": "Okta",
            "provider": "okta",
            "domain": "acme.okta.com",
            "scopes": [],
            "auth": {"method": "api_token", "token": "CANARY" + secrets.token_hex(8)},
            "schedule": "rate(1 day)",
        },
    ).body["connection_id"]
    assert world.authorize(org, token_connection, sub="bob").status == 409


def test_a_connection_deleted_during_the_flow_ends_as_gone(world: OAuthWorld) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    reply = world.call(
        "DELETE",
        f"/orgs/{org}/connections/{connection_id}",
        sub="bob",
        route="/orgs/{org_id}/connections/{connection_id}",
        path_parameters={"org_id": org, "connection_id": connection_id},
    )
    assert reply.status == 204
    result = world.result(world.callback(query, cookie))
    assert result == {"result": "connection_gone", "connection_id": connection_id}
    assert world.server.counts()["grant_authorization_code"] == 0


def _change_member(world: OAuthWorld, org: str, user: str, role: str | None) -> None:
    """The owner (alice) demotes `user` to `role`, or removes them (None)."""
    path = f"/orgs/{org}/members/{user}"
    reply = world.call(
        "PUT" if role else "DELETE",
        path,
        sub="alice",
        body={"role": role} if role else None,
        route="/orgs/{org_id}/members/{user_id}",
        path_parameters={"org_id": org, "user_id": user},
    )
    assert reply.status in {200, 204}, reply.body


@pytest.mark.parametrize("new_role", [None, "member"])
def test_a_flow_started_by_an_admin_removed_or_demoted_since_stores_nothing(
    world: OAuthWorld, new_role: str | None
) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)  # bob, an admin
    query = world.browse(url)
    _change_member(world, org, "bob", new_role)

    result = world.result(world.callback(query, cookie))

    assert result == {"result": "not_allowed", "connection_id": connection_id}
    assert world.server.counts()["grant_authorization_code"] == 0  # the code is not spent
    body = world.connection(org, connection_id, sub="alice").body
    assert body["status"] == "pending_authorization"
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}
    assert ("oauth.connect", "denied") in _audit_actions(world, org)
    # The state is spent: restoring bob does not revive it.
    _change_member(world, org, "bob", "admin")
    assert world.result(world.callback(query, cookie)) == {"result": "invalid_state"}


def test_an_admin_removed_while_the_code_is_exchanged_gets_no_grant_stored(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    from oauth_flow import flow  # the function's package, on the path once `world` loads it

    checked = flow.has_role

    removed: list[bool] = []

    def removed_right_after_the_check(*args: Any, **kwargs: Any) -> bool:
        allowed = bool(checked(*args, **kwargs))
        if not removed:
            _change_member(world, org, "bob", None)
            removed.append(True)
        return allowed

    monkeypatch.setattr(flow, "has_role", removed_right_after_the_check)

    result = world.result(world.callback(query, cookie))

    assert result == {"result": "not_allowed", "connection_id": connection_id}
    assert world.server.counts()["grant_authorization_code"] == 1
    body = world.connection(org, connection_id, sub="alice").body
    assert body["status"] == "pending_authorization"
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}
    # The grant the provider issued is held by nobody: it is revoked there, and audited.
    assert world.server.counts()["revocations"] == 1
    assert world.server.current_refresh_tokens(client_id) == []
    assert ("credential.revoke", "success") in _audit_actions(world, org)


def test_a_grant_stored_during_an_audit_outage_is_connected_and_audited_afterwards(
    world: OAuthWorld,
) -> None:
    # S3 fails after the grant is stored: when the connect event itself is written (the
    # credential's use before the exchange is audited first, and without it nothing runs).
    audit_bucket = _Outage(
        world,
        "before-parameter-build.s3.PutObject",
        lambda params: b'"action":"oauth.connect"' in bytes(params.get("Body", b"")),
    )
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with audit_bucket.during():
        result = world.result(world.callback(query, cookie))

    assert result == {"result": "connected", "connection_id": connection_id}
    assert world.connection(org, connection_id).body["status"] == "active"
    assert ("oauth.connect", "success") not in _audit_actions(world, org)
    # The org's next change appends the entry recorded with the grant.
    _change_member(world, org, "carol", "admin")
    built = world.oauth_callback.services()
    events = built.audit.list_events(org, now=datetime.now(UTC), limit=100).events
    [connected] = [e for e in events if (e.action, e.outcome) == ("oauth.connect", "success")]
    assert connected.entry_id is not None
    assert connected.seq < max(e.seq for e in events if e.action == "member.change_role")


def test_reauthorizing_during_an_audit_outage_is_connected_and_the_revocation_audited_later(
    world: OAuthWorld,
) -> None:
    audit_bucket = _Outage(
        world,
        "before-parameter-build.s3.PutObject",
        lambda params: b'"action":"credential.revoke"' in bytes(params.get("Body", b"")),
    )
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    assert world.connect(org, connection_id)["result"] == "connected"
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    with audit_bucket.during():
        result = world.result(world.callback(query, cookie))  # replaces (and revokes) the grant

    assert result == {"result": "connected", "connection_id": connection_id}
    assert world.server.counts()["revocations"] == 1
    assert ("credential.revoke", "success") not in _audit_actions(world, org)
    _change_member(world, org, "carol", "admin")  # the org's next change flushes
    assert _audit_actions(world, org).count(("credential.revoke", "success")) == 1


def test_a_code_exchange_without_a_refresh_token_is_refused_and_its_access_token_revoked(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strongroom.oauth import tokens as token_service

    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id)
    query = world.browse(url)
    issued: list[str] = []
    real_request = token_service.request_token

    def without_a_refresh_token(*args: Any, **kwargs: Any) -> Any:
        # The provider answers as one whose grants cannot be refreshed (no offline access).
        grant = real_request(*args, **kwargs)
        issued.append(grant.access_token)
        return replace(grant, refresh_token=None)

    monkeypatch.setattr(token_service, "request_token", without_a_refresh_token)

    result = world.result(world.callback(query, cookie))

    assert result == {"result": "exchange_refused", "connection_id": connection_id}
    assert world.connection(org, connection_id, sub="alice").body["status"] == (
        "pending_authorization"
    )
    [access_token] = issued
    assert not world.server.is_active(access_token)
    actions = _audit_actions(world, org)
    assert ("credential.revoke", "success") in actions
    assert ("oauth.connect", "failure") in actions


# ---- an org whose deletion has shredded its key ------------------------------------------------

BEING_DELETED = {"error": {"code": "conflict", "message": "The org is being deleted."}}


def _shredded(world: OAuthWorld, org: str) -> None:
    """The owner's (alice's) DELETE, answered 202: the key shredded, every other member removed,
    the org's connections still there."""
    event = http_event(
        "DELETE",
        f"/orgs/{org}",
        route="/orgs/{org_id}",
        path_parameters={"org_id": org},
        claims={"auth_time": str(int(time.time()) - 10)},
    )
    response = world.credential_store.lambda_handler(event, LambdaContext(seconds_left=1))
    assert response["statusCode"] == 202


def _partition(world: OAuthWorld, org: str) -> set[str]:
    """Sort keys of every item in the org's partition, expired or not."""
    items = boto3.client("dynamodb").query(
        TableName=world.settings.table_name,
        KeyConditionExpression="pk = :org",
        ExpressionAttributeValues={":org": {"S": org}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"] for item in items}


@pytest.mark.parametrize("shredded_after_the_read", [False, True])
def test_no_authorization_is_started_once_the_org_is_shredded(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch, shredded_after_the_read: bool
) -> None:
    org = world.new_org()
    connection_id, _, _ = world.new_code_connection(org)
    if shredded_after_the_read:
        from oauth_flow import flow  # the function's package, on the path once `world` loads it

        checked = flow.refuse_if_shredded

        def shredded_right_after_the_check(*args: Any, **kwargs: Any) -> None:
            checked(*args, **kwargs)
            _shredded(world, org)

        monkeypatch.setattr(flow, "refuse_if_shredded", shredded_right_after_the_check)
    else:
        _shredded(world, org)
    before = _partition(world, org) if not shredded_after_the_read else None

    reply = world.authorize(org, connection_id, sub="alice")

    assert (reply.status, reply.body) == (409, BEING_DELETED)
    assert reply.cookies == []
    # No state item: it would outlive the org (and its verifier was sealed under a dead key).
    assert not any(sk.startswith("OAUTH_STATE#") for sk in _partition(world, org))
    if before is not None:
        assert _partition(world, org) == before


@pytest.mark.parametrize("shredded_after_the_read", [False, True])
def test_no_grant_is_stored_once_the_org_is_shredded_and_one_issued_is_revoked(
    world: OAuthWorld, monkeypatch: pytest.MonkeyPatch, shredded_after_the_read: bool
) -> None:
    org = world.new_org()
    connection_id, client_id, _ = world.new_code_connection(org)
    url, cookie = world.start(org, connection_id, sub="alice")  # the owner who deletes the org
    query = world.browse(url)
    from oauth_flow import flow  # the function's package, on the path once `world` loads it

    if shredded_after_the_read:
        checked = flow.is_shredded
        calls: list[bool] = []

        def shredded_right_after_the_check(*args: Any, **kwargs: Any) -> bool:
            shredded = bool(checked(*args, **kwargs))
            if not calls:
                _shredded(world, org)
            calls.append(shredded)
            return shredded

        monkeypatch.setattr(flow, "is_shredded", shredded_right_after_the_check)
    else:
        _shredded(world, org)

    result = world.result(world.callback(query, cookie))

    assert result == {"result": "org_deleting", "connection_id": connection_id}
    body = world.connection(org, connection_id, sub="alice").body
    assert body["status"] == "pending_authorization"
    assert "refresh_token" not in {c["field"] for c in body["credentials"]}
    exchanged = world.server.counts()["grant_authorization_code"]
    if shredded_after_the_read:
        # The code was exchanged before the write was refused: the grant is held by nobody, so
        # it is revoked at the provider.
        assert exchanged == 1
        assert world.server.counts()["revocations"] == 1
    else:
        assert exchanged == 0  # the code is not spent
    assert world.server.current_refresh_tokens(client_id) == []
    assert ("oauth.connect", "failure", "org_deleting") in _outcomes(world, org)
