"""Presigned GETs for one backup object, signed with credentials narrowed to that object.

Why a role session per link rather than the function's own credentials:

- Scope. The function's role cannot read backups at all. Each link is signed with a fresh
  session of the download signer role (template.yaml), whose session policy allows only
  `s3:GetObjectVersion` of the one version linked to and `kms:Decrypt` (through S3) on keys
  tagged with the link's org. A bug in the route's org check could then at worst link to an
  object of the org it already named, never to another org's data.
- Integrity. A link names the object's version the worker wrote, read back and hashed into the
  manifest: whatever is written at that key later, the link serves what the manifest describes.
- Lifetime. A presigned URL stops working when the credentials that signed it expire, so an
  honest `expires_at` needs their expiry. Lambda hands a function its role's credentials in
  environment variables without an expiry (botocore's EnvProvider only knows one when
  AWS_CREDENTIAL_EXPIRATION is set), so the function's own lifetime is unknown exactly where it
  matters. STS returns each session's `Expiration`, so it is always known here.

A link's lifetime is the requested one, cut to the credentials' remaining lifetime; credentials
without a known expiry, or with less than a minute left, sign nothing (fail closed).
The signature is botocore's S3 SigV4 query signer, computed at the injected `now`, so the URL's
X-Amz-Date and X-Amz-Expires agree exactly with the `expires_at` reported.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import BotoCoreError, ClientError

from backup_downloads.exceptions import SigningUnavailable

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_sts.client import STSClient

DEFAULT_LIFETIME = timedelta(minutes=15)
MAX_LIFETIME = timedelta(hours=1)
# A link with less than this to live is not worth handing out.
MIN_LIFETIME = timedelta(minutes=1)
# STS refuses shorter sessions; role chaining (a Lambda role assuming another) allows at most 1 h.
_MIN_SESSION_SECONDS = 900
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class DownloadTarget:
    """One version of one object of one org, and the file name a browser should save it as."""

    org_id: str
    bucket: str
    key: str
    version_id: str
    filename: str


@dataclass(frozen=True)
class SigningCredentials:
    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(repr=False)
    # When the credentials stop working; None when not known.
    expires_at: datetime | None


@dataclass(frozen=True)
class SignedLink:
    url: str = field(repr=False)  # a bearer credential: never logged
    expires_at: datetime
    lifetime: timedelta


class CredentialSource(Protocol):
    def credentials_for(
        self, target: DownloadTarget, *, lifetime: timedelta, now: datetime
    ) -> SigningCredentials:
        """Credentials that can read `target` (and should read nothing else) for `lifetime`."""
        ...


def session_policy(target: DownloadTarget, *, partition: str, stage: str) -> dict[str, Any]:
    """The policy one link's session is narrowed to: this version of this object, keys of this
    org, via S3."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ThisObjectVersion",
                "Effect": "Allow",
                "Action": "s3:GetObjectVersion",
                "Resource": f"arn:{partition}:s3:::{target.bucket}/{target.key}",
                "Condition": {"StringEquals": {"s3:VersionId": target.version_id}},
            },
            {
                "Sid": "ThisOrgsKeyThroughS3",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:ResourceTag/strongroom:org_id": target.org_id,
                        "aws:ResourceTag/strongroom:stage": stage,
                    }
                },
            },
        ],
    }


class ScopedRoleCredentials:
    """Per link: AssumeRole of the signer role with the link's session policy."""

    def __init__(self, *, sts: STSClient, role_arn: str, stage: str) -> None:
        self._sts = sts
        self._role_arn = role_arn
        self._stage = stage
        self._partition = role_arn.split(":", 2)[1]

    def credentials_for(
        self, target: DownloadTarget, *, lifetime: timedelta, now: datetime
    ) -> SigningCredentials:
        duration = max(_MIN_SESSION_SECONDS, math.ceil(lifetime.total_seconds()))
        policy = session_policy(target, partition=self._partition, stage=self._stage)
        try:
            response = self._sts.assume_role(
                RoleArn=self._role_arn,
                # Names the org in CloudTrail next to every GET the link makes.
                RoleSessionName=f"download-{target.org_id}",
                DurationSeconds=duration,
                Policy=json.dumps(policy, separators=(",", ":")),
            )
        except (ClientError, BotoCoreError) as exc:
            code = type(exc).__name__
            if isinstance(exc, ClientError):
                code = exc.response.get("Error", {}).get("Code") or code
            raise SigningUnavailable(f"AssumeRole failed ({code})") from None
        credentials = response["Credentials"]
        return SigningCredentials(
            access_key=credentials["AccessKeyId"],
            secret_key=credentials["SecretAccessKey"],
            token=credentials["SessionToken"],
            expires_at=credentials["Expiration"],
        )


def link_lifetime(
    requested: timedelta, credentials_expire_at: datetime | None, *, now: datetime
) -> timedelta:
    """The requested lifetime, cut to the credentials' whole seconds left; SigningUnavailable
    when their expiry is unknown or less than MIN_LIFETIME remains."""
    if credentials_expire_at is None:
        # An unknown expiry could be a second away: promising `requested` could be a lie.
        raise SigningUnavailable("the signing credentials have no known expiry")
    remaining = timedelta(seconds=math.floor((credentials_expire_at - now).total_seconds()))
    lifetime = min(requested, remaining, MAX_LIFETIME)
    if lifetime < MIN_LIFETIME:
        raise SigningUnavailable("the signing credentials expire too soon")
    return lifetime


def content_disposition(filename: str) -> str:
    """`attachment` with a file name of letters, digits, `.`, `_` and `-` only (no quoting or
    header injection is possible; names are ours, this only keeps them so)."""
    safe = _SAFE_FILENAME.sub("_", filename).strip(".") or "download"
    return f'attachment; filename="{safe[:128]}"'


class _S3QueryAuthAt(S3SigV4QueryAuth):
    """botocore's presigned-URL signer, signing at a given time rather than the clock's."""

    def __init__(
        self, credentials: ReadOnlyCredentials, region: str, *, expires: int, signed_at: datetime
    ) -> None:
        super().__init__(credentials, "s3", region, expires=expires)
        self._signed_at = signed_at

    def add_auth(self, request: AWSRequest) -> None:
        # SigV4Auth.add_auth with the timestamp from `signed_at`, step for step.
        request.context["timestamp"] = self._signed_at.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)  # type: ignore[attr-defined]
        canonical_request = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical_request)
        signature = self.signature(string_to_sign, request)
        self._inject_signature_to_request(request, signature)  # type: ignore[attr-defined]


class LinkSigner:
    """Signs download links. `unsigned_s3` is an S3 client with `signature_version=UNSIGNED`:
    botocore builds the object's URL (endpoint, addressing style, query) and this signs it."""

    def __init__(self, *, unsigned_s3: S3Client, credentials: CredentialSource) -> None:
        self._s3 = unsigned_s3
        self._credentials = credentials

    def sign(self, target: DownloadTarget, *, requested: timedelta, now: datetime) -> SignedLink:
        credentials = self._credentials.credentials_for(target, lifetime=requested, now=now)
        lifetime = link_lifetime(requested, credentials.expires_at, now=now)
        unsigned_url = self._s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": target.bucket,
                "Key": target.key,
                "VersionId": target.version_id,
                "ResponseContentDisposition": content_disposition(target.filename),
            },
        )
        request = AWSRequest(method="GET", url=unsigned_url)
        signer = _S3QueryAuthAt(
            ReadOnlyCredentials(credentials.access_key, credentials.secret_key, credentials.token),
            self._s3.meta.region_name,
            expires=int(lifetime.total_seconds()),
            signed_at=now,
        )
        signer.add_auth(request)
        # X-Amz-Date has whole seconds: so has the expiry reported.
        signed_at = now.astimezone(UTC).replace(microsecond=0)
        return SignedLink(url=str(request.url), expires_at=signed_at + lifetime, lifetime=lifetime)
