"""Download links through the handler: roles, states, resources, expiry bounds (including the
signing credentials' lifetime), the signature itself, the session policy, audit and logs."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from backup_downloads.signing import (
    DownloadTarget,
    LinkSigner,
    ScopedRoleCredentials,
    SigningCredentials,
    content_disposition,
)
from botocore.config import Config

from strongroom.backups import BACKUP_KIND, new_backup_id
from tests.unit.signed_url_issuer.conftest import BackupWorld

NOW = datetime(2026, 11, 23, 9, 30, 15, 250_000, tzinfo=UTC)


@dataclass
class RecordingSource:
    """Wraps a credential source: remembers what it handed out and what it was asked."""

    inner: Any
    issued: list[SigningCredentials]
    asked: list[tuple[DownloadTarget, timedelta]]

    def credentials_for(
        self, target: DownloadTarget, *, lifetime: timedelta, now: datetime
    ) -> SigningCredentials:
        self.asked.append((target, lifetime))
        credentials = self.inner.credentials_for(target, lifetime=lifetime, now=now)
        self.issued.append(credentials)
        return credentials


@dataclass
class FixedSource:
    """Credentials with a chosen expiry (None: unknown), as a session without one would give."""

    expires_at: datetime | None

    def credentials_for(
        self, target: DownloadTarget, *, lifetime: timedelta, now: datetime
    ) -> SigningCredentials:
        return SigningCredentials(
            "ASIAEXAMPLEFIXED0001", "fixed-secret", "fixed-token", self.expires_at
        )


def use_source(world: BackupWorld, monkeypatch: pytest.MonkeyPatch, source: Any) -> None:
    built = world.issuer.services()
    signer = LinkSigner(unsigned_s3=built.signer._s3, credentials=source)
    rebuilt = replace(built, signer=signer)
    monkeypatch.setattr(world.issuer, "services", lambda: rebuilt)


def recording(world: BackupWorld, monkeypatch: pytest.MonkeyPatch) -> RecordingSource:
    source = RecordingSource(world.issuer.services().signer._credentials, [], [])
    use_source(world, monkeypatch, source)
    return source


def at(world: BackupWorld, monkeypatch: pytest.MonkeyPatch, now: datetime) -> None:
    monkeypatch.setattr(world.issuer, "_now", lambda: now)


def query_of(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def audited_issues(world: BackupWorld, org: str) -> list[Any]:
    return [event for event in world.audit(org) if event.action == "download_url.issue"]


# ---- what a link is ---------------------------------------------------------------------------


def test_an_admin_gets_a_link_signed_at_now_for_15_minutes_by_default(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    source = recording(world, monkeypatch)
    at(world, monkeypatch, NOW)
    reply = world.issue(org, planted.backup_id, {"resource": "users"})
    assert reply.status == 200, reply.body
    assert reply.headers["cache-control"] == "no-store"
    assert reply.body["resource"] == "users"
    assert reply.body["expires_in"] == 900
    assert reply.body["expires_at"] == "2026-11-23T09:45:15Z"
    url = urlsplit(reply.body["url"])
    assert url.scheme == "https"
    assert url.path.endswith(
        f"/orgs/{org}/connections/{planted.connection_id}/backups/"
        f"20261123T030000Z-{planted.backup_id}/users.json"
    )
    query = query_of(reply.body["url"])
    credentials = source.issued[0]
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Date"] == "20261123T093015Z"
    assert query["X-Amz-Expires"] == "900"
    assert query["X-Amz-SignedHeaders"] == "host"
    assert query["X-Amz-Credential"] == (
        f"{credentials.access_key}/20261123/us-east-1/s3/aws4_request"
    )
    assert query["X-Amz-Security-Token"] == credentials.token
    assert query["response-content-disposition"] == (
        f'attachment; filename="{planted.backup_id}-users.json"'
    )


def test_the_signature_is_botocores_own_for_the_same_credentials_and_time(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto does not check signatures, so this test does: the stock botocore presigner, given
    the session's credentials and the URL's X-Amz-Date, produces the very same URL."""
    org = world.new_org()
    planted = world.plant(org)
    source = recording(world, monkeypatch)
    at(world, monkeypatch, NOW)
    for resource, expires_in in ((None, 900), ("groups", 60), ("users", 3600)):
        body = {"expires_in": expires_in, **({"resource": resource} if resource else {})}
        reply = world.issue(org, planted.backup_id, body)
        assert reply.status == 200, reply.body
        issued_url = reply.body["url"]
        query = query_of(issued_url)
        signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
        credentials = source.issued[-1]
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id=credentials.access_key,
            aws_secret_access_key=credentials.secret_key,
            aws_session_token=credentials.token,
            config=Config(signature_version="s3v4"),
        )
        with monkeypatch.context() as frozen:
            frozen.setattr(botocore.auth, "get_current_datetime", lambda _at=signed_at, **_: _at)
            expected = s3.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": world.settings.backup_bucket,
                    "Key": source.asked[-1][0].key,
                    "VersionId": planted.versions[resource or "manifest"],
                    "ResponseContentDisposition": query["response-content-disposition"],
                },
                ExpiresIn=int(query["X-Amz-Expires"]),
            )
        assert issued_url == expected
        assert query["X-Amz-Expires"] == str(expires_in)
    # A signature over other credentials or another time differs (the comparison can fail).
    other = query_of(world.issue(org, planted.backup_id).body["url"])
    assert other["X-Amz-Signature"] != query_of(issued_url)["X-Amz-Signature"]


def test_each_link_is_signed_by_a_session_narrowed_to_its_object_and_its_orgs_keys(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    sts = world.issuer.services().signer._credentials._sts
    calls: list[dict[str, Any]] = []
    sts.meta.events.register(
        "provide-client-params.sts.AssumeRole", lambda params, **_: calls.append(dict(params))
    )
    assert (
        world.issue(org, planted.backup_id, {"resource": "users", "expires_in": 120}).status == 200
    )
    assert world.issue(org, planted.backup_id, {"expires_in": 3600}).status == 200
    assert [call["DurationSeconds"] for call in calls] == [900, 3600]
    assert {call["RoleArn"] for call in calls} == {world.settings.download_signer_role_arn}
    assert {call["RoleSessionName"] for call in calls} == {f"download-{org}"}
    policy = json.loads(calls[0]["Policy"])
    bucket = world.settings.backup_bucket
    assert policy["Statement"] == [
        {
            "Sid": "ThisObjectVersion",
            "Effect": "Allow",
            "Action": "s3:GetObjectVersion",
            "Resource": f"arn:aws:s3:::{bucket}/{planted.prefix}users.json",
            "Condition": {"StringEquals": {"s3:VersionId": planted.versions["users"]}},
        },
        {
            "Sid": "ThisOrgsKeyThroughS3",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": "*",
            "Condition": {
                "StringEquals": {
                    "aws:ResourceTag/strongroom:org_id": org,
                    "aws:ResourceTag/strongroom:stage": world.settings.stage,
                }
            },
        },
    ]
    assert json.loads(calls[1]["Policy"])["Statement"][0]["Resource"].endswith("/manifest.json")


def test_empty_body_and_manifest_name_the_manifest(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    for reply in (
        world.issue(org, planted.backup_id),
        world.issue(org, planted.backup_id, {}),
        world.issue(org, planted.backup_id, {"resource": "manifest"}),
    ):
        assert reply.status == 200, reply.body
        assert reply.body["resource"] == "manifest"
        assert urlsplit(reply.body["url"]).path.endswith(f"{planted.backup_id}/manifest.json")
        disposition = query_of(reply.body["url"])["response-content-disposition"]
        assert disposition == f'attachment; filename="{planted.backup_id}-manifest.json"'


# ---- expiry bounds ----------------------------------------------------------------------------


def test_a_requested_expiry_within_bounds_is_granted(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    at(world, monkeypatch, NOW)
    for expires_in in (60, 61, 1800, 3600):
        reply = world.issue(org, planted.backup_id, {"expires_in": expires_in})
        assert reply.status == 200, reply.body
        assert reply.body["expires_in"] == expires_in
        assert query_of(reply.body["url"])["X-Amz-Expires"] == str(expires_in)
        expires_at = datetime.strptime(reply.body["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert expires_at.replace(tzinfo=UTC) == NOW.replace(microsecond=0) + timedelta(
            seconds=expires_in
        )


def test_an_expiry_out_of_bounds_or_not_an_integer_is_a_422_and_issues_nothing(
    world: BackupWorld,
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    for expires_in in (0, 59, 3601, 86400, -1, "900", 900.0, True, None, [900]):
        reply = world.issue(org, planted.backup_id, {"expires_in": expires_in})
        assert reply.status == 422, (expires_in, reply.body)
        assert reply.body["error"]["code"] == "invalid_field"
        assert reply.body["error"]["message"].startswith("expires_in: ")
    assert audited_issues(world, org) == []


def test_a_link_never_outlives_its_signing_credentials(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The credentials' expiry and the clock are injected: the link's lifetime is the request
    cut to the whole seconds the credentials have left."""
    org = world.new_org()
    planted = world.plant(org)
    at(world, monkeypatch, NOW)
    cases = [
        # (credentials' time left, requested, granted)
        (timedelta(minutes=10), 3600, 600),
        (timedelta(minutes=10, seconds=0.9), 900, 600),  # whole seconds, rounded down
        (timedelta(hours=2), 3600, 3600),
        (timedelta(seconds=900), 900, 900),
        (timedelta(seconds=60.5), 900, 60),
    ]
    for left, requested, granted in cases:
        use_source(world, monkeypatch, FixedSource(expires_at=NOW + left))
        reply = world.issue(org, planted.backup_id, {"expires_in": requested})
        assert reply.status == 200, reply.body
        assert reply.body["expires_in"] == granted
        assert query_of(reply.body["url"])["X-Amz-Expires"] == str(granted)
        expires_at = datetime.strptime(reply.body["expires_at"], "%Y-%m-%dT%H:%M:%SZ")
        assert expires_at.replace(tzinfo=UTC) <= NOW + left
    events = audited_issues(world, org)
    assert [(e.details["requested_expires_in"], e.details["expires_in"]) for e in events] == [
        (requested, granted) for _, requested, granted in cases
    ]


def test_credentials_of_unknown_or_too_short_lifetime_sign_nothing(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    at(world, monkeypatch, NOW)
    for expires_at in (None, NOW + timedelta(seconds=59), NOW, NOW - timedelta(days=1)):
        use_source(world, monkeypatch, FixedSource(expires_at=expires_at))
        reply = world.issue(org, planted.backup_id)
        assert reply.status == 500
        assert reply.body == {
            "error": {
                "code": "internal_error",
                "message": "Something went wrong. The request id is in the logs.",
            }
        }
    assert audited_issues(world, org) == []


# ---- who, which backup, which file ------------------------------------------------------------


def test_only_admins_and_owners_get_links(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    assert world.issue(org, planted.backup_id, sub="alice").status == 200
    assert world.issue(org, planted.backup_id, sub="bob").status == 200
    member = world.issue(org, planted.backup_id, sub="carol")
    assert (member.status, member.body["error"]["code"]) == (403, "forbidden")
    stranger = world.issue(org, planted.backup_id, sub="mallory")
    assert (stranger.status, stranger.body["error"]["code"]) == (404, "not_found")
    assert [event.actor for event in audited_issues(world, org)] == ["alice", "bob"]


def test_another_orgs_backup_is_a_404_exactly_like_a_missing_one(world: BackupWorld) -> None:
    org, other = world.new_org(), world.new_org("olivia")
    theirs = world.plant(other)
    answers = [
        world.issue(org, theirs.backup_id, sub="alice"),
        world.issue(org, new_backup_id(), sub="alice"),
        world.issue(other, theirs.backup_id, sub="alice"),
    ]
    assert {(reply.status, json.dumps(reply.body)) for reply in answers} == {
        (404, json.dumps({"error": {"code": "not_found", "message": "Not found."}}))
    }
    assert audited_issues(world, org) == []
    assert audited_issues(world, other) == []


@pytest.mark.parametrize("status", ["running", "failed"])
def test_only_a_complete_backup_is_linked(world: BackupWorld, status: str) -> None:
    org = world.new_org()
    planted = world.plant(org, status=status)
    reply = world.issue(org, planted.backup_id)
    assert (reply.status, reply.body["error"]["code"]) == (409, "conflict")
    assert audited_issues(world, org) == []


def test_an_unknown_resource_or_field_is_a_422_that_echoes_nothing(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    bodies: list[dict[str, Any]] = [
        {"resource": "apps"},  # well formed, not a file of this backup
        {"resource": "Users"},
        {"resource": "../users"},
        {"resource": "users.json"},
        {"resource": ""},
        {"resource": 7},
        {"resource": "users", "elsewhere_bucket": "x"},
    ]
    for body in bodies:
        reply = world.issue(org, planted.backup_id, body)
        assert reply.status == 422, (body, reply.body)
        assert reply.body["error"]["code"] == "invalid_field"
        assert "elsewhere" not in reply.body["error"]["message"]
        assert "apps" not in reply.body["error"]["message"]
    assert audited_issues(world, org) == []


def test_a_malformed_body_is_a_400(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    reply = world.issue(org, planted.backup_id, raw_body='{"resource": ')
    assert (reply.status, reply.body["error"]["code"]) == (400, "malformed_request")


def test_a_record_naming_an_object_outside_its_org_is_never_signed(world: BackupWorld) -> None:
    org, other = world.new_org(), world.new_org("olivia")
    planted = world.plant(org)
    theirs = world.plant(other)
    item = world.table.get(org, BACKUP_KIND, planted.backup_id, now=datetime.now(UTC))
    files = dict(item.attributes["files"])
    files["users"] = {**files["users"], "key": theirs.prefix + "users.json"}
    world.table.update(
        org,
        BACKUP_KIND,
        planted.backup_id,
        changes={"files": files, "manifest_key": theirs.prefix + "manifest.json"},
        now=datetime.now(UTC),
    )
    for body in ({"resource": "users"}, {}):
        assert world.issue(org, planted.backup_id, body).status == 500
    assert world.issue(org, planted.backup_id, {"resource": "groups"}).status == 200
    assert [event.details["resource"] for event in audited_issues(world, org)] == ["groups"]


# ---- audit and logs ---------------------------------------------------------------------------


def test_each_issue_is_audited_without_the_url(
    caplog: pytest.LogCaptureFixture, world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    at(world, monkeypatch, NOW)
    replies = [
        world.issue(org, planted.backup_id, {"resource": "users", "expires_in": 300}),
        world.issue(org, planted.backup_id, sub="alice"),
    ]
    events = audited_issues(world, org)
    assert [(e.actor, e.target_kind, e.target_id, e.outcome) for e in events] == [
        ("bob", "backup", planted.backup_id, "success"),
        ("alice", "backup", planted.backup_id, "success"),
    ]
    assert events[0].details == {
        "connection_id": planted.connection_id,
        "resource": "users",
        "key": planted.prefix + "users.json",
        "expires_at": "2026-11-23T09:35:15Z",
        "expires_in": 300,
        "requested_expires_in": 300,
    }
    assert events[1].details["resource"] == "manifest"
    assert events[1].request_id == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    # Each record as the function's own (redacting JSON) handler writes it.
    formatter = world.issuer.logger.registered_handler.formatter
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    stored = json.dumps([event.document() for event in events])
    for reply in replies:
        query = query_of(reply.body["url"])
        for secret in (query["X-Amz-Signature"], query["X-Amz-Security-Token"]):
            assert secret not in stored
            assert secret not in logged
    assert logged.count('"message":"download url issued"') == 2


# ---- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("bkp_x-users.json", 'attachment; filename="bkp_x-users.json"'),
        ('a"b\r\nSet-Cookie: x.json', 'attachment; filename="a_b__Set-Cookie__x.json"'),
        ("../../etc/passwd", 'attachment; filename="_.._etc_passwd"'),
        ("résumé.json", 'attachment; filename="r_sum_.json"'),
        ("...", 'attachment; filename="download"'),
    ],
)
def test_content_disposition_names_a_safe_file(name: str, header: str) -> None:
    assert content_disposition(name) == header


def test_assume_role_failure_signs_nothing(
    world: BackupWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    sts = boto3.client("sts", region_name="us-east-1")

    def refuse(**_: Any) -> None:
        raise botocore.exceptions.ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole"
        )

    monkeypatch.setattr(sts, "assume_role", refuse)
    source = ScopedRoleCredentials(
        sts=sts, role_arn=str(world.settings.download_signer_role_arn), stage="dev"
    )
    use_source(world, monkeypatch, source)
    assert world.issue(org, planted.backup_id).status == 500
    assert audited_issues(world, org) == []


def test_a_link_serves_the_version_the_manifest_hashes_whatever_was_written_since(
    world: BackupWorld,
) -> None:
    org = world.new_org()
    planted = world.plant(org)
    key = f"{planted.prefix}users.json"
    # A later version at the same key (a duplicate job's, or anyone's with write access).
    world._put(org, key, b'[{"id": "00u-not-in-the-manifest"}]')
    for resource in ("users", "manifest"):
        reply = world.issue(org, planted.backup_id, {"resource": resource})
        assert reply.status == 200, reply.body
        query = query_of(reply.body["url"])
        assert query["versionId"] == planted.versions[resource]
    # That version is what was planted (and hashed); the key's latest is not.
    served = world.s3.get_object(
        Bucket=world.settings.backup_bucket, Key=key, VersionId=planted.versions["users"]
    )["Body"].read()
    assert served == planted.contents["users"]
    latest = world.s3.get_object(Bucket=world.settings.backup_bucket, Key=key)["Body"].read()
    assert latest != served


def test_a_record_naming_no_version_is_never_signed(world: BackupWorld) -> None:
    org = world.new_org()
    planted = world.plant(org)
    now = datetime.now(UTC)
    item = world.table.get(org, "BACKUP", planted.backup_id, now=now)
    files = item.attributes["files"]
    del files["users"]["version_id"]
    world.table.update(org, "BACKUP", planted.backup_id, changes={"files": files}, now=now)
    reply = world.issue(org, planted.backup_id, {"resource": "users"})
    assert reply.status == 500
    assert "url" not in reply.body
