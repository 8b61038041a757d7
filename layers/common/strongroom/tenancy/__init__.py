"""Tenancy: every tenant item is read and written with its org id; platform items apart.

    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    org_id = new_org_id()
    table.create(org_id, "ORG", attributes={"name": "Acme", "version": 1}, now=now)
    table.update(org_id, "ORG", changes={"version": 2}, expect={"version": 1}, now=now)
    page = table.query(org_id, "MEMBER", limit=50, cursor=cursor, now=now)
    table.transact(org_id, [Create("CONN", cid, attributes=...),
                            Increment("ORG", attribute="connections", ceiling=plan_limit)], now=now)

    platform = PlatformTable(dynamodb=dynamodb, table_name=settings.table_name)

Layout (see `keys`): tenant pk = org id, sk = "<KIND>#<id>" or "<KIND>"; `KEYRING` and `DEK#...`
belong to strongroom.crypto and are refused here. Items past `expires_at` read as absent.
DynamoDB failures raise `StoreUnavailable`, never `ItemNotFound`.
"""

from strongroom.tenancy.exceptions import (
    ConditionFailed,
    InvalidCursor,
    InvalidKey,
    InvalidOrgId,
    ItemExists,
    ItemNotFound,
    LimitReached,
    StoreUnavailable,
    TenancyError,
    WriteConflict,
)
from strongroom.tenancy.items import IndexKey, Item, Page, every_item
from strongroom.tenancy.keys import new_org_id, validate_org_id
from strongroom.tenancy.platform_table import PlatformTable
from strongroom.tenancy.store import transaction_worst_case_seconds
from strongroom.tenancy.tenant_table import (
    Check,
    Create,
    Delete,
    Increment,
    Operation,
    TenantTable,
    Update,
)

__all__ = [
    "Check",
    "ConditionFailed",
    "Create",
    "Delete",
    "Increment",
    "IndexKey",
    "InvalidCursor",
    "InvalidKey",
    "InvalidOrgId",
    "Item",
    "ItemExists",
    "ItemNotFound",
    "LimitReached",
    "Operation",
    "Page",
    "PlatformTable",
    "StoreUnavailable",
    "TenancyError",
    "TenantTable",
    "Update",
    "WriteConflict",
    "every_item",
    "new_org_id",
    "transaction_worst_case_seconds",
    "validate_org_id",
]
