"""The function's clients and stores, made once per cold start and reused while warm."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Metrics

from strongroom.audit.log import AuditLog
from strongroom.aws_limits import TRANSFER_CALLS
from strongroom.backups import BackupSchedules
from strongroom.crypto import Keyrings
from strongroom.lazy import lazy_client, on_first_use
from strongroom.oauth import TokenService, token_service
from strongroom.outbound import RetryPolicy
from strongroom.settings import Settings, get_settings
from strongroom.tenancy import PlatformTable, TenantTable

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sqs.client import SQSClient

    from strongroom.outbound.client import OutboundClient

# A page of 200 Okta users is well under 1 MiB; anything near this cap is not a page.
MAX_PAGE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class Services:
    settings: Settings
    table: TenantTable
    schedules: BackupSchedules
    keyrings: Keyrings
    audit: AuditLog
    tokens: TokenService
    # Provider API requests (the token service has its own, with short timeouts).
    provider: OutboundClient
    # The backup bucket's objects and parts (the audit log has a client of its own).
    s3: S3Client
    sqs: SQSClient
    metrics: Any  # aws_lambda_powertools.Metrics, or anything with add_metric


def provider_client(settings: Settings, **overrides: Any) -> OutboundClient:
    """The outbound client for provider APIs: bounded retries with jitter, request timeouts."""
    options: dict[str, Any] = {
        "allow_hosts": settings.dev_allow_hosts,
        "connect_timeout": 5.0,
        "read_timeout": 30.0,
        "total_timeout": 90.0,
        "max_response_bytes": MAX_PAGE_BYTES,
        "retry": RetryPolicy(max_attempts=5, base_delay=0.5, max_delay=8.0, max_wait=65.0),
    }
    options.update(overrides)
    # Loaded here, not at import: it brings requests, which only the worker needs.
    from strongroom.outbound.client import OutboundClient  # noqa: PLC0415

    return OutboundClient(**options)


def build_services(
    settings: Settings,
    session: boto3.Session | None = None,
    *,
    provider: OutboundClient | None = None,
    metrics: Any = None,
) -> Services:
    session = session or boto3.Session()
    # Each client is made when first used: a request pays only for the services it calls (the
    # dispatcher never reads a provider, an on-demand start sends no job when it is refused).
    dynamodb = lazy_client(session, "dynamodb")
    kms = lazy_client(session, "kms")
    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    keyrings = Keyrings(kms=kms, dynamodb=dynamodb, settings=settings)
    # Audit events are small and the dispatcher has 60 s: prompt limits. Backup parts are not.
    audit = AuditLog(s3=lazy_client(session, "s3"), dynamodb=dynamodb, settings=settings)
    tokens = token_service(settings, table=table, keyrings=keyrings, audit=audit)
    return Services(
        settings=settings,
        table=table,
        schedules=BackupSchedules(
            platform=PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
        ),
        keyrings=keyrings,
        audit=audit,
        tokens=tokens,
        provider=provider or on_first_use(lambda: provider_client(settings)),
        s3=lazy_client(session, "s3", config=TRANSFER_CALLS),
        sqs=lazy_client(session, "sqs"),
        metrics=metrics if metrics is not None else Metrics(service="scheduled_backup"),
    )


@functools.cache
def services() -> Services:
    return build_services(get_settings())
