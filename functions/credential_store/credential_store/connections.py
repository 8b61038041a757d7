"""Connections: provider settings checked at creation, secrets sealed per field, never shown.

Every secret field is sealed on its own under the org's DEK (kind "connection", item id = the
connection id, field = the field's name) and stored as a Binary attribute `sealed_<field>`.
Responses carry `"[REDACTED]"` with a fingerprint and creation time instead.

The connection count lives on the ORG item (`connection_count`): a create increments it with the
plan's ceiling in the same transaction as the connection's Create, a delete decrements it in the
same transaction as the Delete, so concurrent creates can never pass the plan's limit.

A connection of another org, or of no org the caller belongs to, answers 404 like a missing one.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm

from credential_store import audit_trail, revocations
from credential_store.models import (
    REDACTED,
    ApiTokenAuth,
    AuthMethod,
    AuthorizationCodeAuth,
    ClientCredentialsAuth,
    Connection,
    ConnectionAuth,
    ConnectionCreated,
    Connections,
    CreateConnection,
    Credential,
    PrivateKeyJwtAuth,
    Provider,
    ReplaceCredentials,
)
from credential_store.orgs import ORG, require_role
from credential_store.services import Services
from strongroom.api import Caller
from strongroom.audit import AuditAction, AuditEntry
from strongroom.errors import Conflict, InvalidField, NotFound, RateLimited
from strongroom.oauth import CONNECTION_KIND, SEALED_KIND, read_connection, sealed_attribute
from strongroom.oauth.connection import (
    ACCESS_TOKEN,
    ACCESS_TOKEN_EXPIRES_AT,
    REFRESH_TOKEN,
    SEALED_PREFIX,
    STATUS,
    TOKEN_GENERATION,
    ConnectionStatus,
)
from strongroom.outbound import check_url
from strongroom.outbound.exceptions import DestinationRefused
from strongroom.plans import Plan, plan_named
from strongroom.redaction import redact_text
from strongroom.roles import Role, still_allowed
from strongroom.schedules import (
    CronExpression,
    InvalidScheduleExpression,
    RateExpression,
    parse_schedule_expression,
)
from strongroom.shredded_orgs import (
    BEING_DELETED,
    UNSHREDDED,
    is_shredded,
    refuse_if_shredded,
    unshredded,
)
from strongroom.tenancy import (
    ConditionFailed,
    Create,
    Delete,
    Increment,
    Item,
    ItemNotFound,
    LimitReached,
    Update,
)

CONNECTION = CONNECTION_KIND
COUNTER = "connection_count"
_MAX_PAGE = 100

# Provider domains (DESIGN.md): a host name under one of the provider's suffixes.
_OKTA_SUFFIXES = (".okta.com", ".oktapreview.com", ".okta-emea.com")
_AUTH0_SUFFIXES = (".auth0.com",)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_ONMICROSOFT = re.compile(rf"^{_LABEL}\.onmicrosoft\.com$")
_DEV_HOST = re.compile(r"^(localhost|127(?:\.[0-9]{1,3}){3}|\[::1\]):([0-9]{1,5})$")

# Which methods each provider offers. Entra has no static API tokens.
_METHODS: Mapping[Provider, frozenset[AuthMethod]] = {
    Provider.OKTA: frozenset(AuthMethod),
    Provider.AUTH0: frozenset(AuthMethod),
    Provider.OAUTH2: frozenset(AuthMethod),
    Provider.ENTRA: frozenset(AuthMethod) - {AuthMethod.API_TOKEN},
}
_SECRET_FIELDS: Mapping[AuthMethod, tuple[str, ...]] = {
    AuthMethod.API_TOKEN: ("token",),
    AuthMethod.CLIENT_CREDENTIALS: ("client_secret",),
    AuthMethod.PRIVATE_KEY_JWT: ("private_key",),
    AuthMethod.AUTHORIZATION_CODE: ("client_secret",),
}
_EC_CURVES = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_MIN_RSA_BITS = 2048
_MAX_RSA_BITS = 4096
# A JWK's modulus `n` in base64url: 4 characters per 3 bytes.
_MAX_RSA_MODULUS_CHARACTERS = -(-_MAX_RSA_BITS // 8 * 4 // 3)
# What the PEM and JWK parsers raise for input that is not a usable key.
# RecursionError: a JWK nested deeper than the JSON decoder goes.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
    UnsupportedAlgorithm,
)
_BAD_KEY = (
    "auth.private_key: must be an unencrypted RSA (2048 to 4096 bits) or EC P-256/P-384/P-521"
    " private key, as PEM or JWK"
)

AnyAuth = ApiTokenAuth | ClientCredentialsAuth | PrivateKeyJwtAuth | AuthorizationCodeAuth


def new_connection_id() -> str:
    """A fresh connection id: `conn_` and 26 lowercase base32 characters (128 random bits)."""
    return "conn_" + base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


# ---- routes -----------------------------------------------------------------------------------


def create_connection(
    services: Services,
    caller: Caller,
    org_id: str,
    body: CreateConnection,
    *,
    now: datetime,
    request_id: str,
) -> ConnectionCreated:
    """Check, seal and store a connection; RateLimited (429) when the plan's limit is reached."""
    require_role(services, caller, org_id, Role.ADMIN, now=now)
    org = _org(services, org_id, now=now)
    # Its deletion would pass over a connection made now; the write's condition covers a
    # shredding after this read.
    refuse_if_shredded(org)
    plan = plan_named(org.attributes.get("plan"))
    settings = _provider_settings(services, body)
    _check_schedule(body.schedule, plan, now=now)
    connection_id = new_connection_id()
    stamp = _iso(now)
    auth_attributes, credentials = _seal(services, org_id, connection_id, body.auth, stamp)
    attributes: dict[str, Any] = {
        **settings,
        "name": body.name,
        "provider": body.provider.value,
        "scopes": list(body.scopes),
        "schedule": body.schedule.strip(),
        **auth_attributes,
        "credentials": credentials,
        "created_at": stamp,
        "created_by": caller.sub,
        "updated_at": stamp,
        "version": 1,
    }
    # The schedule entry first: a connection must never exist without one (an entry without
    # its connection is harmless, and dropped by the dispatcher when it comes due).
    target = ("connection", connection_id)
    audit_writes = audit_trail.recorded(
        services,
        org_id,
        audit_trail.entry(
            caller,
            AuditAction.CONNECTION_CREATE,
            target,
            request_id=request_id,
            details={"provider": body.provider.value, "method": body.auth.method.value},
        ),
        audit_trail.entry(
            caller,
            AuditAction.CREDENTIAL_WRITE,
            target,
            request_id=request_id,
            details={"method": body.auth.method.value, "fields": sorted(credentials)},
        ),
        now=now,
    )
    services.schedules.register(org_id, connection_id, attributes["schedule"], anchor=now, now=now)
    try:
        services.table.transact(
            org_id,
            [
                Create(CONNECTION, connection_id, attributes=attributes),
                Increment(ORG, attribute=COUNTER, ceiling=plan.max_connections, expect=UNSHREDDED),
                still_allowed(caller.sub, Role.ADMIN),
                *audit_writes,
            ],
            now=now,
        )
    except LimitReached:
        services.schedules.remove(org_id, connection_id, now=now)
        raise RateLimited(
            f"The org's plan allows at most {plan.max_connections} connections."
        ) from None
    except (ConditionFailed, ItemNotFound) as exc:  # the caller was demoted or removed meanwhile
        services.schedules.remove(org_id, connection_id, now=now)
        if isinstance(exc, ItemNotFound):
            raise NotFound() from None  # no longer a member: as for any non-member
        if is_shredded(services.table, org_id, now=now):
            raise Conflict(BEING_DELETED) from None
        raise Conflict("Your role changed meanwhile; read it again and retry.") from None
    services.audit.flush_after_commit(org_id, now=now)
    return ConnectionCreated(connection_id=connection_id)


def list_connections(
    services: Services, caller: Caller, org_id: str, *, now: datetime, cursor: str | None = None
) -> Connections:
    require_role(services, caller, org_id, Role.MEMBER, now=now)
    page = services.table.query(org_id, CONNECTION, now=now, limit=_MAX_PAGE, cursor=cursor)
    return Connections(
        connections=[_connection(org_id, item) for item in page.items], next_cursor=page.cursor
    )


def get_connection(
    services: Services, caller: Caller, org_id: str, connection_id: str, *, now: datetime
) -> Connection:
    require_role(services, caller, org_id, Role.MEMBER, now=now)
    return _connection(org_id, _find(services, org_id, connection_id, now=now))


def replace_credentials(
    services: Services,
    caller: Caller,
    org_id: str,
    connection_id: str,
    body: ReplaceCredentials,
    *,
    now: datetime,
    request_id: str,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> Connection:
    """Replace the connection's secrets (write-only) and record the rotation.

    The method stays the connection's: changing it is a new connection (its provider settings,
    such as an authorization endpoint, were checked for the method it was created with).

    A token the rotation drops is then revoked at the provider as the client it was issued to,
    as a deletion revokes it (and owed the same way): a rotation after a leak must not leave
    tokens obtained with the leaked secret live. That is the cached token of a client-credentials
    or private-key connection, or, with a new client, an authorization-code connection's grant;
    with the same client the grant stays, and its access token is left to expire. The update
    expects the connection as read (`_unchanged`), so the token revoked is the one dropped.
    """
    require_role(services, caller, org_id, Role.ADMIN, now=now)
    current = _find(services, org_id, connection_id, now=now)
    if body.auth.method.value != current.attributes["auth_method"]:
        raise InvalidField("auth.method: must stay the connection's method")
    # Before sealing (the org's key may be shredded); the write's condition covers a shredding
    # after this read.
    refuse_if_shredded(_org(services, org_id, now=now))
    stamp = _iso(now)
    auth_attributes, credentials = _seal(services, org_id, connection_id, body.auth, stamp)
    version = int(current.attributes["version"])
    changes: dict[str, Any] = {
        **auth_attributes,
        "credentials": credentials,
        "updated_at": stamp,
        "version": version + 1,
        # A token obtained with the old credentials is not served any more.
        TOKEN_GENERATION: int(current.attributes.get(TOKEN_GENERATION, 0)) + 1,
    }
    remove = {sealed_attribute(ACCESS_TOKEN), ACCESS_TOKEN_EXPIRES_AT}
    same_client = auth_attributes.get("client_id") == current.attributes.get("client_id")
    # What is dropped is revoked as the client it was issued to: with the new credentials when
    # the client stays (the old secret may already be disabled at the provider), with the old
    # ones when the client changes.
    dropped: Item | None = Item(
        CONNECTION,
        connection_id,
        {**current.attributes, **auth_attributes} if same_client else dict(current.attributes),
    )
    if body.auth.method is AuthMethod.AUTHORIZATION_CODE:
        if not same_client:
            # The grant belongs to the old client: the new one must be authorized.
            remove.add(sealed_attribute(REFRESH_TOKEN))
            changes[STATUS] = ConnectionStatus.PENDING_AUTHORIZATION.value
        else:
            # The grant stays, and so does its record (shown with its fingerprint). Its access
            # token is left to expire: a provider may revoke a grant with any of its tokens
            # (RFC 7009 2.1).
            dropped = None
            held = current.attributes.get("credentials", {}).get(REFRESH_TOKEN)
            if held is not None:
                changes["credentials"] = {**credentials, REFRESH_TOKEN: held}
    else:
        # New static credentials are usable at once, even after an invalid_grant.
        remove.add(STATUS)
    update = Update(
        CONNECTION,
        connection_id,
        changes=changes,
        remove=sorted(remove),
        expect=_unchanged(current),
    )
    audit = audit_trail.entry(
        caller,
        AuditAction.CREDENTIAL_ROTATE,
        ("connection", connection_id),
        request_id=request_id,
        details={"method": body.auth.method.value, "fields": sorted(credentials)},
    )
    audit_writes = audit_trail.recorded(services, org_id, audit, now=now)
    owed = (
        None
        if dropped is None
        else revocations.owe(services, org_id, dropped, now=now, reason="credentials_replaced")
    )
    owing = [] if owed is None else [owed.write]
    try:
        services.table.transact(
            org_id,
            [update, still_allowed(caller.sub, Role.ADMIN), unshredded(), *audit_writes, *owing],
            now=now,
        )
    except ItemNotFound:  # the connection was deleted, or the caller removed, meanwhile
        raise NotFound() from None
    except ConditionFailed:  # the connection changed, or the caller was demoted, meanwhile
        if is_shredded(services.table, org_id, now=now):
            raise Conflict(BEING_DELETED) from None
        raise Conflict("The connection changed meanwhile; read it again and retry.") from None
    attributes = {**current.attributes, **changes}
    updated = Item(
        CONNECTION,
        connection_id,
        {name: value for name, value in attributes.items() if name not in remove},
        current.expires_at,
    )
    if owed is not None:
        revocations.revoke_owed(
            services, caller, owed, now=now, request_id=request_id, seconds=deadline - clock()
        )
    services.audit.flush_after_commit(org_id, now=now)
    return _connection(org_id, updated)


def delete_connection(
    services: Services,
    caller: Caller,
    org_id: str,
    connection_id: str,
    *,
    now: datetime,
    request_id: str,
    deadline: float,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Delete the secrets and the connection, then revoke its grant at the provider where
    possible (from the copy read for the delete): a delete that loses a race (409) leaves the
    grant as live as the connection that still holds it. The revocation is waited for only
    until `deadline` (a `clock()` time): a provider that hangs is audited as `timed_out`, and
    the answer is still 204. The delete's transaction writes the revocation it owes
    (`revocations`), so one that fails, times out or never runs is tried again by the sweep.
    The delete expects the connection as read (`_unchanged`), so the grant revoked is the one
    deleted, not one a refresh replaced meanwhile."""
    require_role(services, caller, org_id, Role.ADMIN, now=now)
    current = _find(services, org_id, connection_id, now=now)
    audit_writes = audit_trail.recorded(
        services, org_id, *deletion_entries(caller, current, request_id=request_id), now=now
    )
    owed = revocations.owe(services, org_id, current, now=now)
    try:
        services.table.transact(
            org_id,
            [
                Delete(
                    CONNECTION,
                    connection_id,
                    expect=_unchanged(current),
                ),
                Increment(ORG, attribute=COUNTER, by=-1),
                still_allowed(caller.sub, Role.ADMIN),
                *audit_writes,
                *([] if owed is None else [owed.write]),
            ],
            now=now,
        )
    except ItemNotFound:
        raise NotFound() from None
    except (ConditionFailed, LimitReached):
        raise Conflict("The connection changed meanwhile; read it again and retry.") from None
    services.schedules.remove(org_id, connection_id, now=now)
    if owed is not None:
        revocations.revoke_owed(
            services, caller, owed, now=now, request_id=request_id, seconds=deadline - clock()
        )
    services.audit.flush_after_commit(org_id, now=now)


def deletion_entries(
    caller: Caller, connection: Item, *, request_id: str, reason: str | None = None
) -> list[AuditEntry]:
    """The `credential.delete` (naming the fields, never their values) and `connection.delete`
    entries of a connection's deletion; `reason` for a deletion made by another (the org's)."""
    target = ("connection", str(connection.item_id))
    why = {"reason": reason} if reason else {}
    fields = sorted(connection.attributes.get("credentials", {}))
    return [
        audit_trail.entry(
            caller,
            AuditAction.CREDENTIAL_DELETE,
            target,
            request_id=request_id,
            details={"fields": fields, **why},
        ),
        audit_trail.entry(
            caller, AuditAction.CONNECTION_DELETE, target, request_id=request_id, details=why
        ),
    ]


# ---- validation -------------------------------------------------------------------------------


def _provider_settings(services: Services, body: CreateConnection) -> dict[str, Any]:
    """The provider's non-secret settings, checked; InvalidField (422) naming the field."""
    provider = body.provider
    method = body.auth.method
    if method not in _METHODS[provider]:
        raise InvalidField(f"auth.method: {method.value} is not offered for {provider.value}")
    allowed = {
        Provider.OKTA: {"domain"},
        Provider.AUTH0: {"domain"},
        Provider.ENTRA: {"tenant_id"},
        Provider.OAUTH2: {"authorization_endpoint", "token_endpoint", "revocation_endpoint"},
    }[provider]
    given = {
        name
        for name in (
            "domain",
            "tenant_id",
            "authorization_endpoint",
            "token_endpoint",
            "revocation_endpoint",
        )
        if getattr(body, name) is not None
    }
    unused = sorted(given - allowed)
    if unused:
        raise InvalidField(f"{unused[0]}: not used by provider {provider.value}")
    dev_hosts = _dev_hosts(services)
    if provider is Provider.OKTA:
        return {"domain": _domain(body.domain, _OKTA_SUFFIXES, dev_hosts)}
    if provider is Provider.AUTH0:
        return {"domain": _domain(body.domain, _AUTH0_SUFFIXES, dev_hosts)}
    if provider is Provider.ENTRA:
        return {"tenant_id": _tenant_id(body.tenant_id)}
    return _oauth2_endpoints(services, body)


def _dev_hosts(services: Services) -> frozenset[str]:
    """The allow-list entries as a domain names them: `host:port`, an IPv6 host in brackets."""
    return frozenset(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for host, port in services.settings.dev_allow_hosts
    )


def _domain(value: str | None, suffixes: Iterable[str], dev_hosts: frozenset[str]) -> str:
    if value is None:
        raise InvalidField("domain: required for this provider")
    domain = value.strip().lower().rstrip(".")
    # A deployment's explicit dev allow-list entry (`host:port`) may stand in for a provider.
    if _DEV_HOST.fullmatch(domain) and domain in dev_hosts:
        return domain
    if len(domain) <= 253 and _HOST.fullmatch(domain):
        for suffix in suffixes:
            if domain.endswith(suffix) and len(domain) > len(suffix):
                return domain
    raise InvalidField("domain: must be a host name under " + ", ".join(f"*{s}" for s in suffixes))


def _tenant_id(value: str | None) -> str:
    if value is None:
        raise InvalidField("tenant_id: required for entra")
    tenant = value.strip().lower()
    if _GUID.fullmatch(tenant) or _ONMICROSOFT.fullmatch(tenant):
        return tenant
    raise InvalidField("tenant_id: must be a GUID or <name>.onmicrosoft.com")


def _oauth2_endpoints(services: Services, body: CreateConnection) -> dict[str, Any]:
    if body.token_endpoint is None:
        raise InvalidField("token_endpoint: required for oauth2")
    if body.auth.method is AuthMethod.AUTHORIZATION_CODE and body.authorization_endpoint is None:
        raise InvalidField("authorization_endpoint: required for authorization_code")
    endpoints: dict[str, Any] = {}
    for name in ("authorization_endpoint", "token_endpoint", "revocation_endpoint"):
        url = getattr(body, name)
        if url is None:
            continue
        # Stored as metadata and shown to every member: a secret has no place in it (the
        # redaction rules of the logs say what one is: userinfo, secret query parameters).
        if redact_text(url) != url:
            raise InvalidField(f"{name}: may not carry a secret (credentials go in auth)")
        if "#" in url:  # RFC 6749 §3.1, §3.2
            raise InvalidField(f"{name}: may not have a fragment")
        try:
            # Checked now and again by the outbound client at every use: DNS answers change.
            endpoints[name] = check_url(
                url, services.settings.dev_allow_hosts, resolver=services.resolver
            )
        except DestinationRefused:
            raise InvalidField(f"{name}: refused by the outbound guard") from None
    return endpoints


def _check_schedule(text: str, plan: Plan, *, now: datetime) -> None:
    try:
        expression = parse_schedule_expression(text)
    except InvalidScheduleExpression:
        # The parser's message quotes the input; the caller gets the rule instead.
        raise InvalidField("schedule: must be a valid rate() or cron() expression") from None
    if shortest_interval(expression) < plan.min_schedule_interval:
        raise InvalidField(
            f"schedule: the {plan.name} plan allows at most one run every "
            f"{_describe(plan.min_schedule_interval)}"
        )
    # A cron() of past years (or of a date no year has, such as 30 February) never runs.
    if expression.next_after(now, anchor=now) is None:
        raise InvalidField("schedule: never runs after now")


def shortest_interval(expression: RateExpression | CronExpression | Any) -> timedelta:
    """The shortest time between two runs of a rate() or (UTC) cron() schedule.

    For cron() this is the smallest gap between its times of day, including the gap across
    midnight as if the next day also ran: exact when consecutive days can run, and on the safe
    (shorter) side when they cannot.
    """
    if isinstance(expression, RateExpression):
        return expression.interval
    if isinstance(expression, CronExpression):
        times = sorted(
            hour * 60 + minute for hour in expression.hours for minute in expression.minutes
        )
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        gaps.append(times[0] + 24 * 60 - times[-1])
        return timedelta(minutes=min(gaps))
    raise InvalidField("schedule: must be a rate() or cron() expression")


def _describe(interval: timedelta) -> str:
    minutes = int(interval.total_seconds()) // 60
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return "day" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        hours = minutes // 60
        return "hour" if hours == 1 else f"{hours} hours"
    return f"{minutes} minutes"


# ---- secrets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PrivateKey:
    pkcs8_pem: bytes
    algorithm: str
    fingerprint: str


def load_private_key(text: str) -> _PrivateKey:
    """Parse a PEM or JWK private key; InvalidField (422) for anything else or too weak.

    Stored as unencrypted PKCS#8 PEM whatever the input form, with the JWS algorithm it signs
    with, so the token service reads one format.
    """
    # PyJWT and cryptography's key parsers are imported here: only private_key_jwt credentials
    # need them, and importing them with the module costs every cold start about a quarter of
    # boto3's own import (PyJWT) and a twentieth (the key parsers).
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: PLC0415
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: PLC0415
    from jwt.exceptions import PyJWTError  # noqa: PLC0415

    key: Any
    try:
        stripped = text.strip()
        if stripped.startswith("{"):
            jwk = json.loads(stripped)
            if not isinstance(jwk, dict) or "d" not in jwk:
                raise ValueError("not a private JWK")
            kty = jwk.get("kty")
            if kty == "RSA":
                if len(str(jwk.get("n", ""))) > _MAX_RSA_MODULUS_CHARACTERS:
                    raise InvalidField(_BAD_KEY)
                key = RSAAlgorithm.from_jwk(jwk)
            elif kty == "EC":
                key = ECAlgorithm.from_jwk(jwk)
            else:
                raise ValueError("unsupported key type")
        else:
            data = stripped.encode("ascii")
            # Validating an RSA key costs about the cube of its size (a 16384-bit one, about
            # 40 s of CPU): its size is read from an unvalidated parse first.
            probe = serialization.load_pem_private_key(
                data, password=None, unsafe_skip_rsa_key_validation=True
            )
            if isinstance(probe, rsa.RSAPrivateKey) and probe.key_size > _MAX_RSA_BITS:
                raise InvalidField(_BAD_KEY)
            key = serialization.load_pem_private_key(data, password=None)
    except (*_PARSE_ERRORS, PyJWTError):
        # Any parse failure, whatever raised it: one message, and never the input.
        raise InvalidField(_BAD_KEY) from None
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= _MIN_RSA_BITS:
        algorithm = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_CURVES:
        algorithm = _EC_CURVES[key.curve.name]
    else:
        raise InvalidField(_BAD_KEY)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return _PrivateKey(pem, algorithm, "sha256:" + hashlib.sha256(public).hexdigest())


def _seal(
    services: Services, org_id: str, connection_id: str, auth: AnyAuth, stamp: str
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The auth object as stored: its public part, each secret field sealed on its own as
    `sealed_<field>`, and each secret's fingerprint record."""
    public: dict[str, Any] = {"auth_method": auth.method.value}
    values: dict[str, tuple[bytes, str]] = {}
    if isinstance(auth, ApiTokenAuth):
        values["token"] = (auth.token.encode("ascii"), _last_four(auth.token))
    elif isinstance(auth, ClientCredentialsAuth | AuthorizationCodeAuth):
        public["client_id"] = auth.client_id
        secret = auth.client_secret
        values["client_secret"] = (secret.encode("ascii"), _last_four(secret))
    else:
        key = load_private_key(auth.private_key)
        public.update(client_id=auth.client_id, key_id=auth.key_id, key_algorithm=key.algorithm)
        values["private_key"] = (key.pkcs8_pem, key.fingerprint)
    keyring = services.keyrings.for_org(org_id)
    credentials: dict[str, dict[str, str]] = {}
    for field, (plaintext, fingerprint) in values.items():
        public[sealed_attribute(field)] = keyring.seal_field(
            plaintext, kind=SEALED_KIND, item_id=connection_id, field=field
        )
        credentials[field] = {"fingerprint": fingerprint, "created_at": stamp}
    return public, credentials


def _last_four(secret: str) -> str:
    return "..." + secret[-4:]


# ---- reading ----------------------------------------------------------------------------------


def _org(services: Services, org_id: str, *, now: datetime) -> Item:
    try:
        return services.table.get(org_id, ORG, now=now)
    except ItemNotFound:
        raise NotFound() from None


def _find(services: Services, org_id: str, connection_id: str, *, now: datetime) -> Item:
    try:
        return services.table.get(org_id, CONNECTION, connection_id, now=now)
    except ItemNotFound:
        raise NotFound() from None


def _connection(org_id: str, item: Item) -> Connection:
    """The API's view of a stored connection: built field by field, secrets never read."""
    a = item.attributes
    status = read_connection(org_id, item).status
    credentials = a.get("credentials", {})
    return Connection(
        connection_id=str(item.item_id),
        name=a["name"],
        provider=Provider(a["provider"]),
        domain=a.get("domain"),
        tenant_id=a.get("tenant_id"),
        authorization_endpoint=a.get("authorization_endpoint"),
        token_endpoint=a.get("token_endpoint"),
        revocation_endpoint=a.get("revocation_endpoint"),
        scopes=list(a.get("scopes", [])),
        schedule=a["schedule"],
        auth=ConnectionAuth(
            method=AuthMethod(a["auth_method"]),
            client_id=a.get("client_id"),
            key_id=a.get("key_id"),
            key_algorithm=a.get("key_algorithm"),
        ),
        status=status,
        credentials=[
            Credential(
                field=field,
                value=REDACTED,
                fingerprint=record["fingerprint"],
                created_at=record["created_at"],
            )
            for field, record in sorted(credentials.items())
        ],
        created_at=a["created_at"],
        created_by=a["created_by"],
        updated_at=a["updated_at"],
    )


def _unchanged(connection: Item) -> dict[str, Any]:
    """What a change that drops the connection's tokens expects of it: the version, the token
    generation (None: never stored, as the token stores expect it) and every sealed value as
    read, so that the revocation it owes holds the tokens it dropped, as they were stored (a
    refresh or a reseal meanwhile answers 409)."""
    attributes = connection.attributes
    return {
        "version": attributes["version"],
        TOKEN_GENERATION: int(attributes.get(TOKEN_GENERATION, 0)) or None,
        **{name: value for name, value in attributes.items() if name.startswith(SEALED_PREFIX)},
    }


def _iso(now: datetime) -> str:
    return now.isoformat(timespec="seconds").replace("+00:00", "Z")
