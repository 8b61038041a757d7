"""The function's clients and stores, made once per cold start and reused while warm."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import boto3
from botocore import UNSIGNED
from botocore.config import Config

from backup_downloads.signing import LinkSigner, ScopedRoleCredentials
from strongroom.audit.log import AuditLog
from strongroom.lazy import lazy_client
from strongroom.settings import Settings, SettingsError, get_settings
from strongroom.tenancy import TenantTable


@dataclass(frozen=True)
class Services:
    settings: Settings
    table: TenantTable
    audit: AuditLog
    signer: LinkSigner


def build_services(settings: Settings, session: boto3.Session | None = None) -> Services:
    session = session or boto3.Session()
    if settings.download_signer_role_arn is None:
        # No unscoped fallback: links are only ever signed by a narrowed session.
        raise SettingsError("invalid settings: STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN: required")
    # Each client is made when first used: a request pays only for the services it calls (a
    # listing reads the table and nothing else).
    dynamodb = lazy_client(session, "dynamodb")
    signer = LinkSigner(
        # Builds object URLs only (endpoint, addressing style); signing happens in LinkSigner.
        unsigned_s3=lazy_client(session, "s3", config=Config(signature_version=UNSIGNED)),
        credentials=ScopedRoleCredentials(
            sts=lazy_client(session, "sts"),
            role_arn=settings.download_signer_role_arn,
            stage=settings.stage,
        ),
    )
    return Services(
        settings=settings,
        table=TenantTable(dynamodb=dynamodb, table_name=settings.table_name),
        audit=AuditLog(s3=lazy_client(session, "s3"), dynamodb=dynamodb, settings=settings),
        signer=signer,
    )


@functools.cache
def services() -> Services:
    return build_services(get_settings())
