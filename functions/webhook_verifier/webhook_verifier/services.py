"""The function's clients and stores, made once per cold start and reused while warm."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import boto3

from strongroom.audit.log import AuditLog
from strongroom.deployment_secrets import ActiveSecrets
from strongroom.lazy import lazy_client
from strongroom.settings import Settings, get_settings
from strongroom.tenancy import PlatformTable, TenantTable


@dataclass(frozen=True)
class Services:
    settings: Settings
    table: TenantTable
    platform: PlatformTable
    audit: AuditLog
    # Each source's active signing secrets, cached for POWERTOOLS_PARAMETERS_MAX_AGE seconds.
    secrets: ActiveSecrets


def build_services(settings: Settings, session: boto3.Session | None = None) -> Services:
    session = session or boto3.Session()
    # Each client is made when first used: a request pays only for the services it calls (a
    # delivery that does not verify reads its secrets and nothing else).
    dynamodb = lazy_client(session, "dynamodb")
    return Services(
        settings=settings,
        table=TenantTable(dynamodb=dynamodb, table_name=settings.table_name),
        platform=PlatformTable(dynamodb=dynamodb, table_name=settings.table_name),
        audit=AuditLog(s3=lazy_client(session, "s3"), dynamodb=dynamodb, settings=settings),
        secrets=ActiveSecrets(secretsmanager=lazy_client(session, "secretsmanager")),
    )


@functools.cache
def services() -> Services:
    return build_services(get_settings())
