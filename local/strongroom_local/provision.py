"""Create the template's resources (keys, secrets, table, buckets, queues, roles) in an emulator.

Used by the tests (inside moto's `mock_aws`) and by `strongroom local` (against moto's server),
so both run on exactly the resources `template.yaml` declares. Every property the emulator
accepts is applied as written; names are derived from the stack name as CloudFormation would,
and each resource is created after those it refers to. Each resource type lists the properties
it applies and those it leaves out knowingly, with why that changes nothing locally (`_EMULATED`);
any other property, resource attribute or resource type stops provisioning (UnsupportedTemplate),
as does a cycle of references. Bucket-policy statements moto would evaluate wrongly (one with a
Condition, a Principal other than "*", a NotPrincipal or a NotResource) are left out, and
logged.

Secrets get the value the template gives them, except where the resource's
`Metadata.StrongroomLocal.GeneratedValue` asks for a generated one (a deployed stack is given
its real values by an operator): `webhook-signing-secret` stores `{"active": ["whsec_..."]}`
with 24 random bytes in base64, a form every webhook scheme accepts (a Standard Webhooks key,
and a 38-character string for Stripe, GitHub and Lemon Squeezy).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.routes import function_properties
from strongroom_local.template import (
    TEMPLATE_PATH,
    Resolver,
    cloudformation_bool,
    cloudformation_int,
    load_template,
    resources_of_type,
    scalar_text,
)

log = logging.getLogger("strongroom_local.provision")

# Values for the template's deployment-specific parameters when nothing else is given.
# BillingProducts: products of the local walk-through and the tests, one per plan and source.
LOCAL_BILLING_PRODUCTS = ",".join(
    f"{source}:{product}={plan}"
    for source, products in (
        ("stripe", ("price_local_starter", "price_local_team", "price_local_enterprise")),
        ("lemonsqueezy", ("1001", "1002", "1003")),
        ("standard", ("prod_local_starter", "prod_local_team", "prod_local_enterprise")),
    )
    for product, plan in zip(products, ("starter", "team", "enterprise"), strict=True)
)
LOCAL_PARAMETERS = {
    "JwtIssuer": "https://127.0.0.1/dev-issuer",
    "JwtAudience": "strongroom",
    "BillingProducts": LOCAL_BILLING_PRODUCTS,
    # The local stack passes its own URLs (stack.oauth_parameters); these serve tests on moto.
    "OAuthRedirectUri": "http://127.0.0.1:3000/dev/oauth/callback",
    "OAuthReturnUrl": "http://127.0.0.1:3000/dev/health",
}


@dataclass
class Stack:
    """What was created: physical ids and attributes, and a resolver that knows them."""

    template: dict[str, Any]
    resolver: Resolver
    physical_ids: dict[str, str] = field(default_factory=dict)
    # Policy statements the emulator cannot evaluate faithfully and so were not applied
    # (each policy that had some is logged).
    unenforced_statements: list[dict[str, Any]] = field(default_factory=list)
    # Secrets Manager secrets: logical id -> secret name.
    secret_names: dict[str, str] = field(default_factory=dict)

    def ref(self, logical_id: str) -> str:
        return str(self.resolver.refs[logical_id])

    def attribute(self, logical_id: str, name: str) -> Any:
        return self.resolver.attributes[(logical_id, name)]

    def function_environment(self, function_logical_id: str | None = None) -> dict[str, str]:
        """Environment variables a function gets: Globals merged with its own as SAM merges
        them, resolved (without a function, the Globals' alone)."""
        if function_logical_id is None:
            where = "Globals.Function"
            props = self.template.get("Globals", {}).get("Function", {}) or {}
        else:
            where = function_logical_id
            props = function_properties(self.template, function_logical_id)
        environment = self.resolver.resolve(props.get("Environment", {})) or {}
        variables = environment.get("Variables", {}) if isinstance(environment, dict) else None
        if not isinstance(variables, dict):
            raise InvalidTemplate(f"{where}: Environment.Variables must be a map")
        return {
            name: scalar_text(value, f"Environment {name}") for name, value in variables.items()
        }


def _physical_name(stack_name: str, logical_id: str, *, lower: bool = False) -> str:
    name = f"{stack_name}-{logical_id}"
    return name.lower() if lower else name


def provision(
    session: boto3.Session | None = None,
    *,
    endpoint_url: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] = LOCAL_PARAMETERS,
    stack_name: str = "strongroom-local",
    template: dict[str, Any] | None = None,
    template_path: Path | None = None,
) -> Stack:
    """Create every key, secret, table, bucket and queue of the template; return what was made.

    The template is `template` if given, else the one at `template_path`, else template.yaml.
    `parameters` are the values given for the stack (`--parameter`): as CloudFormation does,
    a name the template does not declare is refused. `defaults` are the stack's own values,
    used for the parameters the template declares and `parameters` leaves out.
    Each resource is created after the resources it refers to, as CloudFormation orders them.
    """
    session = session or boto3.Session()
    if template is None:
        template = load_template(template_path or TEMPLATE_PATH)
    region = session.region_name or "us-east-1"
    resolver = Resolver.for_template(
        template, parameters=parameters, defaults=defaults, region=region, stack_name=stack_name
    )
    stack = Stack(template=template, resolver=resolver)

    @functools.cache
    def client(service: str) -> Any:
        return session.client(service, endpoint_url=endpoint_url, region_name=region)  # type: ignore[call-overload]

    for logical_id, resource in template.get("Resources", {}).items():
        if resolver.exists(logical_id) and resource.get("Type") not in (
            *_EMULATED,
            *_NOT_PROVISIONED,
        ):
            raise UnsupportedTemplate(
                f"{logical_id}: the local stack does not emulate {resource.get('Type')}"
            )
    for logical_id, resource in template.get("Resources", {}).items():
        for name in _depends_on(logical_id, resource):
            resolver.refuse_undefined(f"{logical_id}: DependsOn {name}", name, resources_only=True)
    _register_function_roles(stack)
    for logical_id in _creation_order(template):
        resource = template["Resources"][logical_id]
        _only(logical_id, resource, _RESOURCE_ATTRIBUTES)
        if not resolver.exists(logical_id):
            continue  # its Condition is false: not in the stack, as in CloudFormation
        emulated = _EMULATED[resource["Type"]]
        _only(logical_id, resource.get("Properties", {}), emulated.applied | set(emulated.skipped))
        for name in sorted(set(resource.get("Properties", {})) & set(emulated.skipped)):
            log.info("%s: %s left out locally: %s", logical_id, name, emulated.skipped[name])
        try:
            props = resolver.resolve(resource.get("Properties", {}))
        except KeyError as unknown:
            raise UnsupportedTemplate(
                f"{logical_id}: {unknown.args[0]}: provisioning creates only {_CREATED_TYPES}"
                " (those whose Condition holds)"
            ) from unknown
        except (InvalidTemplate, UnsupportedTemplate) as refused:
            raise type(refused)(f"{logical_id}: {refused}") from refused
        emulated.create(stack, client, logical_id, props)
    return stack


# DeletionPolicy and UpdateReplacePolicy change nothing locally: the local stack deletes and
# replaces no resource.
_RESOURCE_ATTRIBUTES = {
    "Type",
    "Properties",
    "DependsOn",
    "Condition",
    "Metadata",
    "DeletionPolicy",
    "UpdateReplacePolicy",
}


def _creation_order(template: Mapping[str, Any]) -> list[str]:
    """The template's resources that provisioning creates, each after those it refers to
    (Ref, Fn::GetAtt, Fn::Sub, DependsOn), otherwise in template order."""
    resources = {
        logical_id: resource
        for logical_id, resource in template.get("Resources", {}).items()
        if resource.get("Type") in _EMULATED
    }
    order: list[str] = []
    visiting: list[str] = []

    def visit(logical_id: str) -> None:
        if logical_id in order:
            return
        if logical_id in visiting:
            cycle = " -> ".join([*visiting[visiting.index(logical_id) :], logical_id])
            raise UnsupportedTemplate(f"resources refer to each other in a cycle: {cycle}")
        visiting.append(logical_id)
        for reference in _references(logical_id, resources[logical_id]):
            if reference in resources:
                visit(reference)
        visiting.pop()
        order.append(logical_id)

    for logical_id in resources:
        visit(logical_id)
    return order


def _depends_on(logical_id: str, resource: Mapping[str, Any]) -> list[str]:
    """The logical ids a resource's DependsOn names: one, or a list."""
    depends_on = resource.get("DependsOn", [])
    names = [depends_on] if isinstance(depends_on, str) else depends_on
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise InvalidTemplate(f"{logical_id}: DependsOn takes a logical id or a list of them")
    return names


def _references(logical_id: str, resource: Mapping[str, Any]) -> list[str]:
    """Logical ids (and parameters) a resource names in DependsOn, Ref, Fn::GetAtt or Fn::Sub.

    A malformed intrinsic names nothing here: resolving it refuses it."""
    found = list(_depends_on(logical_id, resource))

    def walk(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref" and isinstance(arg, str):
                    found.append(arg)
                    return
                if key == "Fn::GetAtt":
                    if isinstance(arg, str):
                        found.append(arg.split(".", 1)[0])
                    elif isinstance(arg, list) and arg and isinstance(arg[0], str):
                        found.append(arg[0])
                    return
                if key == "Fn::Sub":
                    text, variables = arg if isinstance(arg, list) and len(arg) == 2 else (arg, {})
                    if isinstance(text, str) and isinstance(variables, dict):
                        found.extend(
                            name.split(".", 1)[0]
                            for name in re.findall(r"\$\{([^}!][^}]*)\}", text)
                            if name not in variables
                        )
                        walk(variables)
                    return
            for item in value.values():
                walk(item)

    walk(resource.get("Properties", {}))
    return found


def _required(where: str, properties: Mapping[str, Any], *names: str) -> None:
    """Refuse properties that lack what CloudFormation (or the service it calls) requires."""
    missing = [name for name in names if name not in properties]
    if missing:
        raise InvalidTemplate(f"{where}: {', '.join(missing)} is required")


def _only(where: str, properties: Mapping[str, Any], known: Set[str]) -> None:
    """Stop at properties the local stack neither applies nor knowingly leaves out."""
    unknown = sorted(set(properties) - set(known))
    if unknown:
        raise UnsupportedTemplate(f"{where}: the local stack does not emulate {', '.join(unknown)}")


def _register_function_roles(stack: Stack) -> None:
    """The roles SAM makes for functions (`<Function>Role`), so that their ARNs resolve."""
    resolver = stack.resolver
    account, stack_name = resolver.refs["AWS::AccountId"], resolver.refs["AWS::StackName"]
    for logical_id, resource in resources_of_type(
        stack.template, "AWS::Serverless::Function", resolver
    ).items():
        if "Role" not in resource.get("Properties", {}):
            role_id = f"{logical_id}Role"
            name = _physical_name(stack_name, role_id)[:64]
            resolver.refs[role_id] = name
            resolver.attributes[(role_id, "Arn")] = f"arn:aws:iam::{account}:role/{name}"


# Every creator takes the stack so far, the emulator's clients by service, the resource's
# logical id and its properties, resolved.
_Clients = Callable[[str], Any]


def _create_key(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    kms, resolver = client("kms"), stack.resolver
    create: dict[str, Any] = {
        "Description": props.get("Description", logical_id),
        "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
        "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
        "MultiRegion": cloudformation_bool(
            props.get("MultiRegion", False), f"{logical_id}: MultiRegion"
        ),
    }
    # Without one, KMS (and moto) give the key its default policy, as CloudFormation does.
    if "KeyPolicy" in props:
        create["Policy"] = json.dumps(
            _policy_document(f"{logical_id}: KeyPolicy", props["KeyPolicy"])
        )
    if "Tags" in props:
        create["Tags"] = [{"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in props["Tags"]]
    created = kms.create_key(**create)["KeyMetadata"]
    if cloudformation_bool(
        props.get("EnableKeyRotation", False), f"{logical_id}: EnableKeyRotation"
    ):
        rotation = {}
        if "RotationPeriodInDays" in props:
            rotation["RotationPeriodInDays"] = cloudformation_int(
                props["RotationPeriodInDays"], f"{logical_id}: RotationPeriodInDays"
            )
        kms.enable_key_rotation(KeyId=created["KeyId"], **rotation)
    if not cloudformation_bool(props.get("Enabled", True), f"{logical_id}: Enabled"):
        kms.disable_key(KeyId=created["KeyId"])
    resolver.refs[logical_id] = created["KeyId"]
    resolver.attributes[(logical_id, "Arn")] = created["Arn"]
    resolver.attributes[(logical_id, "KeyId")] = created["KeyId"]
    stack.physical_ids[logical_id] = created["KeyId"]


def _create_alias(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    client("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
    stack.resolver.refs[logical_id] = props["AliasName"]
    stack.physical_ids[logical_id] = props["AliasName"]


GENERATED_VALUES = ("webhook-signing-secret",)


def _create_secret(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    name = props.get("Name") or _physical_name(stack.resolver.refs["AWS::StackName"], logical_id)
    resource = stack.template["Resources"][logical_id]
    create: dict[str, Any] = {
        "Name": name,
        "SecretString": _secret_value(logical_id, resource, props),
    }
    for optional in ("Description", "KmsKeyId", "Tags"):
        if optional in props:
            create[optional] = props[optional]
    arn = client("secretsmanager").create_secret(**create)["ARN"]
    stack.resolver.refs[logical_id] = arn
    stack.resolver.attributes[(logical_id, "Id")] = arn
    stack.physical_ids[logical_id] = arn
    stack.secret_names[logical_id] = name


# Secrets Manager's longest generated password.
_MAX_PASSWORD_LENGTH = 4096
_GENERATE_SECRET_STRING_PROPERTIES = {
    "ExcludeCharacters",
    "ExcludeLowercase",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "GenerateStringKey",
    "IncludeSpace",
    "PasswordLength",
    "RequireEachIncludedType",
    "SecretStringTemplate",
}


def _secret_value(logical_id: str, resource: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    if "SecretString" in props and "GenerateSecretString" in props:
        raise InvalidTemplate(
            f"{logical_id}: SecretString and GenerateSecretString exclude each other"
        )
    generated = _generated_value(logical_id, resource)
    if generated is not None:
        value = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")
        return json.dumps({"active": [value]})
    if "SecretString" in props:
        return str(props["SecretString"])
    # GenerateSecretString (or nothing, which CloudFormation treats alike): a random password.
    return _generated_secret(
        f"{logical_id}: GenerateSecretString", props.get("GenerateSecretString", {})
    )


def _generated_value(logical_id: str, resource: Mapping[str, Any]) -> str | None:
    """The value the local stack generates for a secret (Metadata.StrongroomLocal), if any.
    CloudFormation ignores this metadata; a value the stack does not know how to generate
    stops it rather than store the template's placeholder."""
    where = f"{logical_id}: Metadata.StrongroomLocal"
    local = (resource.get("Metadata") or {}).get("StrongroomLocal") or {}
    if not isinstance(local, Mapping):
        raise UnsupportedTemplate(f"{where} must be a map")
    _only(where, local, {"GeneratedValue"})
    generated = local.get("GeneratedValue")
    if generated is not None and generated not in GENERATED_VALUES:
        raise UnsupportedTemplate(
            f"{where}.GeneratedValue {generated!r} is not one the local stack generates"
            f" ({', '.join(GENERATED_VALUES)})"
        )
    return generated


def _generated_secret(where: str, spec: Mapping[str, Any]) -> str:
    """A password as Secrets Manager generates one, refusing what it refuses."""
    _only(where, spec, _GENERATE_SECRET_STRING_PROPERTIES)
    # Secrets Manager takes both or neither: the generated value goes into the JSON template.
    if ("GenerateStringKey" in spec) != ("SecretStringTemplate" in spec):
        raise InvalidTemplate(f"{where}: GenerateStringKey and SecretStringTemplate go together")

    def flag(name: str, default: bool) -> bool:
        return cloudformation_bool(spec.get(name, default), f"{where}.{name}")

    excluded_characters = spec.get("ExcludeCharacters", "")
    kinds = [
        "".join(c for c in chars if c not in excluded_characters)
        for chars, excluded in (
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZ", flag("ExcludeUppercase", False)),
            ("abcdefghijklmnopqrstuvwxyz", flag("ExcludeLowercase", False)),
            ("0123456789", flag("ExcludeNumbers", False)),
            ("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", flag("ExcludePunctuation", False)),
            (" ", not flag("IncludeSpace", False)),
        )
        if not excluded
    ]
    alphabet = "".join(kinds)
    if not alphabet:
        raise InvalidTemplate(f"{where}: every character is excluded")
    length = cloudformation_int(
        spec.get("PasswordLength", 32), "GenerateSecretString.PasswordLength"
    )
    if not 1 <= length <= _MAX_PASSWORD_LENGTH:
        raise InvalidTemplate(f"{where}: PasswordLength must be 1 to {_MAX_PASSWORD_LENGTH}")
    # As Secrets Manager does unless told otherwise: at least one character of each kind
    # (letters, digits, punctuation; not the space).
    required = [
        secrets.choice(chars)
        for chars in kinds
        if chars.strip() and flag("RequireEachIncludedType", True)
    ]
    if length < len(required):
        raise InvalidTemplate(
            f"{where}: PasswordLength {length} is too short for one character of each of the"
            f" {len(required)} kinds RequireEachIncludedType asks for"
        )
    chosen = required + [secrets.choice(alphabet) for _ in range(length - len(required))]
    secrets.SystemRandom().shuffle(chosen)
    password = "".join(chosen)
    if "GenerateStringKey" in spec:
        try:
            document = json.loads(spec["SecretStringTemplate"])
        except (TypeError, ValueError):
            document = None
        if not isinstance(document, dict):
            raise InvalidTemplate(f"{where}: SecretStringTemplate is not a JSON object's text")
        document[spec["GenerateStringKey"]] = password
        return json.dumps(document)
    return password


# Queue properties that are queue attributes of the same name: as written, as JSON, as a flag.
_QUEUE_ATTRIBUTES = ("DeduplicationScope", "FifoThroughputLimit", "KmsMasterKeyId")
_QUEUE_NUMBER_ATTRIBUTES = (
    "DelaySeconds",
    "KmsDataKeyReusePeriodSeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)
_QUEUE_JSON_ATTRIBUTES = ("RedriveAllowPolicy", "RedrivePolicy")
_QUEUE_FLAG_ATTRIBUTES = ("ContentBasedDeduplication", "FifoQueue", "SqsManagedSseEnabled")


def _create_queue(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    sqs, resolver = client("sqs"), stack.resolver
    attributes: dict[str, str] = {}
    for name in _QUEUE_ATTRIBUTES:
        if name in props:
            attributes[name] = scalar_text(props[name], f"{logical_id}: {name}")
    for name in _QUEUE_NUMBER_ATTRIBUTES:
        if name in props:
            attributes[name] = str(cloudformation_int(props[name], f"{logical_id}: {name}"))
    for name in _QUEUE_JSON_ATTRIBUTES:
        if name in props:
            # CloudFormation takes the policy as an object or as its JSON text.
            value = props[name]
            attributes[name] = value if isinstance(value, str) else json.dumps(value)
    for name in _QUEUE_FLAG_ATTRIBUTES:
        if name in props:
            attributes[name] = str(
                cloudformation_bool(props[name], f"{logical_id}: {name}")
            ).lower()
    name = props.get("QueueName") or _physical_name(resolver.refs["AWS::StackName"], logical_id)
    if "QueueName" not in props and attributes.get("FifoQueue") == "true":
        name += ".fifo"  # as CloudFormation names a FIFO queue
    create: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
    if "Tags" in props:
        create["tags"] = {tag["Key"]: tag["Value"] for tag in props["Tags"]}
    url = sqs.create_queue(**create)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    resolver.refs[logical_id] = url
    resolver.attributes[(logical_id, "Arn")] = arn
    resolver.attributes[(logical_id, "QueueName")] = name
    resolver.attributes[(logical_id, "QueueUrl")] = url
    stack.physical_ids[logical_id] = url


def _create_queue_policy(
    stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]
) -> None:
    policy = _policy_document(f"{logical_id}: PolicyDocument", props["PolicyDocument"])
    for url in props["Queues"]:
        client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})


def _create_table(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    dynamodb, resolver = client("dynamodb"), stack.resolver
    name = props.get("TableName") or _physical_name(resolver.refs["AWS::StackName"], logical_id)
    # CloudFormation's default is PROVISIONED, which needs ProvisionedThroughput.
    billing_mode = props.get("BillingMode", "PROVISIONED")
    if billing_mode == "PROVISIONED" and "ProvisionedThroughput" not in props:
        raise InvalidTemplate(
            f"{logical_id}: BillingMode PROVISIONED (CloudFormation's default) needs"
            " ProvisionedThroughput"
        )
    kwargs: dict[str, Any] = {
        "TableName": name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": billing_mode,
    }
    if "GlobalSecondaryIndexes" in props:
        kwargs["GlobalSecondaryIndexes"] = [
            {**index, "ProvisionedThroughput": _throughput(index["ProvisionedThroughput"])}
            if "ProvisionedThroughput" in index
            else index
            for index in props["GlobalSecondaryIndexes"]
        ]
    if "LocalSecondaryIndexes" in props:
        kwargs["LocalSecondaryIndexes"] = props["LocalSecondaryIndexes"]
    if "ProvisionedThroughput" in props:
        kwargs["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    if "StreamSpecification" in props:
        # CloudFormation gives only the view type; the API wants the stream enabled too.
        _only(
            f"{logical_id}: StreamSpecification", props["StreamSpecification"], {"StreamViewType"}
        )
        view_type = props["StreamSpecification"]["StreamViewType"]
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": view_type}
    if "Tags" in props:
        kwargs["Tags"] = props["Tags"]
    if "SSESpecification" in props:
        sse = dict(props["SSESpecification"])
        _only(f"{logical_id}: SSESpecification", sse, {"SSEEnabled", "SSEType", "KMSMasterKeyId"})
        kwargs["SSESpecification"] = {
            "Enabled": cloudformation_bool(
                sse.get("SSEEnabled", False), f"{logical_id}: SSEEnabled"
            ),
            **({"SSEType": sse["SSEType"]} if "SSEType" in sse else {}),
            **({"KMSMasterKeyId": sse["KMSMasterKeyId"]} if "KMSMasterKeyId" in sse else {}),
        }
    if "DeletionProtectionEnabled" in props:
        kwargs["DeletionProtectionEnabled"] = cloudformation_bool(
            props["DeletionProtectionEnabled"], f"{logical_id}: DeletionProtectionEnabled"
        )
    created = dynamodb.create_table(**kwargs)["TableDescription"]
    pitr = props.get("PointInTimeRecoverySpecification", {})
    _only(f"{logical_id}: PITR", pitr, {"PointInTimeRecoveryEnabled", "RecoveryPeriodInDays"})
    if cloudformation_bool(pitr.get("PointInTimeRecoveryEnabled", False), f"{logical_id}: PITR"):
        recovery: dict[str, Any] = {"PointInTimeRecoveryEnabled": True}
        if "RecoveryPeriodInDays" in pitr:
            recovery["RecoveryPeriodInDays"] = cloudformation_int(
                pitr["RecoveryPeriodInDays"], f"{logical_id}: RecoveryPeriodInDays"
            )
        dynamodb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification=recovery
        )
    ttl = props.get("TimeToLiveSpecification")
    _only(f"{logical_id}: TimeToLiveSpecification", ttl or {}, {"AttributeName", "Enabled"})
    if ttl and cloudformation_bool(ttl.get("Enabled", False), f"{logical_id}: TimeToLive Enabled"):
        dynamodb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = created["TableArn"]
    if "LatestStreamArn" in created:
        resolver.attributes[(logical_id, "StreamArn")] = created["LatestStreamArn"]
    stack.physical_ids[logical_id] = name


def _throughput(throughput: Mapping[str, Any]) -> dict[str, int]:
    """Capacity units as numbers: a Number parameter's value is a string."""
    return {
        name: cloudformation_int(units, f"ProvisionedThroughput.{name}")
        for name, units in throughput.items()
    }


def _create_bucket(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    s3, resolver = client("s3"), stack.resolver
    stack_name, region = resolver.refs["AWS::StackName"], resolver.refs["AWS::Region"]
    name = props.get("BucketName") or _physical_name(stack_name, logical_id, lower=True)
    create: dict[str, Any] = {"Bucket": name}
    if region != "us-east-1":
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    if cloudformation_bool(
        props.get("ObjectLockEnabled", False), f"{logical_id}: ObjectLockEnabled"
    ):
        create["ObjectLockEnabledForBucket"] = True
    s3.create_bucket(**create)
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration=props["VersioningConfiguration"]
        )
    lock = props.get("ObjectLockConfiguration")
    if lock:
        s3.put_object_lock_configuration(
            Bucket=name, ObjectLockConfiguration=_object_lock(logical_id, lock)
        )
    encryption = props.get("BucketEncryption")
    if encryption:
        _only(f"{logical_id}: BucketEncryption", encryption, {"ServerSideEncryptionConfiguration"})
        rules = encryption["ServerSideEncryptionConfiguration"]
        s3.put_bucket_encryption(
            Bucket=name,
            ServerSideEncryptionConfiguration={"Rules": [_sse_rule(logical_id, r) for r in rules]},
        )
    if "PublicAccessBlockConfiguration" in props:
        block = _public_access_block(logical_id, props["PublicAccessBlockConfiguration"])
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if "LifecycleConfiguration" in props:
        lifecycle = props["LifecycleConfiguration"]
        _only(f"{logical_id}: LifecycleConfiguration", lifecycle, {"Rules"})
        s3.put_bucket_lifecycle_configuration(
            Bucket=name,
            LifecycleConfiguration={
                "Rules": [_lifecycle_rule(logical_id, r) for r in lifecycle["Rules"]]
            },
        )
    if "CorsConfiguration" in props:
        _only(f"{logical_id}: CorsConfiguration", props["CorsConfiguration"], {"CorsRules"})
        rules = props["CorsConfiguration"]["CorsRules"]
        s3.put_bucket_cors(
            Bucket=name,
            CORSConfiguration={"CORSRules": [_cors_rule(logical_id, r) for r in rules]},
        )
    if "LoggingConfiguration" in props:
        logging = props["LoggingConfiguration"]
        _only(
            f"{logical_id}: LoggingConfiguration",
            logging,
            {"DestinationBucketName", "LogFilePrefix", "TargetObjectKeyFormat"},
        )
        _put_bucket_logging(s3, name, logging)
    if "Tags" in props:
        s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": props["Tags"]})
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
    stack.physical_ids[logical_id] = name


def _create_bucket_policy(
    stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]
) -> None:
    document = _policy_document(f"{logical_id}: PolicyDocument", props["PolicyDocument"])
    # moto evaluates a bucket policy on object requests, but not every statement as S3 does
    # (_misjudged): those are kept out of the emulator, and said so (tests check template.yaml's
    # in the template itself); the rest, for everyone and without a Condition, moto evaluates
    # as S3 would.
    statements = _statements(f"{logical_id}: PolicyDocument", document)
    for number, statement in enumerate(statements, 1):
        if "Principal" not in statement and "NotPrincipal" not in statement:
            raise InvalidTemplate(
                f"{logical_id}: statement {statement.get('Sid', f'#{number}')} has no Principal"
                " (S3 refuses a bucket policy statement without one)"
            )
    kept = [s for s in statements if not _misjudged(s)]
    left_out = [(n, s) for n, s in enumerate(statements, 1) if _misjudged(s)]
    stack.unenforced_statements.extend(s for _, s in left_out)
    if left_out:
        log.warning(
            "%s: statements %s not applied locally (moto would evaluate them wrongly: it reads"
            ' no Condition, NotPrincipal or NotResource, and no Principal other than "*")%s',
            logical_id,
            ", ".join(s.get("Sid", f"#{n}") for n, s in left_out),
            "" if kept else f": {props['Bucket']} has no bucket policy",
        )
    if kept:
        document["Statement"] = kept
        client("s3").put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))


def _misjudged(statement: Mapping[str, Any]) -> bool:
    """Whether moto (5.2) would evaluate a bucket-policy statement otherwise than S3 does.

    It reads no Condition (a conditional Deny denies every request, a conditional Allow allows
    it); a Principal map other than {"AWS": "*"} applies to every caller (a Deny scoped to one
    role denies all), a principal string other than "*" to none; a NotPrincipal is not read
    (the statement applies to all), nor a NotResource (a Deny then permits).
    """
    return (
        "Condition" in statement
        or "NotPrincipal" in statement
        or "NotResource" in statement
        or statement.get("Principal") not in ("*", {"AWS": "*"})
    )


def _policy_document(where: str, policy: Any) -> dict[str, Any]:
    """A policy document as CloudFormation takes it: an object, or its JSON text (a copy)."""
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError as error:
            raise InvalidTemplate(f"{where}: not JSON: {error}") from None
    if not isinstance(policy, dict):
        raise InvalidTemplate(f"{where}: a policy document is a JSON object, not {policy!r}")
    return dict(policy)


def _statements(where: str, document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A policy's statements: IAM's grammar takes a single statement as well as a list."""
    statements = document.get("Statement")
    if isinstance(statements, dict):
        return [statements]
    if isinstance(statements, list) and all(isinstance(s, dict) for s in statements):
        if not statements:  # S3 refuses it: the policy would be silently not put
            raise InvalidTemplate(f"{where}: Statement is an empty list")
        return statements
    raise InvalidTemplate(f"{where}: Statement must be a statement or a list of statements")


def _create_role(stack: Stack, client: _Clients, logical_id: str, props: dict[str, Any]) -> None:
    """moto records the role's policies; it does not enforce them."""
    iam, resolver = client("iam"), stack.resolver
    name = props.get("RoleName") or _physical_name(resolver.refs["AWS::StackName"], logical_id)[:64]
    create: dict[str, Any] = {
        "RoleName": name,
        "AssumeRolePolicyDocument": json.dumps(
            _policy_document(
                f"{logical_id}: AssumeRolePolicyDocument", props["AssumeRolePolicyDocument"]
            )
        ),
        "Description": props.get("Description", logical_id),
        "MaxSessionDuration": cloudformation_int(
            props.get("MaxSessionDuration", 3600), f"{logical_id}: MaxSessionDuration"
        ),
    }
    for optional in ("Path", "PermissionsBoundary", "Tags"):
        if optional in props:
            create[optional] = props[optional]
    created = iam.create_role(**create)["Role"]
    for policy in props.get("Policies", []):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=policy["PolicyName"],
            PolicyDocument=json.dumps(
                _policy_document(
                    f"{logical_id}: policy {policy['PolicyName']}", policy["PolicyDocument"]
                )
            ),
        )
    resolver.refs[logical_id] = name
    resolver.attributes[(logical_id, "Arn")] = created["Arn"]
    resolver.attributes[(logical_id, "RoleId")] = created["RoleId"]
    stack.physical_ids[logical_id] = name


@dataclass(frozen=True)
class _Emulated:
    """How provisioning creates a resource type: the properties it applies, those it leaves
    out knowingly (each with why that changes nothing locally); any other stops it."""

    create: Callable[[Stack, _Clients, str, dict[str, Any]], None]
    applied: frozenset[str]
    skipped: Mapping[str, str] = field(default_factory=dict)


_EMULATED = {
    "AWS::KMS::Key": _Emulated(
        _create_key,
        frozenset(
            {
                "Description",
                "Enabled",
                "EnableKeyRotation",
                "KeyPolicy",
                "KeySpec",
                "KeyUsage",
                "MultiRegion",
                "RotationPeriodInDays",
                "Tags",
            }
        ),
        {
            "PendingWindowInDays": "only delays a deletion, and the local stack deletes no key",
            "BypassPolicyLockoutSafetyCheck": "moto makes no policy lockout check to bypass",
        },
    ),
    "AWS::KMS::Alias": _Emulated(_create_alias, frozenset({"AliasName", "TargetKeyId"})),
    "AWS::SecretsManager::Secret": _Emulated(
        _create_secret,
        frozenset(
            {"Name", "Description", "KmsKeyId", "SecretString", "GenerateSecretString", "Tags"}
        ),
        {"ReplicaRegions": "replicas live in other regions; the local stack runs in one"},
    ),
    "AWS::SQS::Queue": _Emulated(
        _create_queue,
        frozenset(
            {
                "QueueName",
                "Tags",
                *_QUEUE_ATTRIBUTES,
                *_QUEUE_NUMBER_ATTRIBUTES,
                *_QUEUE_JSON_ATTRIBUTES,
                *_QUEUE_FLAG_ATTRIBUTES,
            }
        ),
    ),
    "AWS::SQS::QueuePolicy": _Emulated(
        _create_queue_policy, frozenset({"PolicyDocument", "Queues"})
    ),
    "AWS::DynamoDB::Table": _Emulated(
        _create_table,
        frozenset(
            {
                "AttributeDefinitions",
                "BillingMode",
                "DeletionProtectionEnabled",
                "GlobalSecondaryIndexes",
                "KeySchema",
                "LocalSecondaryIndexes",
                "PointInTimeRecoverySpecification",
                "ProvisionedThroughput",
                "SSESpecification",
                "StreamSpecification",
                "TableName",
                "Tags",
                "TimeToLiveSpecification",
            }
        ),
        {
            "ContributorInsightsSpecification": "CloudWatch metrics only",
            "TableClass": "a storage price class; reads and writes behave alike",
        },
    ),
    "AWS::S3::Bucket": _Emulated(
        _create_bucket,
        frozenset(
            {
                "BucketEncryption",
                "BucketName",
                "CorsConfiguration",
                "LifecycleConfiguration",
                "LoggingConfiguration",
                "ObjectLockConfiguration",
                "ObjectLockEnabled",
                "OwnershipControls",
                "PublicAccessBlockConfiguration",
                "Tags",
                "VersioningConfiguration",
            }
        ),
        {"MetricsConfigurations": "CloudWatch request metrics only"},
    ),
    "AWS::S3::BucketPolicy": _Emulated(
        _create_bucket_policy, frozenset({"Bucket", "PolicyDocument"})
    ),
    "AWS::IAM::Role": _Emulated(
        _create_role,
        frozenset(
            {
                "AssumeRolePolicyDocument",
                "Description",
                "MaxSessionDuration",
                "Path",
                "PermissionsBoundary",
                "Policies",
                "RoleName",
                "Tags",
            }
        ),
        {
            "ManagedPolicyArns": "moto enforces no IAM, and holds no AWS managed policy to attach",
        },
    ),
}
_CREATED_TYPES = ", ".join(_EMULATED)
# Types the local stack handles other than by provisioning them, and how (a type it comes to
# handle elsewhere is added here; any other stops provisioning).
_NOT_PROVISIONED = {
    "AWS::Serverless::Function": "run by the local stack's workers (wiring)",
    "AWS::Serverless::LayerVersion": "put on its functions' sys.path (wiring)",
    "AWS::Serverless::HttpApi": "served by the local stack's HTTP API (routes, wiring)",
    "AWS::Logs::LogGroup": "functions log to the local stack's output",
}


def _object_lock(logical_id: str, lock: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's Object Lock configuration -> the S3 API's."""
    where = f"{logical_id}: ObjectLockConfiguration"
    _only(where, lock, {"ObjectLockEnabled", "Rule"})
    _required(where, lock, "ObjectLockEnabled")
    configuration: dict[str, Any] = {"ObjectLockEnabled": lock["ObjectLockEnabled"]}
    if "Rule" in lock:
        _only(f"{where}.Rule", lock["Rule"], {"DefaultRetention"})
        # CloudFormation passes on a Rule without a retention; S3 refuses it.
        _required(f"{where}.Rule", lock["Rule"], "DefaultRetention")
        retention = lock["Rule"]["DefaultRetention"]
        where = f"{where}.Rule.DefaultRetention"
        _only(where, retention, {"Mode", "Days", "Years"})
        _required(where, retention, "Mode")
        if len({"Days", "Years"} & set(retention)) != 1:
            raise InvalidTemplate(f"{where}: Days or Years is required, not both")
        configuration["Rule"] = {
            "DefaultRetention": {
                "Mode": retention["Mode"],
                **{
                    k: cloudformation_int(v, f"{logical_id}: DefaultRetention.{k}")
                    for k, v in retention.items()
                    if k != "Mode"
                },
            }
        }
    return configuration


_PUBLIC_ACCESS_BLOCK_SETTINGS = {
    "BlockPublicAcls",
    "BlockPublicPolicy",
    "IgnorePublicAcls",
    "RestrictPublicBuckets",
}


def _public_access_block(logical_id: str, block: Mapping[str, Any]) -> dict[str, bool]:
    """Each setting as a boolean; CloudFormation has no other setting."""
    unknown = sorted(set(block) - _PUBLIC_ACCESS_BLOCK_SETTINGS)
    if unknown:
        raise InvalidTemplate(
            f"{logical_id}: PublicAccessBlockConfiguration has no {', '.join(unknown)}"
            f" (only {', '.join(sorted(_PUBLIC_ACCESS_BLOCK_SETTINGS))})"
        )
    return {
        setting: cloudformation_bool(value, f"{logical_id}: {setting}")
        for setting, value in block.items()
    }


def _sse_rule(logical_id: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's default encryption rule shape -> the S3 API's."""
    where = f"{logical_id}: encryption rule"
    _only(where, rule, {"ServerSideEncryptionByDefault", "BucketKeyEnabled"})
    converted: dict[str, Any] = {}
    if "ServerSideEncryptionByDefault" in rule:
        default = rule["ServerSideEncryptionByDefault"]
        _only(where, default, {"SSEAlgorithm", "KMSMasterKeyID"})
        converted["ApplyServerSideEncryptionByDefault"] = dict(default)
    if "BucketKeyEnabled" in rule:
        converted["BucketKeyEnabled"] = cloudformation_bool(
            rule["BucketKeyEnabled"], f"{where}: BucketKeyEnabled"
        )
    return converted


def _cors_rule(logical_id: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's CORS rule shape -> the S3 API's."""
    names = {"Id": "ID", "ExposedHeaders": "ExposeHeaders", "MaxAge": "MaxAgeSeconds"}
    allowed = {"AllowedHeaders", "AllowedMethods", "AllowedOrigins", *names}
    _only(f"{logical_id}: CORS rule {rule.get('Id', '')}", rule, allowed)
    converted = {names.get(key, key): value for key, value in rule.items()}
    if "MaxAgeSeconds" in converted:
        converted["MaxAgeSeconds"] = cloudformation_int(converted["MaxAgeSeconds"], "CORS MaxAge")
    return converted


def _put_bucket_logging(s3: Any, bucket: str, logging: Mapping[str, Any]) -> None:
    """Server access logging of `bucket`: into the destination named, else into `bucket` itself."""
    target = logging.get("DestinationBucketName", bucket)
    prefix = logging.get("LogFilePrefix", "")
    enabled = {"TargetBucket": target, "TargetPrefix": prefix}
    if "TargetObjectKeyFormat" in logging:
        enabled["TargetObjectKeyFormat"] = logging["TargetObjectKeyFormat"]
    # moto refuses logging into a bucket whose policy holds no plain grant to S3's log delivery.
    # CloudFormation puts that grant after the buckets it names (template.yaml's names their
    # ARNs), and moto delivers no logs: the target is lent such a policy for this call only.
    try:
        own_policy: str | None = s3.get_bucket_policy(Bucket=target)["Policy"]
    except ClientError as error:
        if error.response["Error"]["Code"] != "NoSuchBucketPolicy":
            raise
        own_policy = None
    delivery = {
        "Effect": "Allow",
        "Principal": {"Service": "logging.s3.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": f"arn:aws:s3:::{target}/{prefix}*",
    }
    lent = {"Version": "2012-10-17", "Statement": [delivery]}
    s3.put_bucket_policy(Bucket=target, Policy=json.dumps(lent))
    try:
        s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={"LoggingEnabled": enabled})
    finally:
        if own_policy:
            s3.put_bucket_policy(Bucket=target, Policy=own_policy)
        else:
            s3.delete_bucket_policy(Bucket=target)


_LIFECYCLE_RULE_PROPERTIES = {
    "AbortIncompleteMultipartUpload",
    "ExpirationDate",
    "ExpirationInDays",
    "ExpiredObjectDeleteMarker",
    "Id",
    "NoncurrentVersionExpiration",
    "NoncurrentVersionExpirationInDays",
    "NoncurrentVersionTransition",
    "NoncurrentVersionTransitions",
    "ObjectSizeGreaterThan",
    "ObjectSizeLessThan",
    "Prefix",
    "Status",
    "TagFilters",
    "Transition",
    "Transitions",
}


def _lifecycle_rule(logical_id: str, rule: Mapping[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape -> the S3 API's."""
    where = f"{logical_id}: lifecycle rule {rule.get('Id', '')}"
    _only(where, rule, _LIFECYCLE_RULE_PROPERTIES)
    _required(where, rule, "Status")
    converted: dict[str, Any] = {"Status": rule["Status"], "Filter": _lifecycle_filter(rule)}
    if "Id" in rule:
        converted["ID"] = rule["Id"]
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = cloudformation_int(
            rule["ExpirationInDays"], f"{where}: ExpirationInDays"
        )
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        marker = cloudformation_bool(
            rule["ExpiredObjectDeleteMarker"], f"{rule.get('Id')}: delete markers"
        )
        if expiration:
            # S3 refuses the rule (MalformedXML), so CloudFormation's deploy fails.
            raise InvalidTemplate(
                f"{where}: ExpiredObjectDeleteMarker cannot be set with ExpirationInDays"
                " or ExpirationDate"
            )
        expiration["ExpiredObjectDeleteMarker"] = marker
    if expiration:
        converted["Expiration"] = expiration
    noncurrent = dict(rule.get("NoncurrentVersionExpiration", {}))
    if "NoncurrentVersionExpirationInDays" in rule:  # the older, single-valued form
        noncurrent["NoncurrentDays"] = rule["NoncurrentVersionExpirationInDays"]
    if noncurrent:
        converted["NoncurrentVersionExpiration"] = {
            k: cloudformation_int(v, f"{where}: {k}") for k, v in noncurrent.items()
        }
    # Each transition list also has an older, single-valued form.
    transitions = [*rule.get("Transitions", []), *_listed(rule.get("Transition"))]
    if transitions:
        converted["Transitions"] = [_transition(where, t) for t in transitions]
    noncurrent_transitions = [
        *rule.get("NoncurrentVersionTransitions", []),
        *_listed(rule.get("NoncurrentVersionTransition")),
    ]
    if noncurrent_transitions:
        converted["NoncurrentVersionTransitions"] = [
            _noncurrent_transition(where, t) for t in noncurrent_transitions
        ]
    if "AbortIncompleteMultipartUpload" in rule:
        days = rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
        converted["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": cloudformation_int(days, f"{where}: DaysAfterInitiation")
        }
    return converted


def _transition(rule: str, transition: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{rule}: transition"
    _only(where, transition, {"StorageClass", "TransitionDate", "TransitionInDays"})
    _required(where, transition, "StorageClass")
    if len({"TransitionDate", "TransitionInDays"} & set(transition)) != 1:
        raise InvalidTemplate(f"{where}: TransitionDate or TransitionInDays is required, not both")
    converted: dict[str, Any] = {"StorageClass": transition["StorageClass"]}
    if "TransitionInDays" in transition:
        converted["Days"] = cloudformation_int(transition["TransitionInDays"], f"{where}: days")
    if "TransitionDate" in transition:
        converted["Date"] = transition["TransitionDate"]
    return converted


def _noncurrent_transition(rule: str, transition: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{rule}: noncurrent version transition"
    _only(where, transition, {"StorageClass", "TransitionInDays", "NewerNoncurrentVersions"})
    _required(where, transition, "StorageClass", "TransitionInDays")
    converted: dict[str, Any] = {
        "StorageClass": transition["StorageClass"],
        "NoncurrentDays": cloudformation_int(transition["TransitionInDays"], f"{where}: days"),
    }
    if "NewerNoncurrentVersions" in transition:
        converted["NewerNoncurrentVersions"] = cloudformation_int(
            transition["NewerNoncurrentVersions"], f"{where}: NewerNoncurrentVersions"
        )
    return converted


def _lifecycle_filter(rule: Mapping[str, Any]) -> dict[str, Any]:
    """The objects a lifecycle rule applies to: its prefix, tags and sizes, all of them."""
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule["Prefix"]
    tags = [{"Key": tag["Key"], "Value": tag["Value"]} for tag in rule.get("TagFilters", [])]
    if tags:
        conditions["Tags"] = tags
    for size in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if size in rule:
            conditions[size] = cloudformation_int(
                rule[size], f"lifecycle rule {rule.get('Id', '')}: {size}"
            )
    if len(conditions) > 1 or len(tags) > 1:
        return {"And": conditions}
    if tags:
        return {"Tag": tags[0]}
    return conditions or {"Prefix": ""}


def _listed(value: Any) -> list[Any]:
    return [] if value is None else [value]
