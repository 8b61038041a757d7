"""The template's shared resources, as created from template.yaml, carry their guarantees."""

from __future__ import annotations

import json
from typing import Any

import boto3

from strongroom_local.provision import LOCAL_PARAMETERS, Stack
from strongroom_local.template import Resolver, load_template, resources_of_type


def test_buckets_are_object_locked_versioned_encrypted_and_private(stack: Stack) -> None:
    s3 = boto3.client("s3")
    for logical_id in ("BackupBucket", "AuditBucket"):
        bucket = stack.ref(logical_id)
        lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert lock["ObjectLockEnabled"] == "Enabled"
        assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ][0]["ApplyServerSideEncryptionByDefault"]
        assert rule["SSEAlgorithm"] == "aws:kms"
        assert rule["KMSMasterKeyID"] == stack.attribute("PlatformKey", "Arn")
        block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        assert len(block) == 4
        assert all(block.values())


def test_buckets_and_queues_deny_requests_without_tls() -> None:
    # Checked in the template: moto ignores policy conditions, so provisioning leaves these
    # conditional denies out of the emulator (they would deny everything there).
    template = load_template()
    policies = {
        **resources_of_type(template, "AWS::S3::BucketPolicy"),
        **resources_of_type(template, "AWS::SQS::QueuePolicy"),
    }
    protected = set()
    for policy in policies.values():
        props = policy["Properties"]
        (deny,) = [s for s in props["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
        assert deny["Principal"] == "*"
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert deny["Action"] in ("s3:*", "sqs:*")
        if "Bucket" in props:
            protected.add(props["Bucket"]["Ref"])
        else:
            protected.update(queue["Ref"] for queue in props["Queues"])
    assert set(resources_of_type(template, "AWS::S3::Bucket")) <= protected
    assert set(resources_of_type(template, "AWS::SQS::Queue")) <= protected


def test_retention_days_follow_the_parameters() -> None:
    template = load_template()
    for logical_id, parameter in (
        ("BackupBucket", "BackupRetentionDays"),
        ("AuditBucket", "AuditRetentionDays"),
    ):
        props = template["Resources"][logical_id]["Properties"]
        retention = props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]
        assert retention == {"Mode": "COMPLIANCE", "Days": {"Ref": parameter}}
        (noncurrent,) = [
            r
            for r in props["LifecycleConfiguration"]["Rules"]
            if "NoncurrentVersionExpiration" in r
        ]
        assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == {"Ref": parameter}


def test_table_is_encrypted_recoverable_and_has_ttl(stack: Stack) -> None:
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.ref("Table"))["Table"]
    assert {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]} == {
        "pk": "HASH",
        "sk": "RANGE",
    }
    assert table["SSEDescription"]["SSEType"] == "KMS"
    assert table["SSEDescription"]["KMSMasterKeyArn"] == stack.attribute("PlatformKey", "Arn")
    backups = dynamodb.describe_continuous_backups(TableName=stack.ref("Table"))
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert pitr["PointInTimeRecoveryStatus"] == "ENABLED"
    ttl = dynamodb.describe_time_to_live(TableName=stack.ref("Table"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_backup_queue_dead_letters_after_redrive_count(stack: Stack) -> None:
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=stack.ref("BackupQueue"), AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == stack.attribute("BackupDeadLetterQueue", "Arn")
    assert int(redrive["maxReceiveCount"]) >= 1
    assert attributes["KmsMasterKeyId"] == stack.attribute("PlatformKey", "Arn")


def test_platform_key_rotates(stack: Stack) -> None:
    kms = boto3.client("kms")
    status = kms.get_key_rotation_status(KeyId=stack.ref("PlatformKey"))
    assert status["KeyRotationEnabled"] is True


def test_every_function_runs_arm64_python_3_12_or_newer_with_tracing() -> None:
    template = load_template()
    function_globals = template["Globals"]["Function"]
    runtime = function_globals["Runtime"]
    assert runtime.startswith("python3.")
    assert int(runtime.split(".")[1]) >= 12
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        assert props.get("Runtime", runtime) == runtime
        assert "LoggingConfig" in props, "each function names its explicit log group"


def test_no_traced_method_stores_its_return_value_or_exception_in_the_trace() -> None:
    # The handlers say so in code (tests/unit/test_tracing.py); the environment covers the rest.
    template = load_template()
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    assert variables["POWERTOOLS_TRACER_CAPTURE_ERROR"] == "false"
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        own = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not {"POWERTOOLS_TRACER_CAPTURE_RESPONSE", "POWERTOOLS_TRACER_CAPTURE_ERROR"} & set(
            own
        )


def test_every_log_group_has_retention() -> None:
    template = load_template()
    groups = resources_of_type(template, "AWS::Logs::LogGroup")
    assert groups
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_http_api_defaults_to_the_jwt_authorizer() -> None:
    template = load_template()
    auth = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = auth["Authorizers"]["JwtAuthorizer"]["JwtConfiguration"]
    assert jwt == {"issuer": {"Ref": "JwtIssuer"}, "audience": {"Ref": "JwtAudience"}}


def test_data_buckets_log_access_to_the_access_log_bucket(stack: Stack) -> None:
    template = load_template()
    buckets = resources_of_type(template, "AWS::S3::Bucket")
    logged = {}
    for logical_id, bucket in buckets.items():
        if logical_id != "AccessLogBucket":
            logging = bucket["Properties"]["LoggingConfiguration"]
            assert logging["DestinationBucketName"] == {"Ref": "AccessLogBucket"}
            logged[logical_id] = logging["LogFilePrefix"]
    assert set(logged) >= {"BackupBucket", "AuditBucket"}
    # S3 delivers access logs only to a bucket without Object Lock, encrypted with SSE-S3.
    log_bucket = buckets["AccessLogBucket"]["Properties"]
    assert "ObjectLockEnabled" not in log_bucket
    encryption = log_bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption == [{"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
    # Delivery is granted by the policy (ACLs are off), only from this stack's buckets and only
    # under each bucket's own prefix.
    (policy,) = [
        p["Properties"]["PolicyDocument"]
        for p in resources_of_type(template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": "AccessLogBucket"}
    ]
    (delivery,) = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}
    assert delivery["Action"] == "s3:PutObject"
    assert delivery["Resource"] == [
        {"Fn::Sub": f"${{AccessLogBucket.Arn}}/{prefix}*"} for prefix in logged.values()
    ]
    assert delivery["Condition"]["ArnLike"]["aws:SourceArn"] == [
        {"Fn::GetAtt": [logical_id, "Arn"]} for logical_id in logged
    ]
    assert delivery["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    # As provisioned: the data buckets log there; it is private, and logs expire with the
    # stack's log retention.
    s3 = boto3.client("s3")
    name = stack.ref("AccessLogBucket")
    for logical_id, prefix in logged.items():
        logging = s3.get_bucket_logging(Bucket=stack.ref(logical_id))["LoggingEnabled"]
        assert logging == {"TargetBucket": name, "TargetPrefix": prefix}
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert len(block) == 4
    assert all(block.values())
    rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    (expiry,) = [r for r in rules if "Expiration" in r]
    assert expiry["Expiration"] == {"Days": int(stack.resolver.refs["LogRetentionDays"])}


def test_scheduled_functions_dead_letter_failed_invocations() -> None:
    # Schedules invoke asynchronously: after Lambda's retries the event is kept, not dropped.
    template = load_template()
    queues = resources_of_type(template, "AWS::SQS::Queue")
    scheduled = 0
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        if any(e["Type"] == "Schedule" for e in props.get("Events", {}).values()):
            scheduled += 1
            dlq = props["DeadLetterQueue"]
            assert dlq["Type"] == "SQS"
            (queue_id, attribute) = dlq["TargetArn"]["Fn::GetAtt"]
            assert attribute == "Arn"
            queue = queues[queue_id]["Properties"]
            assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": ["PlatformKey", "Arn"]}
            # Lambda sends to the queue as the function's role: it must be able to use the
            # queue's key through SQS, or every failed invocation is lost.
            assert _may_use_key_through_sqs(props, queue["KmsMasterKeyId"]), function
    assert scheduled


def _may_use_key_through_sqs(props: dict[str, Any], key: object) -> bool:
    sqs = {"Fn::Sub": "sqs.${AWS::Region}.amazonaws.com"}
    for policy in props.get("Policies", []):
        for statement in policy.get("Statement", []):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", [])
            if (
                statement.get("Effect") == "Allow"
                and statement.get("Resource") == key
                and {"kms:GenerateDataKey", "kms:Decrypt"} <= set(actions)
                and sqs in via
            ):
                return True
    return False


def test_prod_reserves_concurrency_for_every_function_within_the_workers_polling() -> None:
    template = load_template()
    prod = Resolver.for_template(template, parameters={**LOCAL_PARAMETERS, "Stage": "prod"})
    dev = Resolver.for_template(template, parameters={**LOCAL_PARAMETERS, "Stage": "dev"})
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        props = function["Properties"]
        reserved = props["ReservedConcurrentExecutions"]
        assert prod.resolve(reserved) >= 1
        assert dev.resolve(reserved) is None  # a small account can still take a dev stack
        for event in props.get("Events", {}).values():
            if event["Type"] == "SQS":
                # Pollers beyond the reservation would be throttled into dead-lettering.
                maximum = event["Properties"]["ScalingConfig"]["MaximumConcurrency"]
                assert 2 <= maximum <= prod.resolve(reserved)


def test_function_environments_are_encrypted_under_the_platform_key() -> None:
    template = load_template()
    function_globals = template["Globals"]["Function"]
    assert function_globals["KmsKeyArn"] == {"Fn::GetAtt": ["PlatformKey", "Arn"]}
    for function in resources_of_type(template, "AWS::Serverless::Function").values():
        assert "KmsKeyArn" not in function["Properties"]


def test_layer_is_built_for_the_functions_runtime_and_architecture() -> None:
    # sam build fetches the layer's wheels for its BuildMethod and BuildArchitecture, not for
    # the functions' settings (`make build` compiles with the Globals runtime's Python).
    template = load_template()
    function_globals = template["Globals"]["Function"]
    runtime, architectures = function_globals["Runtime"], function_globals["Architectures"]
    for layer in resources_of_type(template, "AWS::Serverless::LayerVersion").values():
        assert layer["Metadata"] == {"BuildMethod": runtime, "BuildArchitecture": architectures[0]}
        assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
        assert layer["Properties"]["CompatibleArchitectures"] == architectures
