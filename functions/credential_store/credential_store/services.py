"""The function's clients and stores, made once per cold start and reused while warm."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import boto3

from strongroom.audit.log import AuditLog
from strongroom.backups import BackupSchedules
from strongroom.crypto import Keyrings
from strongroom.lazy import lazy_client
from strongroom.oauth import TokenService, token_service
from strongroom.outbound import Resolver, system_resolver
from strongroom.settings import Settings, get_settings
from strongroom.tenancy import PlatformTable, TenantTable


@dataclass(frozen=True)
class Services:
    settings: Settings
    table: TenantTable
    keyrings: Keyrings
    audit: AuditLog
    # Token requests and revocations at providers (on deletion and rotation, and by the sweep).
    tokens: TokenService
    # The platform index of scheduled backups: an entry per connection.
    schedules: BackupSchedules
    # Items of no org: the count of orgs each user has created.
    platform: PlatformTable
    # How connection endpoint URLs are resolved when checked at creation (tests inject one).
    resolver: Resolver = system_resolver


def build_services(settings: Settings, session: boto3.Session | None = None) -> Services:
    session = session or boto3.Session()
    # Each client is made when first used: a request pays only for the services it calls.
    dynamodb = lazy_client(session, "dynamodb")
    kms = lazy_client(session, "kms")
    s3 = lazy_client(session, "s3")
    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    keyrings = Keyrings(kms=kms, dynamodb=dynamodb, settings=settings)
    audit = AuditLog(s3=s3, dynamodb=dynamodb, settings=settings)
    tokens = token_service(settings, table=table, keyrings=keyrings, audit=audit)
    platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)
    return Services(
        settings=settings,
        table=table,
        keyrings=keyrings,
        audit=audit,
        tokens=tokens,
        schedules=BackupSchedules(platform=platform),
        platform=platform,
    )


@functools.cache
def services() -> Services:
    return build_services(get_settings())
