"""Backup of a large sandbox Okta org: wall time against the rate-limit floor, 429s, peak memory.

Org: 100,000 users, 5,000 groups, 1,000 apps (BENCH_BACKUP_USERS / _GROUPS / _APPS to change).
The sandbox Okta runs in its own process and moto's server in another, as in the local stack; the
worker runs here, through its real code (`worker.run_job`: token service, outbound client, rate
gate, multipart uploads, read-back verification, manifest, record).

Baseline, measured in the same run: the same backup with no effective rate limit (what reading,
serialising, uploading to moto and reading back cost on this machine). Rate limits are then set
so that the run takes about a minute (BENCH_BACKUP_SECONDS), or 1.5x the baseline if the machine
cannot do the work in a minute: the requests the backup needs per bucket are counted from the
sandbox's listings, and every bucket gets the same rate, ΣN / target, in windows of WINDOW
seconds. Two floors, what those limits allow:
- a client that reads one resource after another: Σ over buckets of requests / rate (the
  "requests needed / allowed rate" of the target);
- any client at all, however it overlaps buckets: the busiest bucket's requests / rate. The
  worker reads its lanes of buckets side by side, so it can go below the first floor, never
  below this one.
Target: wall time at most 1.15x the floor, no 429 (the headers are honest), worker peak memory
at most 256 MB (peak RSS of this process, which also holds boto3, Powertools and the test
harness; the RSS before the backup is printed as the baseline).

Not part of `make test`; run with `make bench` or `.venv/bin/python benchmarks/bench_backup.py`.
"""

from __future__ import annotations

import json
import math
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
USERS = int(os.environ.get("BENCH_BACKUP_USERS", "100000"))
GROUPS = int(os.environ.get("BENCH_BACKUP_GROUPS", "5000"))
APPS = int(os.environ.get("BENCH_BACKUP_APPS", "1000"))
TARGET_SECONDS = float(os.environ.get("BENCH_BACKUP_SECONDS", "60"))
WINDOW = 5.0
BUCKETS = (
    "/api/v1/users",
    "/api/v1/users/{id}",
    "/api/v1/groups",
    "/api/v1/groups/{id}",
    "/api/v1/apps",
    "/api/v1/apps/{id}",
    "/api/v1",
)


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    code = (
        "import logging, time\n"
        "from moto.server import ThreadedMotoServer\n"
        "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
        f"server = ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False)\n"
        "server.start()\n"
        "print('ready', flush=True)\n"
        "while True: time.sleep(3600)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)  # noqa: S603
    assert process.stdout is not None
    process.stdout.readline()
    return process, f"http://127.0.0.1:{port}"


def _start_sandbox() -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "strongroom_local.sandbox_okta",
            "--users",
            str(USERS),
            "--size",
            f"groups={GROUPS}",
            "--size",
            f"apps={APPS}",
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["sandbox_okta"]


def _requests_needed(sandbox: dict[str, Any]) -> dict[str, int]:
    """Requests per bucket a backup makes: every page of every listing it reads."""
    sys.path.insert(0, str(REPO / "functions" / "scheduled_backup"))
    from backup_jobs.okta import OKTA_RESOURCES, first_url, okta_bucket

    from strongroom_local.sandbox_okta import OrgSpec, SandboxOrg, resource_listings

    org = SandboxOrg(OrgSpec(**sandbox["sizes"]), sandbox["url"])
    needed = dict.fromkeys(BUCKETS, 0)
    admins = {p["userId"] for p, listing in resource_listings(org, "user_roles") if listing.count}
    for spec in OKTA_RESOURCES:
        for parameters, listing in resource_listings(org, spec.name):
            if spec.name == "user_roles" and parameters["userId"] not in admins:
                continue  # read only for the users the assignees listing names
            url = first_url(sandbox["url"], spec, parameters)
            page = spec.page_size or listing.count or 1
            pages = max(1, math.ceil(listing.count / page)) if not spec.single else 1
            needed[okta_bucket(urlsplit(url).path)] += pages
    return needed


def main() -> int:
    moto, aws_url = _start_moto()
    okta, sandbox = _start_sandbox()
    try:
        return run(aws_url, sandbox)
    finally:
        for process in (okta, moto):
            process.terminate()
            process.wait(10)


def run(aws_url: str, sandbox: dict[str, Any]) -> int:  # noqa: PLR0915 - one straight script
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": aws_url,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POWERTOOLS_METRICS_NAMESPACE": "Strongroom",
            "POWERTOOLS_TRACE_DISABLED": "1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
    )
    sys.path.insert(0, str(REPO / "functions" / "scheduled_backup"))
    sys.path.insert(0, str(REPO / "functions" / "credential_store"))
    import boto3
    from backup_jobs import runs, worker
    from backup_jobs.models import BackupJob
    from backup_jobs.services import build_services

    from strongroom.crypto import Keyrings
    from strongroom.oauth import SEALED_KIND, sealed_attribute
    from strongroom.settings import Settings
    from strongroom.tenancy import TenantTable, new_org_id
    from strongroom_local.provision import provision
    from strongroom_local.sandbox_okta import SandboxControl

    session = boto3.Session(region_name="us-east-1")
    stack = provision(session)
    environment = stack.function_environment("BackupWorkerFunction")
    environment["STRONGROOM_DEV_ALLOW_HOSTS"] = sandbox["host_port"]
    os.environ.update(environment)
    settings = Settings.from_environ(os.environ)

    # An org, its key and keyring, and a connection to the sandbox (as credential_store would).
    now = datetime.now(UTC)
    dynamodb = session.client("dynamodb")
    keyrings = Keyrings(kms=session.client("kms"), dynamodb=dynamodb, settings=settings)
    table = TenantTable(dynamodb=dynamodb, table_name=settings.table_name)
    org_id = new_org_id()
    keyrings.create_keyring(org_id, kms_key_arn=keyrings.create_org_key(org_id), now=now)
    table.create(org_id, "ORG", attributes={"name": "Bench", "plan": "enterprise"}, now=now)
    connection_id = "conn_" + "a" * 26
    sealed = keyrings.for_org(org_id).seal_field(
        sandbox["api_token"], kind=SEALED_KIND, item_id=connection_id, field="token"
    )
    table.create(
        org_id,
        "CONN",
        connection_id,
        attributes={
            "name": "Sandbox",
            "provider": "okta",
            "domain": sandbox["host_port"],
            "auth_method": "api_token",
            sealed_attribute("token"): sealed,
            "schedule": "rate(1 day)",
        },
        now=now,
    )
    services = build_services(settings, session)

    needed = _requests_needed(sandbox)
    total = sum(needed.values())
    control = SandboxControl(sandbox["url"], sandbox["control_token"])

    def backup(limit: int) -> tuple[float, dict[str, Any], dict[str, Any], str]:
        control.set_rate_limits(
            {bucket: {"limit": limit, "window_seconds": WINDOW} for bucket in BUCKETS}
        )
        control.reset_counters()
        started = runs.start_backup(
            services,
            org_id,
            connection_id,
            trigger="on_demand",
            requested_by="bench",
            now=datetime.now(UTC),
            request_id="bench",
        )
        job = BackupJob(org_id=org_id, connection_id=connection_id, backup_id=started.backup_id)
        began = time.monotonic()
        outcome = worker.run_job(
            services,
            job,
            budget=worker.Budget(time_left=lambda: 3600.0),
            receive_count=1,
            request_id="bench",
        )
        wall = time.monotonic() - began
        record = table.get(org_id, "BACKUP", started.backup_id, now=datetime.now(UTC))
        return wall, control.counters(), dict(record.attributes), outcome.status

    before_mb = _rss_mb()
    load_before = os.getloadavg()
    # Baseline, same run: the same backup with the limits out of the way, i.e. what reading,
    # serialising, uploading and verifying cost on this machine.
    work, _, _, _ = backup(1_000_000)
    # Limits for about a minute, but never a floor the machine itself cannot reach: the
    # benchmark measures how closely the worker follows the limits, not the machine's speed.
    seconds = max(TARGET_SECONDS, 1.5 * work)
    limit = max(1, math.floor(total / seconds * WINDOW))
    floor = sum(n / (limit / WINDOW) for n in needed.values())
    busiest = max(needed, key=lambda bucket: needed[bucket])
    busiest_floor = needed[busiest] / (limit / WINDOW)
    wall, counters, record, status = backup(limit)

    files = dict(record.get("files", {}))
    items = sum(int(entry["items"]) for entry in files.values())
    size = sum(int(entry["bytes"]) for entry in files.values())
    print(f"org: {USERS:,} users, {GROUPS:,} groups, {APPS:,} apps")
    print(
        f"outcome: {status} ({record.get('failure_reason') or 'ok'}); "
        f"{items:,} items, {size / 1e6:,.1f} MB in {len(files)} files"
    )
    print("requests needed per bucket: " + ", ".join(f"{b} {n:,}" for b, n in needed.items() if n))
    print(f"requests made: {counters['requests']:,} (needed {total:,})")
    print(f"baseline (no rate limits): {work:.1f} s")
    print(f"rate limit: {limit} per {WINDOW:g} s in every bucket ({limit / WINDOW:.0f}/s)")
    print(
        f"wall time: {wall:.1f} s; rate-limit floor, one resource after another: {floor:.1f} s; "
        f"ratio {wall / floor:.2f}x (target <= 1.15x)"
    )
    print(
        f"rate-limit floor of any client, the busiest bucket ({busiest}) alone: "
        f"{busiest_floor:.1f} s; ratio {wall / busiest_floor:.2f}x"
    )
    print(f"429s: {counters['rate_limited']} (target 0)")
    peak = _peak_rss_mb()
    print(
        f"worker memory: peak RSS {peak:.0f} MB (target <= 256 MB); "
        f"RSS before the backups {before_mb:.0f} MB"
    )
    # The sandbox, moto and the worker share this machine's cores with whatever else runs.
    load_after = os.getloadavg()
    print(
        f"load average (1, 5, 15 min) on {os.cpu_count()} cores: before "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after "
        + ", ".join(f"{v:.2f}" for v in load_after)
    )
    return 0 if wall / floor <= 1.15 and counters["rate_limited"] == 0 and peak <= 256 else 1


if __name__ == "__main__":
    raise SystemExit(main())
