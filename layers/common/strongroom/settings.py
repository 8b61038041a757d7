"""Deployment settings, read from the environment once and validated.

A missing or invalid setting fails at start with a message that names the variable, never its
value (a value may be a secret or an ARN that does not belong in a log line).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from strongroom.errors import StrongroomError
from strongroom.plain_urls import is_loopback_host, loopback_host_port, split_plain_url
from strongroom.plans import PLANS

_SOURCE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_SECRET_ID = re.compile(r"[A-Za-z0-9/_+.@:-]{1,2048}")
_PRODUCT = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class SettingsError(StrongroomError):
    """A required setting is missing or invalid."""


def _check_browser_url(value: str) -> str:
    """An absolute https URL without userinfo or fragment (http only on loopback, for dev),
    which every parser reads alike (strongroom.plain_urls)."""
    try:
        url = split_plain_url(value)
    except ValueError:
        raise ValueError("must be an absolute URL without credentials or fragment") from None
    if url.scheme != "https" and not (url.scheme == "http" and is_loopback_host(url.host)):
        raise ValueError("must be an https URL")
    if url.fragment:
        raise ValueError("must be an absolute URL without credentials or fragment")
    return value


class Settings(BaseModel):
    """Every setting of a Strongroom function. Field aliases are the environment variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: Annotated[str, Field(alias="STRONGROOM_STAGE", pattern=r"^[a-z][a-z0-9-]{0,15}$")]
    table_name: Annotated[str, Field(alias="STRONGROOM_TABLE", min_length=3)]
    backup_bucket: Annotated[str, Field(alias="STRONGROOM_BACKUP_BUCKET", min_length=3)]
    audit_bucket: Annotated[str, Field(alias="STRONGROOM_AUDIT_BUCKET", min_length=3)]
    platform_key_id: Annotated[str, Field(alias="STRONGROOM_PLATFORM_KEY_ID", min_length=1)]
    backup_queue_url: Annotated[str, Field(alias="STRONGROOM_BACKUP_QUEUE_URL", min_length=1)]
    # The public URL of GET /oauth/callback (the redirect_uri registered with providers), and
    # where the callback sends the admin's browser afterwards with a result code.
    oauth_redirect_uri: Annotated[str, Field(alias="STRONGROOM_OAUTH_REDIRECT_URI")]
    oauth_return_url: Annotated[str, Field(alias="STRONGROOM_OAUTH_RETURN_URL")]
    audit_retention_days: Annotated[
        int, Field(alias="STRONGROOM_AUDIT_RETENTION_DAYS", ge=1, le=36500)
    ] = 365
    backup_retention_days: Annotated[
        int, Field(alias="STRONGROOM_BACKUP_RETENTION_DAYS", ge=1, le=36500)
    ] = 90
    dek_cache_max_age_seconds: Annotated[
        int, Field(alias="STRONGROOM_DEK_CACHE_MAX_AGE_SECONDS", ge=1, le=3600)
    ] = 300
    dek_cache_max_uses: Annotated[
        int, Field(alias="STRONGROOM_DEK_CACHE_MAX_USES", ge=1, le=1_000_000)
    ] = 10_000
    # How many orgs one user may create: each org is a customer-managed KMS key, which costs
    # money and counts against the account's key quota (credential_store only).
    max_orgs_per_user: Annotated[
        int, Field(alias="STRONGROOM_MAX_ORGS_PER_USER", ge=1, le=10_000)
    ] = 10
    # The role signed_url_issuer assumes, per download link, with a session policy narrowed to
    # the one object: only that function sets it (its own environment in the template).
    download_signer_role_arn: Annotated[
        str | None,
        Field(
            alias="STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN",
            pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$",
        ),
    ] = None
    # Loopback host:port entries the outbound client may reach over plain HTTP and that stand in
    # for a provider domain. For the local stack and tests only; the template never sets it.
    dev_allow_hosts: Annotated[
        frozenset[tuple[str, int]], Field(alias="STRONGROOM_DEV_ALLOW_HOSTS")
    ] = frozenset()

    # Webhook sources and the Secrets Manager secret (ARN or name) holding each one's list of
    # active signing secrets: "stripe=<arn>,github=<arn>". Set for webhook_verifier only.
    webhook_secret_ids: Annotated[dict[str, str], Field(alias="STRONGROOM_WEBHOOK_SECRETS")] = (
        Field(default_factory=dict)
    )
    # Which plan each billing product grants: "<source>:<product id>=<plan>", comma separated
    # (a Stripe price id, a Lemon Squeezy variant id, a Standard Webhooks sender's product id).
    # Empty: no billing event can raise a plan.
    billing_products: Annotated[dict[str, str], Field(alias="STRONGROOM_BILLING_PRODUCTS")] = Field(
        default_factory=dict
    )

    @field_validator("webhook_secret_ids", mode="before")
    @classmethod
    def _split_secret_ids(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        secret_ids: dict[str, str] = {}
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            source, sep, secret_id = entry.partition("=")
            if not sep or not _SOURCE.fullmatch(source) or not _SECRET_ID.fullmatch(secret_id):
                raise ValueError("each entry must be <source>=<secret ARN or name>")
            if source in secret_ids:
                raise ValueError("a source is named twice")
            secret_ids[source] = secret_id
        return secret_ids

    @field_validator("billing_products", mode="before")
    @classmethod
    def _split_products(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        products: dict[str, str] = {}
        for entry in (part.strip() for part in value.split(",")):
            if not entry:
                continue
            product, sep, plan = entry.partition("=")
            source, colon, product_id = product.partition(":")
            if not (sep and colon and _SOURCE.fullmatch(source) and _PRODUCT.fullmatch(product_id)):
                raise ValueError("each entry must be <source>:<product id>=<plan>")
            if plan not in PLANS:
                raise ValueError("a product names an unknown plan")
            if product in products:
                raise ValueError("a product is named twice")
            products[product] = plan
        return products

    @field_validator("dev_allow_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            entries = [part.strip() for part in value.split(",") if part.strip()]
            return frozenset(loopback_host_port(entry) for entry in entries)
        return value

    @field_validator("oauth_redirect_uri", "oauth_return_url")
    @classmethod
    def _browser_url(cls, value: str) -> str:
        return _check_browser_url(value)

    @property
    def org_key_alias_prefix(self) -> str:
        """KMS alias prefix for per-org keys: the org id follows it."""
        return f"alias/strongroom-{self.stage}/org/"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Validate `environ`; raise SettingsError naming each bad variable (never its value)."""
        try:
            return cls.model_validate(dict(environ))
        except ValidationError as exc:
            problems = []
            for error in exc.errors(include_input=False, include_url=False):
                name = _alias_of(error["loc"])
                problems.append(f"{name}: {error['msg']}")
            raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def _alias_of(loc: tuple[int | str, ...]) -> str:
    field_name = str(loc[0]) if loc else "?"
    field = Settings.model_fields.get(field_name)
    if field is not None and field.alias:
        return field.alias
    return field_name


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from os.environ."""
    return Settings.from_environ(os.environ)
