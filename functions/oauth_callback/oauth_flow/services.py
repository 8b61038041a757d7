"""The function's clients and stores, made once per cold start and reused while warm."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import boto3

from strongroom.audit.log import AuditLog
from strongroom.crypto import Keyrings
from strongroom.oauth import TokenService, token_service
from strongroom.settings import Settings, get_settings
from strongroom.tenancy import TenantTable


@dataclass(frozen=True)
class Services:
    settings: Settings
    table: TenantTable
    keyrings: Keyrings
    audit: AuditLog
    tokens: TokenService


def build_services(settings: Settings, session: boto3.Session | None = None) -> Services:
    session = session or boto3.Session()
    dynamodb = session.client("dynamodb")
    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    keyrings = Keyrings(kms=session.client("kms"), dynamodb=dynamodb, settings=settings)
    audit = AuditLog(s3=session.client("s3"), dynamodb=dynamodb, settings=settings)
    tokens = token_service(settings, table=table, keyrings=keyrings, audit=audit)
    return Services(settings=settings, table=table, keyrings=keyrings, audit=audit, tokens=tokens)


@functools.cache
def services() -> Services:
    return build_services(get_settings())
