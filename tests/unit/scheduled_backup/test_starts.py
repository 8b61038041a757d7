"""Starting backups: on demand (roles, one running per connection, the plan's daily limit) and
on schedule (the due index, the plan's minimum interval, overlapping dispatchers)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from backup_jobs import runs, worker
from backup_jobs.models import BackupJob
from botocore.exceptions import ClientError

from strongroom.audit import InvalidAuditEvent
from strongroom.backups import BackupSchedules, backup_listing
from strongroom.errors import Conflict, NotFound
from strongroom.oauth import CONNECTION_KIND
from strongroom.plans import on_demand_backups_used
from strongroom.tenancy import StoreUnavailable
from tests.support.http import http_event
from tests.unit.scheduled_backup.conftest import BackupWorld, Context


def _schedules(world: BackupWorld) -> BackupSchedules:
    return world.services.schedules


def _entry(world: BackupWorld, org: str, connection: str, now: datetime):  # type: ignore[no-untyped-def]
    entries = [
        e
        for e in _schedules(world).due(now=now)
        if (e.org_id, e.connection_id) == (org, connection)
    ]
    return entries[0] if entries else None


def test_on_demand_is_for_admins_and_idempotent_while_running(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org)
    assert world.start(org, connection, sub="carol")[0] == 403
    assert world.start(org, connection, sub="mallory")[0] == 404
    other = world.new_org(owner="dave")
    assert world.start(other, connection, sub="dave")[0] == 404  # another org's connection
    status, first = world.start(org, connection)
    assert status == 202
    status, again = world.start(org, connection, sub="alice")
    assert (status, again) == (202, first)  # still running: the same backup
    assert world.drain() == 1  # one job, not two
    assert world.record(org, first["backup_id"])["status"] == "complete"
    status, next_one = world.start(org, connection)
    assert status == 202
    assert next_one["backup_id"] != first["backup_id"]


def test_the_plans_daily_limit_answers_429_and_counts_no_repeat(world: BackupWorld) -> None:
    org = world.new_org()  # the free plan: 2 on-demand backups a day
    connection = world.connect(org)
    for _ in range(2):
        status, body = world.start(org, connection)
        assert status == 202
        assert world.start(org, connection)[0] == 202  # a repeat while running is free
        world.drain()
    status, body = world.start(org, connection)
    assert status == 429
    assert body["error"]["code"] == "rate_limited"


def test_the_dispatcher_starts_due_connections_once(world: BackupWorld) -> None:
    org = world.new_org()
    created = datetime.now(UTC)
    connection = world.connect(org, schedule="rate(1 day)")
    services = world.services
    assert _entry(world, org, connection, created + timedelta(hours=23)) is None
    due_at = created + timedelta(days=1, seconds=2)
    entry = _entry(world, org, connection, due_at)
    assert entry is not None
    first = runs.dispatch_due(services, now=due_at, request_id="r1")
    second = runs.dispatch_due(services, now=due_at, request_id="r2")  # an overlapping run
    assert (first.started, second.started) == (1, 0)
    assert world.drain() == 1
    # Next due one day after the run it started.
    assert _entry(world, org, connection, due_at) is None
    later = _entry(world, org, connection, entry.next_run + timedelta(days=1))
    assert later is not None
    assert later.next_run == entry.next_run + timedelta(days=1)


def test_the_dispatcher_holds_to_the_plans_minimum_interval(world: BackupWorld) -> None:
    org = world.new_org()
    world.services.table.update(org, "ORG", changes={"plan": "team"}, now=datetime.now(UTC))
    connection = world.connect(org, schedule="rate(1 hour)")
    # Downgraded to the free plan: at most one run a day, whatever the schedule says.
    world.services.table.update(org, "ORG", changes={"plan": "free"}, now=datetime.now(UTC))
    due_at = datetime.now(UTC) + timedelta(hours=1, seconds=2)
    entry = _entry(world, org, connection, due_at)
    assert entry is not None
    assert runs.dispatch_due(world.services, now=due_at, request_id="r").started == 1
    moved = _entry(world, org, connection, due_at + timedelta(days=2))
    assert moved is not None
    assert moved.next_run >= entry.next_run + timedelta(days=1)
    assert moved.next_run - entry.next_run < timedelta(days=1, hours=1)


def test_a_deleted_connection_leaves_no_schedule_and_its_queued_job_fails(
    world: BackupWorld,
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    far = datetime.now(UTC) + timedelta(days=3)
    assert _entry(world, org, connection, far) is not None
    _, body = world.start(org, connection)
    world.delete_connection(org, connection)
    assert _entry(world, org, connection, far) is None
    assert world.drain() == 1
    record = world.record(org, body["backup_id"])
    assert (record["status"], record["failure_reason"]) == ("failed", "connection_deleted")
    # An entry left behind (a crash between the two writes) is dropped when it comes due.
    _schedules(world).register(org, connection, "rate(1 day)", anchor=far, now=far)
    report = runs.dispatch_due(
        world.services, now=far + timedelta(days=1, seconds=1), request_id="r"
    )
    assert (report.started, report.dropped) == (0, 1)


def test_a_stored_schedule_that_no_longer_parses_is_dropped_and_said(
    world: BackupWorld, caplog: pytest.LogCaptureFixture
) -> None:
    org = world.new_org()
    connection = world.connect(org, schedule="rate(1 day)")
    due_at = datetime.now(UTC) + timedelta(days=1, seconds=2)
    # Accepted by an older parser; EventBridge's cron takes no step in day-of-week.
    world.services.table.update(
        org, CONNECTION_KIND, connection, changes={"schedule": "cron(0 3 ? * */2 *)"}, now=due_at
    )
    report = runs.dispatch_due(world.services, now=due_at, request_id="r")
    assert (report.started, report.dropped) == (0, 1)
    assert _entry(world, org, connection, due_at + timedelta(days=30)) is None
    warned = [r for r in caplog.records if "schedule does not parse" in r.getMessage()]
    assert len(warned) == 1
    assert (warned[0].org_id, warned[0].connection_id) == (org, connection)  # type: ignore[attr-defined]


def test_a_job_that_cannot_be_queued_fails_its_backup_at_once_and_is_not_a_use(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()  # the free plan: 2 on-demand backups a day
    connection = world.connect(org)

    def unavailable(**_kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessage")

    with monkeypatch.context() as patch:
        patch.setattr(world.sqs, "send_message", unavailable)
        status, _ = world.start(org, connection)
    assert status == 500
    listing = world.services.table.query_index(
        org, backup_listing(connection), now=datetime.now(UTC), limit=10
    )
    [record] = [dict(item.attributes) for item in listing.items]
    assert (record["status"], record["failure_reason"]) == ("failed", "not_queued")
    # Not left "running": the connection is free, and the failed start did not count.
    for _ in range(2):
        status, body = world.start(org, connection)
        assert status == 202
        world.drain()
        assert world.record(org, body["backup_id"])["status"] == "complete"


@pytest.mark.parametrize(("new_role", "expected"), [(None, 404), ("member", 409)])
def test_an_admin_removed_or_demoted_during_an_on_demand_start_starts_nothing(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch, new_role: str | None, expected: int
) -> None:
    org = world.new_org()  # the free plan: 2 on-demand backups a day
    connection = world.connect(org)
    checked = runs.running_backup

    def role_changed_after_the_check(*args: Any, **kwargs: Any) -> Any:
        path = {"org_id": org, "user_id": "bob"}
        status, _ = world._call(
            world.credential_store,
            http_event(
                "PUT" if new_role else "DELETE",
                f"/orgs/{org}/members/bob",
                route="/orgs/{org_id}/members/{user_id}",
                path_parameters=path,
                sub="alice",
                body={"role": new_role} if new_role else None,
            ),
        )
        assert status in {200, 204}
        return checked(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(runs, "running_backup", role_changed_after_the_check)
        assert world.start(org, connection)[0] == expected

    listed = world.services.table.query_index(
        org, backup_listing(connection), now=datetime.now(UTC), limit=10
    )
    assert listed.items == ()
    assert world.drain() == 0  # no job queued
    # The refused start used none of the day's on-demand backups.
    for _ in range(2):
        assert world.start(org, connection, sub="alice")[0] == 202
        world.drain()


@pytest.mark.parametrize("trigger", ["on_demand", "schedule"])
def test_a_connection_deleted_during_a_start_gets_no_backup(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch, trigger: str
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    read = runs._connection

    def deleted_after_the_read(*args: Any, **kwargs: Any) -> Any:
        attributes = read(*args, **kwargs)
        path = {"org_id": org, "connection_id": connection}
        status, _ = world._call(
            world.credential_store,
            http_event(
                "DELETE",
                f"/orgs/{org}/connections/{connection}",
                route="/orgs/{org_id}/connections/{connection_id}",
                path_parameters=path,
                sub="alice",
            ),
        )
        assert status == 204
        return attributes

    with monkeypatch.context() as patch:
        patch.setattr(runs, "_connection", deleted_after_the_read)
        if trigger == "on_demand":
            assert world.start(org, connection)[0] == 404
        else:
            with pytest.raises(NotFound):
                runs.start_backup(
                    world.services,
                    org,
                    connection,
                    trigger="schedule",
                    requested_by="schedule",
                    now=datetime.now(UTC),
                    request_id="r1",
                )
    listed = world.services.table.query_index(
        org, backup_listing(connection), now=datetime.now(UTC), limit=10
    )
    assert listed.items == ()
    assert world.drain() == 0  # no job queued


def test_a_start_during_an_audit_outage_runs_and_is_audited_afterwards(
    world: BackupWorld,
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    down: dict[str, Any] = {"s3": True, "marks": False}
    world.audit_outage(down)
    status, body = world.start(org, connection)
    down["s3"] = False
    assert status == 202  # started and queued: an error would leave nothing to retry
    assert world.drain() == 1
    assert world.record(org, body["backup_id"])["status"] == "complete"
    # The worker's own flush, as the backup completed, appended the start's entry first.
    page = world.services.audit.list_events(org, now=datetime.now(UTC), limit=100)
    actions = [event.action for event in reversed(page.events)]
    assert actions.count("backup.start") == 1
    assert actions.index("backup.start") < actions.index("backup.complete")
    [started] = [event for event in page.events if event.action == "backup.start"]
    assert started.details["backup_id"] == body["backup_id"]
    assert started.entry_id is not None  # recorded with the start


def test_a_start_whose_audit_cannot_be_recorded_is_not_made(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org)
    down = {"s3": False, "marks": True}
    world.audit_outage(down)
    assert world.start(org, connection)[0] == 500
    down["marks"] = False
    listing = world.services.table.query_index(
        org, backup_listing(connection), now=datetime.now(UTC), limit=10
    )
    assert listing.items == ()  # no backup "running" that nothing runs
    assert world.drain() == 0
    assert world.start(org, connection)[0] == 202  # the connection is free


def test_a_removed_admin_racing_a_running_backup_gets_404_not_its_id(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    checked = runs.running_backup
    other: dict[str, Any] = {}

    def meanwhile(*args: Any, **kwargs: Any) -> Any:
        found = checked(*args, **kwargs)
        if other:  # alice's own start, below
            return found
        other["body"] = {}
        # Between bob's checks and his write: alice starts one, and removes bob.
        status, other["body"] = world.start(org, connection, sub="alice")
        assert status == 202
        status, _ = world._call(
            world.credential_store,
            http_event(
                "DELETE",
                f"/orgs/{org}/members/bob",
                route="/orgs/{org_id}/members/{user_id}",
                path_parameters={"org_id": org, "user_id": "bob"},
                sub="alice",
            ),
        )
        assert status == 204
        return found

    with monkeypatch.context() as patch:
        patch.setattr(runs, "running_backup", meanwhile)
        status, body = world.start(org, connection, sub="bob")
    assert status == 404, body
    assert other["body"]["backup_id"] not in str(body)


def _once_at(moment: datetime) -> str:
    """A cron() that fires at `moment` (to the minute) and never again: its year is given."""
    return f"cron({moment.minute} {moment.hour} {moment.day} {moment.month} ? {moment.year})"


def test_a_schedules_last_run_starts_and_its_entry_goes_with_it(world: BackupWorld) -> None:
    org = world.new_org()
    last = (datetime.now(UTC) + timedelta(hours=2)).replace(second=0, microsecond=0)
    connection = world.connect(org, schedule=_once_at(last))
    entry = _entry(world, org, connection, last)
    assert entry is not None
    assert entry.next_run == last
    due_at = last + timedelta(seconds=5)
    report = runs.dispatch_due(world.services, now=due_at, request_id="r1")
    assert (report.started, report.ended, report.failed) == (1, 1, 0)
    assert _entry(world, org, connection, due_at + timedelta(days=800)) is None
    # Later ticks find nothing of it, and raise nothing.
    again = runs.dispatch_due(world.services, now=due_at + timedelta(days=1), request_id="r2")
    assert (again.started, again.failed) == (0, 0)


def test_one_entrys_fault_never_stops_the_others(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken_org, healthy_org = world.new_org(), world.new_org()
    broken = world.connect(broken_org)
    healthy = world.connect(healthy_org)
    real_plan = runs._plan

    def plan(services: Any, org_id: str, *, now: datetime) -> Any:
        if org_id == broken_org:
            raise RuntimeError("a defect that this org's data reaches")
        return real_plan(services, org_id, now=now)

    monkeypatch.setattr(runs, "_plan", plan)
    due_at = datetime.now(UTC) + timedelta(days=1, seconds=2)
    report = runs.dispatch_due(world.services, now=due_at, request_id="r")
    assert (report.started, report.failed) == (1, 1)
    assert runs.running_backup(world.services, healthy_org, healthy, now=due_at) is not None
    assert runs.running_backup(world.services, broken_org, broken, now=due_at) is None
    # The broken entry is still due: tried again at the next tick.
    assert _entry(world, broken_org, broken, due_at) is not None


def test_a_scheduled_start_that_wrote_nothing_is_due_again(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    due_at = datetime.now(UTC) + timedelta(days=1, seconds=2)
    entry = _entry(world, org, connection, due_at)
    assert entry is not None
    table = world.services.table
    real_transact = table.transact

    def transact(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("DynamoDB is down")

    monkeypatch.setattr(table, "transact", transact)
    report = runs.dispatch_due(world.services, now=due_at, request_id="r1")
    assert (report.started, report.failed) == (0, 1)
    still = _entry(world, org, connection, due_at)
    assert still is not None
    assert still.next_run == entry.next_run
    monkeypatch.setattr(table, "transact", real_transact)
    assert runs.dispatch_due(world.services, now=due_at, request_id="r2").started == 1


def test_a_run_item_left_by_a_finished_backup_holds_up_no_start(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    finished = body["backup_id"]
    dynamodb = world.services.table._store.client
    down = {"on": True}

    def run_item_not_deleted(params: dict[str, Any], **_: Any) -> None:
        if down["on"] and "BACKUP_RUN" in str(params.get("Key")):
            raise ClientError({"Error": {"Code": "ServiceUnavailable"}}, "DeleteItem")

    dynamodb.meta.events.register(
        "before-parameter-build.dynamodb.DeleteItem", run_item_not_deleted
    )
    assert world.drain() >= 1
    down["on"] = False
    assert world.record(org, finished)["status"] == "complete"
    # The run item still names it, but it has ended: a new backup starts, on demand...
    status, again = world.start(org, connection)
    assert status == 202, again
    assert again["backup_id"] != finished
    assert world.drain() >= 1
    # ...and on schedule, where a start that finds the stale item retries once it is gone.
    dynamodb.meta.events.unregister(
        "before-parameter-build.dynamodb.DeleteItem", run_item_not_deleted
    )
    now = datetime.now(UTC)
    world.services.table.put(
        org, "BACKUP_RUN", connection, attributes={"backup_id": finished}, now=now
    )
    started = runs.start_backup(
        world.services,
        org,
        connection,
        trigger="schedule",
        requested_by=runs.SCHEDULER,
        now=now,
        request_id="r",
    )
    assert started.new
    assert runs.running_backup(world.services, org, connection, now=now) == started.backup_id


def test_a_backup_that_outlasts_the_run_items_ttl_keeps_its_connection(
    world: BackupWorld,
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    _, body = world.start(org, connection)
    backup_id = body["backup_id"]
    started = datetime.now(UTC)

    def step(at: datetime) -> worker.Outcome:
        # No time left: one step of progress, then a checkpoint and a continuation.
        continuation = int(world.record(org, backup_id).get("continuation", 0))
        job = BackupJob(
            org_id=org, connection_id=connection, backup_id=backup_id, continuation=continuation
        )
        budget = worker.Budget(time_left=lambda: 0.0, clock=lambda: at)
        return worker.run_job(world.services, job, budget=budget, receive_count=1, request_id="r")

    def run_item(at: datetime) -> Any:
        return world.services.table.get(org, runs.RUN_KIND, connection, now=at)

    # Each step moves the run item's expiry to a full TTL after its claim.
    late = started + runs.RUN_TTL - timedelta(minutes=30)
    assert step(late) == worker.Outcome("checkpointed")
    assert run_item(late).expires_at == int((late + runs.RUN_TTL).timestamp())
    # Past the first TTL the backup still holds the connection: a start answers with its id.
    past_first = started + runs.RUN_TTL + timedelta(hours=1)
    assert runs.running_backup(world.services, org, connection, now=past_first) == backup_id
    # A run item that did expire (steps stalled that long) is taken back by the next step.
    stalled = late + runs.RUN_TTL + timedelta(minutes=5)
    assert step(stalled) == worker.Outcome("checkpointed")
    assert run_item(stalled).attributes["backup_id"] == backup_id
    assert run_item(stalled).expires_at == int((stalled + runs.RUN_TTL).timestamp())


@pytest.mark.parametrize(
    ("fault", "due_again"),
    [
        (Conflict("A backup of this connection just ended; try again."), True),
        (InvalidAuditEvent("invalid audit event fields: details"), False),  # would recur
    ],
)
def test_only_a_start_the_next_tick_can_cure_is_put_back(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch, fault: Exception, due_again: bool
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    due_at = datetime.now(UTC) + timedelta(days=1, seconds=2)

    def start_backup(*args: Any, **kwargs: Any) -> Any:
        raise fault

    monkeypatch.setattr(runs, "start_backup", start_backup)
    assert runs.dispatch_due(world.services, now=due_at, request_id="r").failed == 1
    assert (_entry(world, org, connection, due_at) is not None) is due_again


# ---- an org whose deletion has shredded its key ------------------------------------------------

BEING_DELETED = {"error": {"code": "conflict", "message": "The org is being deleted."}}


def _shredded(world: BackupWorld, org: str) -> None:
    """The owner's (alice's) DELETE, answered 202: the key shredded, every other member removed,
    the org's connections still there."""
    event = http_event(
        "DELETE",
        f"/orgs/{org}",
        route="/orgs/{org_id}",
        path_parameters={"org_id": org},
        claims={"auth_time": str(int(time.time()) - 10)},
    )
    response = world.credential_store.lambda_handler(event, Context(lambda: 1000))
    assert response["statusCode"] == 202


def _partition(world: BackupWorld, org: str) -> set[str]:
    """Sort keys of every item in the org's partition, expired or not."""
    items = boto3.client("dynamodb").query(
        TableName=world.settings.table_name,
        KeyConditionExpression="pk = :org",
        ExpressionAttributeValues={":org": {"S": org}},
        ConsistentRead=True,
    )["Items"]
    return {item["sk"]["S"] for item in items}


@pytest.mark.parametrize("shredded_after_the_read", [False, True])
def test_no_backup_is_started_once_the_org_is_shredded(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch, shredded_after_the_read: bool
) -> None:
    org = world.new_org()
    connection = world.connect(org)
    if shredded_after_the_read:
        checked = runs.refuse_if_shredded

        def shredded_right_after_the_check(*args: Any, **kwargs: Any) -> None:
            checked(*args, **kwargs)
            _shredded(world, org)

        monkeypatch.setattr(runs, "refuse_if_shredded", shredded_right_after_the_check)
    else:
        _shredded(world, org)
    before = _partition(world, org)

    assert world.start(org, connection, sub="alice") == (409, BEING_DELETED)

    # No backup record, no run item: the deletion would pass over them. No job either.
    written = _partition(world, org) - before
    assert not any(sk.startswith(("BACKUP#", "BACKUP_RUN#")) for sk in written)
    assert world.drain() == 0
    if shredded_after_the_read:
        # The day's counter was moved before the start was refused, and given back (it expires
        # with its day).
        assert on_demand_backups_used(world.services.table, org, now=datetime.now(UTC)) == 0
    else:
        assert written == set()


def test_no_scheduled_backup_is_started_once_the_org_is_shredded(world: BackupWorld) -> None:
    org = world.new_org()
    connection = world.connect(org)
    due_at = datetime.now(UTC) + timedelta(days=1, seconds=2)
    _shredded(world, org)
    before = _partition(world, org)

    report = runs.dispatch_due(world.services, now=due_at, request_id="r1")

    assert (report.started, report.failed) == (0, 1)
    assert _partition(world, org) == before
    assert world.drain() == 0
    # Left due until the deletion, once finished, has removed it with the connection.
    assert _entry(world, org, connection, due_at) is not None
    event = http_event(
        "DELETE",
        f"/orgs/{org}",
        route="/orgs/{org_id}",
        path_parameters={"org_id": org},
        claims={"auth_time": str(int(time.time()) - 10)},
    )
    assert world.credential_store.lambda_handler(event, Context())["statusCode"] == 204
    assert _entry(world, org, connection, due_at) is None
    assert _partition(world, org) == {"AUDIT#HEAD"}
