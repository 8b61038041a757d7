"""Listings: pages and cursors within one org and kind, newest first, gsi1 partitions."""

from __future__ import annotations

import base64
import json

import pytest

from strongroom.tenancy import IndexKey, InvalidCursor, Page, TenantTable
from tests.unit.tenancy.conftest import NOW, OperationLog


def _all_pages(first: Page, next_page: object) -> list[list[str | None]]:
    pages = [[item.item_id for item in first.items]]
    cursor = first.cursor
    while cursor is not None:
        page = next_page(cursor)  # type: ignore[operator]
        pages.append([item.item_id for item in page.items])
        cursor = page.cursor
    return pages


def _forge(org_id: str, listing: str, key: dict[str, str]) -> str:
    text = json.dumps({"v": 1, "o": org_id, "l": listing, "k": key})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.fixture
def members(table: TenantTable, org_id: str, other_org_id: str) -> list[str]:
    ids = [f"user_{n:02d}" for n in range(7)]
    for user_id in ids:
        table.create(org_id, "MEMBER", user_id, attributes={"role": "member"}, now=NOW)
    # Neighbours that a sloppy prefix or partition would leak into the listing.
    table.create(org_id, "ORG", attributes={"name": "Acme"}, now=NOW)
    table.create(org_id, "MEMBERSHIP_INVITE", "user_99", attributes={}, now=NOW)
    table.create(other_org_id, "MEMBER", "user_50", attributes={"role": "owner"}, now=NOW)
    return ids


def test_pages_cover_the_kind_exactly_once_in_either_order(
    table: TenantTable, org_id: str, members: list[str], operations: OperationLog
) -> None:
    first = table.query(org_id, "MEMBER", limit=3, now=NOW)
    pages = _all_pages(
        first, lambda cursor: table.query(org_id, "MEMBER", limit=3, cursor=cursor, now=NOW)
    )
    assert pages == [members[0:3], members[3:6], members[6:7]]
    assert "Query" in operations.names  # the guard sees the calls, so it would see a Scan

    first = table.query(org_id, "MEMBER", limit=4, newest_first=True, now=NOW)
    pages = _all_pages(
        first,
        lambda cursor: table.query(
            org_id, "MEMBER", limit=4, cursor=cursor, newest_first=True, now=NOW
        ),
    )
    assert pages == [members[::-1][0:4], members[::-1][4:7]]


def test_a_cursor_is_bound_to_its_org_and_listing(
    table: TenantTable, org_id: str, other_org_id: str, members: list[str]
) -> None:
    cursor = table.query(org_id, "MEMBER", limit=2, now=NOW).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor, match="another org"):
        table.query(other_org_id, "MEMBER", limit=2, cursor=cursor, now=NOW)
    # ... and to its listing: kind, direction, base table or index.
    with pytest.raises(InvalidCursor, match="another listing"):
        table.query(org_id, "CONN", cursor=cursor, now=NOW)
    with pytest.raises(InvalidCursor, match="another listing"):
        table.query(org_id, "MEMBER", cursor=cursor, newest_first=True, now=NOW)
    with pytest.raises(InvalidCursor, match="another listing"):
        table.query_index(org_id, "MEMBER", cursor=cursor, now=NOW)
    # A forged cursor cannot point into another partition or kind.
    listing = "kind MEMBER asc"
    for key in (
        {"pk": other_org_id, "sk": "MEMBER#user_00"},  # claims our org, starts in theirs
        {"pk": org_id, "sk": "KEYRING"},
        {"pk": org_id, "sk": "MEMBERSHIP_INVITE#user_00"},
    ):
        with pytest.raises(InvalidCursor, match="another listing"):
            table.query(org_id, "MEMBER", cursor=_forge(org_id, listing, key), now=NOW)
    # The same shape pointing inside the listing is simply followed.
    inside = _forge(org_id, listing, {"pk": org_id, "sk": "MEMBER#user_04"})
    page = table.query(org_id, "MEMBER", cursor=inside, now=NOW)
    assert [item.item_id for item in page.items] == ["user_05", "user_06"]


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "not base64!",
        "e30",
        "x" * 5000,
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        # Nested deeper than the JSON decoder recurses (RecursionError, not ValueError, on 3.11).
        base64.urlsafe_b64encode(b"[" * 3000).decode(),
    ],
)
def test_malformed_cursors_are_refused(
    offline_table: TenantTable, org_id: str, cursor: str
) -> None:
    with pytest.raises(InvalidCursor):
        offline_table.query(org_id, "MEMBER", cursor=cursor, now=NOW)


def test_limit_bounds(offline_table: TenantTable, org_id: str) -> None:
    for limit in (0, 1001, -1):
        with pytest.raises(ValueError, match="limit"):
            offline_table.query(org_id, "MEMBER", limit=limit, now=NOW)


def test_index_listing_within_the_org_newest_first_with_pages(
    table: TenantTable, org_id: str, other_org_id: str
) -> None:
    for day in range(1, 6):
        table.create(
            org_id,
            "BACKUP",
            f"bkp_{day}",
            attributes={"day": day},
            index=IndexKey("CONN#conn_1", f"2026-01-0{day}T00:00:00Z"),
            now=NOW,
        )
    table.create(
        org_id,
        "BACKUP",
        "bkp_other_conn",
        attributes={},
        index=IndexKey("CONN#conn_2", "2026-01-09T00:00:00Z"),
        now=NOW,
    )
    table.create(
        other_org_id,
        "BACKUP",
        "bkp_theirs",
        attributes={},
        index=IndexKey("CONN#conn_1", "2026-01-09T00:00:00Z"),
        now=NOW,
    )

    def page(cursor: str | None) -> Page:
        return table.query_index(
            org_id, "CONN#conn_1", limit=2, cursor=cursor, newest_first=True, now=NOW
        )

    pages = _all_pages(page(None), page)
    assert pages == [["bkp_5", "bkp_4"], ["bkp_3", "bkp_2"], ["bkp_1"]]

    january_third = table.query_index(org_id, "CONN#conn_1", sort_prefix="2026-01-03", now=NOW)
    assert [item.item_id for item in january_third.items] == ["bkp_3"]

    cursor = page(None).cursor
    assert cursor is not None
    with pytest.raises(InvalidCursor, match="another org"):
        table.query_index(
            other_org_id, "CONN#conn_1", limit=2, cursor=cursor, newest_first=True, now=NOW
        )
    with pytest.raises(InvalidCursor, match="another listing"):
        table.query_index(org_id, "CONN#conn_2", limit=2, cursor=cursor, newest_first=True, now=NOW)


def test_a_partition_listing_holds_every_kind_of_the_org_and_nothing_else(
    table: TenantTable, org_id: str, other_org_id: str, members: list[str]
) -> None:
    first = table.query_partition(org_id, limit=3, now=NOW)
    pages = _all_pages(
        first, lambda cursor: table.query_partition(org_id, limit=3, cursor=cursor, now=NOW)
    )
    listed = [item for page in pages for item in page]
    assert listed == [*members, "user_99", None]  # MEMBER#..., MEMBERSHIP_INVITE#..., ORG
    # A cursor of another org's partition, or of another listing, is refused.
    table.create(other_org_id, "MEMBER", "user_51", attributes={"role": "member"}, now=NOW)
    other = table.query_partition(other_org_id, limit=1, now=NOW)
    assert other.cursor is not None
    with pytest.raises(InvalidCursor):
        table.query_partition(org_id, cursor=other.cursor, now=NOW)
    kind_cursor = table.query(org_id, "MEMBER", limit=1, now=NOW).cursor
    with pytest.raises(InvalidCursor):
        table.query_partition(org_id, cursor=kind_cursor, now=NOW)
