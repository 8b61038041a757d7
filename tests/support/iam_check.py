"""Check every AWS call a function's handler makes in a unit test against that function's role.

moto does not enforce IAM, so without this a function could call something its role in
template.yaml does not allow and every test would still pass. `IamCheck` hooks botocore's
`before-parameter-build` event on the boto3 sessions a function's services are built from
(`IamCheck.session()`), derives from each call the IAM requests it stands for (`requests_for`),
and evaluates them with `tests.support.iam` against the role of the function whose handler is
running (`IamCheck.guard(app_module, "<function folder>")` wraps each handler of the module that
template.yaml names). Denials are recorded, never raised into the code under test (which would
turn them into 503s and hide them): the `iam_check` fixture fails the test at teardown with the
list. Calls made outside a handler (test setup, reading results back) are not checked.

Attribution: a call is the function's whose handler runs on the calling thread; a call from a
thread without one (the backup worker's lanes and verifier) is the function's whose handler is
running in the process. If handlers of several functions run at once (concurrency tests), such a
call is denied only when every one of their roles denies it.

What each call stands for, as IAM documents it:
- DynamoDB: the table (or `table/<t>/index/<i>`) ARN; `dynamodb:LeadingKeys` from the partition
  key of Key / Item / the Query's key condition / every key of a batch. TransactWriteItems and
  TransactGetItems are authorized per item (PutItem, UpdateItem, DeleteItem,
  ConditionCheckItem, GetItem on that item's table with its LeadingKeys, and
  `dynamodb:EnclosingOperation`), as "Using IAM with DynamoDB transactions" says: the
  transaction action itself is not required (template grants of it are harmless surplus).
  Scan carries no LeadingKeys.
- S3: bucket and object ARNs (`s3:GetObjectVersion` for a GetObject/HeadObject of a version;
  `s3:PutObjectRetention` / `s3:PutObjectLegalHold` for a PutObject or CreateMultipartUpload
  that sets Object Lock; multipart parts and completion are `s3:PutObject`; `s3:prefix` on
  listings). SSE-KMS is modelled as the requester's KMS use through S3: PutObject and
  CreateMultipartUpload need `kms:GenerateDataKey` (a multipart upload `kms:Decrypt` too),
  GetObject/HeadObject of an SSE-KMS object `kms:Decrypt`, on the request's key or the
  bucket's default key, with `kms:ViaService` s3 and `kms:EncryptionContext:aws:s3:arn` the
  object ARN (the bucket ARN under an S3 Bucket Key).
- KMS: the key ARN whatever the call named (id, ARN, alias, or the key inside a Decrypt's
  ciphertext), the key's tags as `aws:ResourceTag/*`, `kms:EncryptionContext:*`. CreateKey is
  on `*` with `aws:RequestTag/*` and `aws:TagKeys`, and with Tags also needs
  `kms:TagResource`. CreateAlias / DeleteAlias are authorized on the alias ARN and on the key.
- STS: AssumeRole on the role ARN, allowed when the target role's trust policy (template.yaml)
  names the caller's role ARN (enough within one account), or when it trusts the account and
  the caller's identity policy allows sts:AssumeRole; Tags need sts:TagSession.
  GetCallerIdentity needs nothing. The session policy a call passes is not evaluated.
- SQS: the queue ARN from QueueUrl; batches are their single actions; SendMessage to an
  SSE-KMS queue needs kms:GenerateDataKey and kms:Decrypt through SQS.
- Secrets Manager: the secret's ARN; GetSecretValue of a secret under a customer key needs
  kms:Decrypt through Secrets Manager.

Not modelled: KMS use by DynamoDB for tables under a customer key (DynamoDB uses grants it
holds, not the caller's permissions, for data-plane calls), presigned URLs (signing makes no
call; the URL is used with whatever credentials signed it: signed_url_issuer signs with a
narrowed STS session), resource-based policies other than trust policies (bucket, queue and
key policies), SAM's generated permissions for event sources, and calls outside handlers. An
operation without a rule here is reported as unmodelled (add its rule), never passed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from tests.support.iam import (
    Decision,
    Request,
    Role,
    UnsupportedPolicy,
    function_role,
    role_trust_policies,
    trusts,
)

REGION = "us-east-1"
# The thread-local function of a test's own calls inside a handler (`IamCheck.outside`).
_OUTSIDE = "(the test)"


@dataclass(frozen=True)
class Problem:
    """A call the role does not allow, or one this check cannot judge."""

    function: str
    operation: str
    what: str
    why: str

    def __str__(self) -> str:
        return f"{self.function}: {self.operation}: {self.what}: {self.why}"


class Unmodelled(Exception):
    """No rule here says what this operation needs."""


@dataclass
class IamCheck:
    """Records the IAM problems of the calls made by the handlers of the functions it guards."""

    stack: Any  # strongroom_local.provision.Stack
    problems: list[Problem] = field(default_factory=list)
    checked: int = 0
    _roles: dict[str, Role] = field(default_factory=dict)
    _trust: dict[str, Any] | None = None
    _schemas: dict[tuple[str, str | None], str] | None = None
    _active: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)

    # ---- wiring ---------------------------------------------------------------------------------

    def session(self, region_name: str = REGION) -> boto3.Session:
        """A boto3 Session whose clients' calls are checked while a guarded handler runs."""
        session = boto3.Session(region_name=region_name)
        self.watch(session)
        return session

    def watch(self, session: boto3.Session) -> None:
        """Check the calls of clients made from `session` from now on."""
        session.events.register(
            "before-parameter-build", self._on_call, unique_id=f"iam-check-{id(self)}"
        )

    def guard(self, module: Any, folder: str) -> Any:
        """Wrap each handler of `module` (functions/<folder>/app.py) that template.yaml names,
        so that the calls made while it runs are checked against its function's role."""
        for function, handler in handlers_of(self.stack.template, folder).items():
            original = getattr(module, handler)
            setattr(module, handler, self._wrapped(function, original))
        return module

    def _wrapped(self, function: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def run_as_function(*args: Any, **kwargs: Any) -> Any:
            with self.acting_as(function):
                return handler(*args, **kwargs)

        run_as_function.__wrapped__ = handler  # type: ignore[attr-defined]
        return run_as_function

    @contextmanager
    def acting_as(self, function: str) -> Iterator[None]:
        """Calls made meanwhile (on this thread, or on threads without a function of their own)
        are `function`'s."""
        self.role(function)  # fail early on a function or policy this check cannot read
        previous = getattr(self._local, "function", None)
        self._local.function = function
        with self._lock:
            self._active[function] = self._active.get(function, 0) + 1
        try:
            yield
        finally:
            self._local.function = previous
            with self._lock:
                self._active[function] -= 1

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Calls made meanwhile on this thread are the test's, not a function's: for a test's
        own probes that run inside a handler (a patched step that reads what was stored)."""
        previous = getattr(self._local, "function", None)
        self._local.function = _OUTSIDE
        try:
            yield
        finally:
            self._local.function = previous

    def role(self, function: str) -> Role:
        role = self._roles.get(function)
        if role is None:
            role = function_role(self.stack.template, self.stack.resolver, function)
            self._roles[function] = role
        return role

    # ---- results --------------------------------------------------------------------------------

    def assert_allowed(self) -> None:
        """Fail the running test if any checked call was denied (or could not be judged)."""
        if self.problems:
            pytest.fail(self.report(), pytrace=False)

    def report(self) -> str:
        lines = [
            f"{len(self.problems)} AWS call(s) that their function's role in template.yaml"
            " does not allow (or that this check cannot judge):"
        ]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)

    # ---- the hook -------------------------------------------------------------------------------

    def _functions(self) -> list[str]:
        own = getattr(self._local, "function", None)
        if own is _OUTSIDE:
            return []
        if own is not None:
            return [own]
        with self._lock:
            return [name for name, count in self._active.items() if count > 0]

    def _on_call(self, params: Mapping[str, Any], model: Any, context: Any, **_: Any) -> None:
        if context and context.get("is_presign_request"):
            return  # presigning makes no call; see the module docstring
        functions = self._functions()
        if not functions:
            return  # outside every guarded handler: test setup
        service = model.service_model.service_name
        operation = f"{service}:{model.name}"
        region = (context or {}).get("client_region") or REGION
        try:
            requests = requests_for(self, service, model.name, params, region)
            problems = [self._judge(functions, operation, request) for request in requests]
        except Unmodelled as exc:
            problems = [Problem(functions[0], operation, "not modelled", str(exc))]
        except Exception as exc:  # noqa: BLE001 - never break the code under test
            problems = [Problem(functions[0], operation, "check failed", repr(exc))]
        with self._lock:
            self.checked += 1
            self.problems.extend(p for p in problems if p is not None)

    def _judge(self, functions: Sequence[str], operation: str, request: Request) -> Problem | None:
        first: Problem | None = None
        for function in functions:
            decision = self._decide(function, request)
            if decision.allowed:
                return None
            first = first or Problem(function, operation, request.describe(), decision.reason)
        return first

    def _decide(self, function: str, request: Request) -> Decision:
        role = self.role(function)
        identity = role.evaluate(request)
        if request.action.lower() != "sts:assumerole" or identity.reason == "explicit deny":
            return identity
        return self._trusted(role, request, identity)

    def _trusted(self, role: Role, request: Request, identity: Decision) -> Decision:
        if self._trust is None:
            self._trust = role_trust_policies(self.stack.template, self.stack.resolver)
        document = self._trust.get(request.resource)
        if document is None:
            return Decision(False, "not a role of template.yaml (its trust policy is unknown)")
        trust = trusts(document, role.arn, request.action)
        if trust.reason == "delegated":
            return identity
        return trust

    # ---- look-ups in the emulator ---------------------------------------------------------------

    @property
    def account(self) -> str:
        return str(self.stack.resolver.refs["AWS::AccountId"])

    def key_schema(self, table: str, index: str | None) -> str:
        """The partition key attribute of `table` (or its index) as template.yaml declares it."""
        if self._schemas is None:
            self._schemas = _key_schemas(self.stack)
        return self._schemas[(table, index)]


def handlers_of(template: Mapping[str, Any], folder: str) -> dict[str, str]:
    """Function logical id -> handler attribute of functions/<folder>/app.py."""
    found = {}
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        properties = resource.get("Properties", {})
        if str(properties.get("CodeUri", "")).rstrip("/") != f"functions/{folder}":
            continue
        module, _, handler = str(properties["Handler"]).partition(".")
        if module != "app":
            raise UnsupportedPolicy(f"{logical_id}: handler {properties['Handler']} not in app.py")
        found[logical_id] = handler
    if not found:
        raise UnsupportedPolicy(f"no function of template.yaml runs functions/{folder}")
    return found


def _key_schemas(stack: Any) -> dict[tuple[str, str | None], str]:
    schemas: dict[tuple[str, str | None], str] = {}
    for logical_id, resource in stack.template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        name = str(stack.resolver.refs[logical_id])
        properties = resource["Properties"]
        schemas[(name, None)] = _hash_key(properties["KeySchema"])
        for index in properties.get("GlobalSecondaryIndexes", []) + properties.get(
            "LocalSecondaryIndexes", []
        ):
            schemas[(name, index["IndexName"])] = _hash_key(index["KeySchema"])
    return schemas


def _hash_key(schema: Sequence[Mapping[str, Any]]) -> str:
    return next(str(k["AttributeName"]) for k in schema if k["KeyType"] == "HASH")


# ---- what each call stands for ----------------------------------------------------------


def requests_for(
    check: IamCheck, service: str, operation: str, params: Mapping[str, Any], region: str
) -> list[Request]:
    rules = {
        "dynamodb": _dynamodb,
        "s3": _s3,
        "kms": _kms,
        "sts": _sts,
        "sqs": _sqs,
        "secretsmanager": _secretsmanager,
    }
    rule = rules.get(service)
    if rule is None:
        raise Unmodelled(f"no rule for the {service} service")
    return rule(check, operation, params, region)


# ---- DynamoDB ---------------------------------------------------------------------------------

_ITEM_ACTIONS = {"GetItem": "Key", "PutItem": "Item", "UpdateItem": "Key", "DeleteItem": "Key"}
_TRANSACT_ACTIONS = {
    "Put": ("PutItem", "Item"),
    "Update": ("UpdateItem", "Key"),
    "Delete": ("DeleteItem", "Key"),
    "ConditionCheck": ("ConditionCheckItem", "Key"),
    "Get": ("GetItem", "Key"),
}
_TABLE_OPERATIONS = frozenset({"DescribeTable", "DescribeTimeToLive", "DescribeContinuousBackups"})


def _table_name(value: str) -> str:
    return value.split(":table/", 1)[1].split("/", 1)[0] if value.startswith("arn:") else value


def _table_arn(check: IamCheck, region: str, table: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{region}:{check.account}:table/{table}"
    return arn + (f"/index/{index}" if index else "")


def _partition_value(check: IamCheck, table: str, item: Mapping[str, Any]) -> str:
    value = item.get(check.key_schema(table, None), {})
    return str(next(iter(value.values()))) if isinstance(value, Mapping) and value else ""


def _item_request(
    check: IamCheck,
    region: str,
    action: str,
    table_ref: str,
    item: Mapping[str, Any],
    *,
    enclosing: str | None = None,
) -> Request:
    table = _table_name(table_ref)
    context: dict[str, Any] = {"dynamodb:leadingkeys": [_partition_value(check, table, item)]}
    if enclosing:
        context["dynamodb:enclosingoperation"] = enclosing
    return Request(f"dynamodb:{action}", _table_arn(check, region, table), context)


_EQUALITY = re.compile(r"([#:\w.]+)\s*=\s*([#:\w.]+)")


def _query_leading_key(
    check: IamCheck, table: str, index: str | None, params: Mapping[str, Any]
) -> list[str]:
    key_name = check.key_schema(table, index)
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    expression = params.get("KeyConditionExpression")
    if expression is not None:
        for left, right in _EQUALITY.findall(expression):
            for name, value in ((left, right), (right, left)):
                if names.get(name, name) == key_name and value in values:
                    return [str(next(iter(values[value].values())))]
        raise ValueError(f"no partition key equality in {expression!r}")
    condition = params.get("KeyConditions", {}).get(key_name)
    if condition is not None:
        return [str(next(iter(condition["AttributeValueList"][0].values())))]
    raise ValueError("a Query without a partition key condition")


def _dynamodb(
    check: IamCheck, operation: str, params: Mapping[str, Any], region: str
) -> list[Request]:
    if operation in _ITEM_ACTIONS:
        item = params[_ITEM_ACTIONS[operation]]
        return [_item_request(check, region, operation, params["TableName"], item)]
    if operation in ("Query", "Scan"):
        table, index = _table_name(params["TableName"]), params.get("IndexName")
        context: dict[str, Any] = {}
        if operation == "Query":
            context["dynamodb:leadingkeys"] = _query_leading_key(check, table, index, params)
        return [Request(f"dynamodb:{operation}", _table_arn(check, region, table, index), context)]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        requests = []
        for entry in params["TransactItems"]:
            ((kind, body),) = entry.items()
            action, key_field = _TRANSACT_ACTIONS[kind]
            requests.append(
                _item_request(
                    check, region, action, body["TableName"], body[key_field], enclosing=operation
                )
            )
        return requests
    if operation in ("BatchGetItem", "BatchWriteItem"):
        requests = []
        for table_ref, body in params["RequestItems"].items():
            table = _table_name(table_ref)
            if operation == "BatchGetItem":
                keys = list(body["Keys"])
            else:
                keys = [
                    w.get("PutRequest", {}).get("Item") or w["DeleteRequest"]["Key"] for w in body
                ]
            leading = sorted({_partition_value(check, table, k) for k in keys})
            context = {"dynamodb:leadingkeys": leading}
            requests.append(
                Request(f"dynamodb:{operation}", _table_arn(check, region, table), context)
            )
        return requests
    if operation in _TABLE_OPERATIONS:
        table = _table_name(params["TableName"])
        return [Request(f"dynamodb:{operation}", _table_arn(check, region, table))]
    raise Unmodelled(f"no rule for dynamodb {operation}")


# ---- S3 ---------------------------------------------------------------------------------------


def _s3_backend(check: IamCheck) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[check.account]["aws"]


def _object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _lock_actions(params: Mapping[str, Any]) -> list[str]:
    actions = []
    if params.get("ObjectLockMode") or params.get("ObjectLockRetainUntilDate"):
        actions.append("s3:PutObjectRetention")
    if params.get("ObjectLockLegalHoldStatus"):
        actions.append("s3:PutObjectLegalHold")
    return actions


def _sse_kms_for_write(
    check: IamCheck, region: str, params: Mapping[str, Any], actions: Sequence[str]
) -> list[Request]:
    """The requester's KMS use by S3 when it encrypts a new object under a KMS key."""
    bucket_name, key = params["Bucket"], params["Key"]
    bucket = _s3_backend(check).buckets.get(bucket_name)
    default = ((bucket.encryption or {}).get("Rule", {}) if bucket is not None else {}) or {}
    by_default = default.get("ApplyServerSideEncryptionByDefault", {})
    algorithm = params.get("ServerSideEncryption") or by_default.get("SSEAlgorithm")
    if algorithm not in ("aws:kms", "aws:kms:dsse"):
        return []
    key_ref = params.get("SSEKMSKeyId") or by_default.get("KMSMasterKeyID")
    bucket_key = params.get("BucketKeyEnabled")
    if bucket_key is None:
        bucket_key = str(default.get("BucketKeyEnabled", "false")).lower() == "true"
    context_arn = f"arn:aws:s3:::{bucket_name}" if bucket_key else _object_arn(bucket_name, key)
    return _via_service(
        check, region, "s3", key_ref, actions, encryption_context={"aws:s3:arn": context_arn}
    )


def _sse_kms_for_read(check: IamCheck, region: str, params: Mapping[str, Any]) -> list[Request]:
    """kms:Decrypt through S3 when the object read is SSE-KMS (as moto stored it)."""
    bucket = _s3_backend(check).buckets.get(params["Bucket"])
    if bucket is None:
        return []
    version = params.get("VersionId")
    stored = None
    for candidate in bucket.keys.getlist(params["Key"], default=[]):
        if version is None or str(candidate.version_id) == str(version):
            stored = candidate
    if stored is None or getattr(stored, "encryption", None) != "aws:kms":
        return []
    bucket_key = str(stored.bucket_key_enabled).lower() == "true"
    arn = f"arn:aws:s3:::{params['Bucket']}"
    context_arn = arn if bucket_key else _object_arn(params["Bucket"], params["Key"])
    return _via_service(
        check,
        region,
        "s3",
        stored.kms_key_id,
        ["kms:Decrypt"],
        encryption_context={"aws:s3:arn": context_arn},
    )


def _s3(check: IamCheck, operation: str, params: Mapping[str, Any], region: str) -> list[Request]:
    bucket = params.get("Bucket", "")
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if operation in ("PutObject", "CreateMultipartUpload"):
        arn = _object_arn(bucket, params["Key"])
        actions = ["s3:PutObject", *_lock_actions(params)]
        kms = ["kms:GenerateDataKey"] + (["kms:Decrypt"] if operation != "PutObject" else [])
        return [Request(a, arn) for a in actions] + _sse_kms_for_write(check, region, params, kms)
    if operation in ("UploadPart", "CompleteMultipartUpload"):
        return [Request("s3:PutObject", _object_arn(bucket, params["Key"]))]
    if operation in ("GetObject", "HeadObject"):
        action = "s3:GetObjectVersion" if params.get("VersionId") else "s3:GetObject"
        request = Request(action, _object_arn(bucket, params["Key"]))
        return [request, *_sse_kms_for_read(check, region, params)]
    simple_object_actions = {
        "AbortMultipartUpload": "s3:AbortMultipartUpload",
        "ListParts": "s3:ListMultipartUploadParts",
        "PutObjectRetention": "s3:PutObjectRetention",
        "GetObjectRetention": "s3:GetObjectRetention",
        "PutObjectLegalHold": "s3:PutObjectLegalHold",
        "GetObjectLegalHold": "s3:GetObjectLegalHold",
        "GetObjectAttributes": "s3:GetObjectAttributes",
    }
    if operation in simple_object_actions:
        requests = [Request(simple_object_actions[operation], _object_arn(bucket, params["Key"]))]
        if params.get("BypassGovernanceRetention"):
            requests.append(
                Request("s3:BypassGovernanceRetention", _object_arn(bucket, params["Key"]))
            )
        return requests
    if operation == "DeleteObject":
        action = "s3:DeleteObjectVersion" if params.get("VersionId") else "s3:DeleteObject"
        return [Request(action, _object_arn(bucket, params["Key"]))]
    listings = {
        "ListObjects": "s3:ListBucket",
        "ListObjectsV2": "s3:ListBucket",
        "ListObjectVersions": "s3:ListBucketVersions",
        "ListMultipartUploads": "s3:ListBucketMultipartUploads",
        "HeadBucket": "s3:ListBucket",
    }
    if operation in listings:
        context: dict[str, Any] = {}
        for param, key in (("Prefix", "s3:prefix"), ("Delimiter", "s3:delimiter")):
            if param in params:
                context[key] = str(params[param])
        if "MaxKeys" in params:
            context["s3:max-keys"] = str(params["MaxKeys"])
        return [Request(listings[operation], bucket_arn, context)]
    raise Unmodelled(f"no rule for s3 {operation}")


# ---- KMS --------------------------------------------------------------------------------------


def _kms_backend(check: IamCheck, region: str) -> Any:
    from moto.kms.models import kms_backends

    return kms_backends[check.account][region]


def _kms_key(check: IamCheck, region: str, reference: str) -> tuple[str, dict[str, str]]:
    """(key ARN, tags) of the key `reference` names (id, ARN, alias name or alias ARN)."""
    backend = _kms_backend(check, region)
    try:
        key_id = backend.any_id_to_key_id(reference)
        key = backend.keys[key_id]
    except Exception:  # noqa: BLE001 - a key that does not exist: judged on what was named
        if reference.startswith("arn:"):
            return reference, {}
        return f"arn:aws:kms:{region}:{check.account}:key/{reference}", {}
    tags = backend.tagger.list_tags_for_resource(key.id).get("Tags", [])
    return key.arn, {t.get("TagKey", t.get("Key")): t.get("TagValue", t.get("Value")) for t in tags}


def _key_context(tags: Mapping[str, str]) -> dict[str, Any]:
    return {f"aws:resourcetag/{k}".lower(): v for k, v in tags.items()}


def _encryption_context(context: Mapping[str, str] | None) -> dict[str, Any]:
    if not context:
        return {}
    found: dict[str, Any] = {f"kms:encryptioncontext:{k}".lower(): v for k, v in context.items()}
    found["kms:encryptioncontextkeys"] = sorted(context)
    return found


def _via_service(
    check: IamCheck,
    region: str,
    service: str,
    key_ref: str | None,
    actions: Sequence[str],
    *,
    encryption_context: Mapping[str, str],
) -> list[Request]:
    if not key_ref:
        return []  # the service's AWS-managed key: nothing for the caller's role
    arn, tags = _kms_key(check, region, key_ref)
    context = {
        **_key_context(tags),
        **_encryption_context(encryption_context),
        "kms:viaservice": f"{service}.{region}.amazonaws.com",
        "kms:calleraccount": check.account,
    }
    return [Request(action, arn, context) for action in actions]


def _alias_arn(check: IamCheck, region: str, alias: str) -> str:
    if alias.startswith("arn:"):
        return alias
    return f"arn:aws:kms:{region}:{check.account}:{alias}"


def _kms(check: IamCheck, operation: str, params: Mapping[str, Any], region: str) -> list[Request]:
    action = f"kms:{operation}"
    base = {"kms:calleraccount": check.account}
    if operation == "CreateKey":
        tags = {t["TagKey"]: t["TagValue"] for t in params.get("Tags", [])}
        context: dict[str, Any] = dict(base)
        context.update({f"aws:requesttag/{k}".lower(): v for k, v in tags.items()})
        if tags:
            context["aws:tagkeys"] = sorted(tags)
        requests = [Request(action, "*", context)]
        if tags:
            requests.append(Request("kms:TagResource", "*", context))
        return requests
    if operation in ("CreateAlias", "DeleteAlias", "UpdateAlias"):
        alias = params["AliasName"]
        requests = [Request(action, _alias_arn(check, region, alias), base)]
        targets = [params["TargetKeyId"]] if "TargetKeyId" in params else []
        if operation != "CreateAlias":
            targets.insert(0, alias)  # the key the alias names now
        for target in targets:
            arn, tags = _kms_key(check, region, target)
            requests.append(Request(action, arn, {**base, **_key_context(tags)}))
        return requests
    if operation in {"ListAliases", "ListKeys"}:
        return [Request(action, "*", base)]
    key_ref = params.get("KeyId")
    if key_ref is None and operation == "Decrypt":
        from moto.kms.utils import _deserialize_ciphertext_blob

        key_ref = _deserialize_ciphertext_blob(params["CiphertextBlob"]).key_id
    if key_ref is None:
        raise Unmodelled(f"kms {operation} without a KeyId")
    arn, tags = _kms_key(check, region, key_ref)
    context = {**base, **_key_context(tags), **_encryption_context(params.get("EncryptionContext"))}
    if operation == "TagResource":
        request_tags = {t["TagKey"]: t["TagValue"] for t in params.get("Tags", [])}
        context.update({f"aws:requesttag/{k}".lower(): v for k, v in request_tags.items()})
        context["aws:tagkeys"] = sorted(request_tags)
    return [Request(action, arn, context)]


# ---- STS, SQS, Secrets Manager ------------------------------------------------------------------


def _sts(check: IamCheck, operation: str, params: Mapping[str, Any], region: str) -> list[Request]:
    if operation == "GetCallerIdentity":
        return []
    if operation == "AssumeRole":
        requests = [Request("sts:AssumeRole", params["RoleArn"])]
        if params.get("Tags"):
            requests.append(Request("sts:TagSession", params["RoleArn"]))
        if params.get("SourceIdentity"):
            requests.append(Request("sts:SetSourceIdentity", params["RoleArn"]))
        return requests
    raise Unmodelled(f"no rule for sts {operation}")


_SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(check: IamCheck, operation: str, params: Mapping[str, Any], region: str) -> list[Request]:
    if operation == "GetQueueUrl":
        account = params.get("QueueOwnerAWSAccountId", check.account)
        arn = f"arn:aws:sqs:{region}:{account}:{params['QueueName']}"
        return [Request("sqs:GetQueueUrl", arn)]
    if "QueueUrl" not in params:
        raise Unmodelled(f"no rule for sqs {operation}")
    url = urlsplit(params["QueueUrl"])
    account, _, name = url.path.strip("/").partition("/")
    host = url.hostname or ""
    queue_region = host.split(".")[1] if host.startswith("sqs.") else region
    arn = f"arn:aws:sqs:{queue_region}:{account}:{name}"
    action = "sqs:" + _SQS_ACTIONS.get(operation, operation)
    requests = [Request(action, arn)]
    if action == "sqs:SendMessage":
        from moto.sqs.models import sqs_backends

        queue = sqs_backends[account][queue_region].queues.get(name)
        key_ref = getattr(queue, "kms_master_key_id", None) if queue is not None else None
        if key_ref and key_ref != "alias/aws/sqs":
            requests += _via_service(
                check,
                queue_region,
                "sqs",
                key_ref,
                ["kms:GenerateDataKey", "kms:Decrypt"],
                encryption_context={"aws:sqs:arn": arn},
            )
    return requests


def _secretsmanager(
    check: IamCheck, operation: str, params: Mapping[str, Any], region: str
) -> list[Request]:
    if "SecretId" not in params:
        raise Unmodelled(f"no rule for secretsmanager {operation}")
    from moto.secretsmanager.models import secretsmanager_backends

    store = secretsmanager_backends[check.account][region].secrets
    secret_id = params["SecretId"]
    secret = store.get(secret_id)
    arn = secret.arn if secret is not None else secret_id
    requests = [Request(f"secretsmanager:{operation}", arn)]
    key_ref = getattr(secret, "kms_key_id", None)
    if operation == "GetSecretValue" and key_ref and key_ref != "alias/aws/secretsmanager":
        requests += _via_service(
            check,
            region,
            "secretsmanager",
            key_ref,
            ["kms:Decrypt"],
            encryption_context={"SecretARN": arn},
        )
    return requests
