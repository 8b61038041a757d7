"""The template's shared resources, as created from template.yaml, carry their guarantees."""

from __future__ import annotations

import json

import boto3

from strongroom_local.provision import Stack
from strongroom_local.template import load_template, resources_of_type


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
