"""Keys, tables, buckets and queues provisioned from a template: every property as written."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.provision import Stack, provision

KEY_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"AWS": {"Fn::Sub": "arn:aws:iam::${AWS::AccountId}:root"}},
            "Action": "kms:*",
            "Resource": "*",
        }
    ],
}


def _template(resources: dict[str, Any], **parameters: str) -> dict[str, Any]:
    return {
        "Parameters": {
            name: {"Type": "String", "Default": default} for name, default in parameters.items()
        },
        "Resources": resources,
    }


def _table(**properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            **properties,
        },
    }


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


def _provision(template: dict[str, Any]) -> Stack:
    return provision(boto3.Session(region_name="us-east-1"), template=template)


def test_false_strings_are_false(aws: None) -> None:
    # A parameter's "false" turns a boolean property off, as in CloudFormation.
    off, on = {"Ref": "Off"}, {"Ref": "On"}
    template = _template(
        {
            "Quiet": {
                "Type": "AWS::KMS::Key",
                "Properties": {"KeyPolicy": KEY_POLICY, "EnableKeyRotation": off},
            },
            "Rotated": {
                "Type": "AWS::KMS::Key",
                "Properties": {"KeyPolicy": KEY_POLICY, "EnableKeyRotation": on},
            },
            "Table": _table(
                DeletionProtectionEnabled=off,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": off},
                TimeToLiveSpecification={"AttributeName": "expires_at", "Enabled": off},
            ),
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "ObjectLockEnabled": off,
                    "BucketEncryption": {
                        "ServerSideEncryptionConfiguration": [
                            {
                                "ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                                "BucketKeyEnabled": off,
                            }
                        ]
                    },
                    "LifecycleConfiguration": {
                        "Rules": [
                            {"Id": "Markers", "Status": "Enabled", "ExpiredObjectDeleteMarker": off}
                        ]
                    },
                },
            },
            "Password": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {
                    "GenerateSecretString": {"PasswordLength": 200, "ExcludeNumbers": off}
                },
            },
        },
        Off="false",
        On="true",
    )
    stack = _provision(template)
    kms = boto3.client("kms")
    assert not kms.get_key_rotation_status(KeyId=stack.ref("Quiet"))["KeyRotationEnabled"]
    assert kms.get_key_rotation_status(KeyId=stack.ref("Rotated"))["KeyRotationEnabled"]
    dynamodb = boto3.client("dynamodb")
    table = stack.ref("Table")
    assert not dynamodb.describe_table(TableName=table)["Table"]["DeletionProtectionEnabled"]
    backups = dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"]
    pitr = backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"]
    assert pitr == "DISABLED"
    ttl = dynamodb.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "DISABLED"
    s3 = boto3.client("s3")
    bucket = stack.ref("Bucket")
    with pytest.raises(ClientError, match="ObjectLockConfigurationNotFound"):
        s3.get_object_lock_configuration(Bucket=bucket)
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["BucketKeyEnabled"] is False
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert not lifecycle.get("Expiration", {}).get("ExpiredObjectDeleteMarker")
    secrets = boto3.client("secretsmanager")
    password = secrets.get_secret_value(SecretId=stack.ref("Password"))["SecretString"]
    assert any(c.isdigit() for c in password)


def test_a_boolean_property_that_is_not_a_boolean_stops_provisioning(aws: None) -> None:
    template = _template(
        {
            "Key": {
                "Type": "AWS::KMS::Key",
                "Properties": {"KeyPolicy": KEY_POLICY, "EnableKeyRotation": "yes"},
            }
        }
    )
    with pytest.raises(UnsupportedTemplate, match=r"Key.*not a boolean: 'yes'"):
        _provision(template)


def _queue(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::SQS::Queue", "Properties": properties}


def _redrive(dead_letter_queue: str) -> dict[str, Any]:
    return {"deadLetterTargetArn": {"Fn::GetAtt": [dead_letter_queue, "Arn"]}, "maxReceiveCount": 3}


def test_resources_are_created_after_those_they_refer_to(aws: None) -> None:
    # Template order is the reverse of what creation needs: a key whose policy names a role,
    # a redrive chain two queues deep, a secret naming the key in a Fn::Sub.
    role_arn = {"Fn::GetAtt": ["KeyUser", "Arn"]}
    policy = {
        **KEY_POLICY,
        "Statement": [
            *KEY_POLICY["Statement"],
            {"Effect": "Allow", "Principal": {"AWS": role_arn}, "Action": "kms:Decrypt"},
        ],
    }
    template = _template(
        {
            "Secret": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"SecretString": {"Fn::Sub": "${Key.Arn} ${!Literal}"}},
            },
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": policy}},
            "KeyUser": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17"}},
            },
            "Work": _queue(RedrivePolicy=_redrive("Retry")),
            "Retry": _queue(RedrivePolicy=_redrive("Dead")),
            "Dead": _queue(),
            "Late": {**_queue(), "DependsOn": "Work"},
        }
    )
    stack = _provision(template)
    kms = boto3.client("kms")
    key_policy = kms.get_key_policy(KeyId=stack.ref("Key"), PolicyName="default")["Policy"]
    assert stack.attribute("KeyUser", "Arn") in key_policy
    secrets = boto3.client("secretsmanager")
    value = secrets.get_secret_value(SecretId=stack.ref("Secret"))["SecretString"]
    assert value == f"{stack.attribute('Key', 'Arn')} ${{Literal}}"
    sqs = boto3.client("sqs")
    for queue, dead_letter_queue in (("Work", "Retry"), ("Retry", "Dead")):
        attributes = sqs.get_queue_attributes(QueueUrl=stack.ref(queue), AttributeNames=["All"])
        redrive = json.loads(attributes["Attributes"]["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == stack.attribute(dead_letter_queue, "Arn")
    assert list(stack.physical_ids) == ["KeyUser", "Key", "Secret", "Dead", "Retry", "Work", "Late"]


def test_depends_on_alone_orders_creation(aws: None) -> None:
    """Each resource is created after those it names in DependsOn, with no Ref between them
    (the single-name and the list form), though they come later in the template."""
    template = _template(
        {
            "Consumer": {**_queue(), "DependsOn": "Producer"},
            "Reader": {**_queue(), "DependsOn": ["Store", "Producer"]},
            "Producer": _queue(),
            "Store": _queue(),
        }
    )
    session = boto3.Session(region_name="us-east-1")
    created = _sent(session, "CreateQueue")
    provision(session, template=template)
    assert [call["QueueName"].removeprefix("strongroom-local-") for call in created] == [
        "Producer",
        "Consumer",
        "Store",
        "Reader",
    ]


def test_get_att_takes_the_logical_id_and_attribute_as_one_string(aws: None) -> None:
    """`Fn::GetAtt: "Queue.Arn"`, as CloudFormation reads it: split at the first dot."""
    template = _template(
        {
            "Holder": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"SecretString": {"Fn::GetAtt": "Queue.Arn"}},
            },
            "Queue": _queue(),
        }
    )
    stack = _provision(template)
    secrets = boto3.client("secretsmanager")
    value = secrets.get_secret_value(SecretId=stack.ref("Holder"))["SecretString"]
    assert value == stack.attribute("Queue", "Arn")
    template["Resources"]["Holder"]["Properties"]["SecretString"] = {"Fn::GetAtt": "Queue"}
    with pytest.raises(InvalidTemplate, match=r"Fn::GetAtt takes \[logical id, attribute\]"):
        provision(boto3.Session(region_name="us-east-1"), template=template, stack_name="other")


def test_resources_that_refer_to_each_other_stop_provisioning(aws: None) -> None:
    template = _template(
        {
            "Ping": _queue(RedrivePolicy=_redrive("Pong")),
            "Pong": _queue(RedrivePolicy=_redrive("Ping")),
        }
    )
    with pytest.raises(UnsupportedTemplate, match="cycle: Ping -> Pong -> Ping"):
        _provision(template)


def test_a_reference_to_what_provisioning_does_not_create_names_the_resource(aws: None) -> None:
    template = _template(
        {
            "Queue": _queue(KmsMasterKeyId={"Fn::GetAtt": ["Elsewhere", "Arn"]}),
            "Elsewhere": {"Type": "AWS::Serverless::Function"},
        }
    )
    with pytest.raises(UnsupportedTemplate, match=r"Queue: GetAtt Elsewhere\.Arn is not known"):
        _provision(template)


@pytest.mark.parametrize(
    ("resource", "refused"),
    [
        (_queue(KmsMasterKeyId={"Ref": "Nowhere"}), "Queue: Ref Nowhere: the template has no"),
        ({**_queue(), "DependsOn": ["Nowhere"]}, "Queue: DependsOn Nowhere: the template has no"),
        ({**_queue(), "DependsOn": {"Ref": "Nowhere"}}, "Queue: DependsOn takes a logical id"),
        # Malformed, they raised IndexError and KeyError while creation was ordered.
        (_queue(KmsMasterKeyId={"Fn::Sub": ["${Nowhere}"]}), "Queue: Fn::Sub takes a list of 2"),
        (_queue(KmsMasterKeyId={"Fn::GetAtt": {"Nowhere": "Arn"}}), "Queue: Fn::GetAtt takes"),
    ],
)
def test_a_reference_to_what_the_template_does_not_have_is_invalid(
    aws: None, resource: dict[str, Any], refused: str
) -> None:
    """CloudFormation refuses such a template; it is not what the stack cannot emulate (and a
    DependsOn naming nothing was ignored)."""
    with pytest.raises(InvalidTemplate) as raised:
        _provision(_template({"Queue": resource}))
    assert str(raised.value).startswith(refused)


def test_a_resource_type_the_stack_does_not_emulate_stops_provisioning(aws: None) -> None:
    template = _template({"Queue": _queue(), "Topic": {"Type": "AWS::SNS::Topic"}})
    with pytest.raises(
        UnsupportedTemplate, match="Topic: the local stack does not emulate AWS::SNS"
    ):
        _provision(template)


def _sent(session: boto3.Session, operation: str) -> list[dict[str, Any]]:
    """The parameters of every `operation` call made through `session`, as they are sent."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(params)

    session.events.register(f"before-parameter-build.*.{operation}", record)
    return calls


def test_queues_get_every_attribute_as_written(aws: None) -> None:
    template = _template(
        {
            "Ordered": _queue(
                FifoQueue={"Ref": "On"},
                ContentBasedDeduplication=True,
                DeduplicationScope="messageGroup",
                FifoThroughputLimit="perMessageGroupId",
                Tags=[{"Key": "team", "Value": "vault"}],
            ),
            "Small": _queue(
                MaximumMessageSize=2048,
                DelaySeconds=5,
                ReceiveMessageWaitTimeSeconds=20,
                SqsManagedSseEnabled="false",
                RedriveAllowPolicy={"redrivePermission": "denyAll"},
            ),
        },
        On="true",
    )
    session = boto3.Session(region_name="us-east-1")
    created = _sent(session, "CreateQueue")
    stack = provision(session, template=template)
    sqs = boto3.client("sqs")
    ordered = stack.ref("Ordered")
    assert ordered.endswith("/strongroom-local-Ordered.fifo")
    attributes = sqs.get_queue_attributes(QueueUrl=ordered, AttributeNames=["All"])["Attributes"]
    assert attributes["FifoQueue"] == "true"
    assert attributes["ContentBasedDeduplication"] == "true"
    assert attributes["DeduplicationScope"] == "messageGroup"
    assert attributes["FifoThroughputLimit"] == "perMessageGroupId"
    assert sqs.list_queue_tags(QueueUrl=ordered)["Tags"] == {"team": "vault"}
    small = stack.ref("Small")
    attributes = sqs.get_queue_attributes(QueueUrl=small, AttributeNames=["All"])["Attributes"]
    assert attributes["MaximumMessageSize"] == "2048"
    assert attributes["DelaySeconds"] == "5"
    assert attributes["ReceiveMessageWaitTimeSeconds"] == "20"
    assert attributes["SqsManagedSseEnabled"] == "false"
    with pytest.raises(ClientError, match="shorter than 2048 bytes"):
        sqs.send_message(QueueUrl=small, MessageBody="x" * 2049)
    # moto neither reports nor enforces RedriveAllowPolicy: it is checked as sent.
    (sent,) = [call for call in created if call["QueueName"] == "strongroom-local-Small"]
    assert json.loads(sent["Attributes"]["RedriveAllowPolicy"]) == {"redrivePermission": "denyAll"}


def test_keys_get_their_state_tags_and_rotation_as_written(aws: None) -> None:
    template = _template(
        {
            "Off": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "KeyPolicy": KEY_POLICY,
                    "Enabled": {"Ref": "KeyEnabled"},
                    "Tags": [{"Key": "purpose", "Value": "archive"}],
                },
            },
            "Rotated": {
                "Type": "AWS::KMS::Key",
                "Properties": {
                    "EnableKeyRotation": True,
                    "RotationPeriodInDays": 90,
                    "MultiRegion": True,
                },
            },
        },
        KeyEnabled="false",
    )
    session = boto3.Session(region_name="us-east-1")
    rotations = _sent(session, "EnableKeyRotation")
    stack = provision(session, template=template)
    kms = boto3.client("kms")
    off = kms.describe_key(KeyId=stack.ref("Off"))["KeyMetadata"]
    assert (off["Enabled"], off["KeyState"]) == (False, "Disabled")
    tags = kms.list_resource_tags(KeyId=stack.ref("Off"))["Tags"]
    assert tags == [{"TagKey": "purpose", "TagValue": "archive"}]
    rotated = kms.describe_key(KeyId=stack.ref("Rotated"))["KeyMetadata"]
    assert (rotated["Enabled"], rotated["MultiRegion"]) == (True, True)
    # The default key policy, as KMS gives a key created without one.
    assert kms.get_key_policy(KeyId=stack.ref("Rotated"), PolicyName="default")["Policy"]
    # moto does not keep the rotation period: it is checked as sent.
    assert [call.get("RotationPeriodInDays") for call in rotations] == [90]


def test_buckets_get_their_logging_cors_and_tags(aws: None) -> None:
    own_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:DeleteBucket",
                "Resource": {"Fn::GetAtt": ["Logs", "Arn"]},
            }
        ],
    }
    template = _template(
        {
            "Data": {
                "Type": "AWS::S3::Bucket",
                # Its destination has its own policy by then, which logging leaves as it was.
                "DependsOn": "LogsPolicy",
                "Properties": {
                    "LoggingConfiguration": {
                        "DestinationBucketName": {"Ref": "Logs"},
                        "LogFilePrefix": "data/",
                    },
                    "CorsConfiguration": {
                        "CorsRules": [
                            {
                                "Id": "Browser",
                                "AllowedMethods": ["GET", "PUT"],
                                "AllowedOrigins": ["https://app.example"],
                                "AllowedHeaders": ["*"],
                                "ExposedHeaders": ["ETag"],
                                "MaxAge": 600,
                            }
                        ]
                    },
                    "Tags": [{"Key": "data", "Value": "customer"}],
                },
            },
            "Logs": {"Type": "AWS::S3::Bucket"},
            "LogsPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {"Bucket": {"Ref": "Logs"}, "PolicyDocument": own_policy},
            },
            "SelfLogged": {
                "Type": "AWS::S3::Bucket",
                "Properties": {"LoggingConfiguration": {}},
            },
        }
    )
    stack = _provision(template)
    s3 = boto3.client("s3")
    data, logs = stack.ref("Data"), stack.ref("Logs")
    logging = s3.get_bucket_logging(Bucket=data)["LoggingEnabled"]
    assert logging == {"TargetBucket": logs, "TargetPrefix": "data/"}
    self_logged = stack.ref("SelfLogged")
    logging = s3.get_bucket_logging(Bucket=self_logged)["LoggingEnabled"]
    assert logging == {"TargetBucket": self_logged, "TargetPrefix": ""}
    # Each destination keeps its own policy, and only it.
    policy = json.loads(s3.get_bucket_policy(Bucket=logs)["Policy"])
    assert policy["Statement"] == [
        {**own_policy["Statement"][0], "Resource": f"arn:aws:s3:::{logs}"}
    ]
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=self_logged)
    (cors,) = s3.get_bucket_cors(Bucket=data)["CORSRules"]
    assert cors == {
        "ID": "Browser",
        "AllowedMethods": ["GET", "PUT"],
        "AllowedOrigins": ["https://app.example"],
        "AllowedHeaders": ["*"],
        "ExposeHeaders": ["ETag"],
        "MaxAgeSeconds": 600,
    }
    assert s3.get_bucket_tagging(Bucket=data)["TagSet"] == [{"Key": "data", "Value": "customer"}]


def test_lifecycle_rules_keep_their_filters_and_transitions(aws: None) -> None:
    rules = [
        {
            "Id": "Archive",
            "Status": "Enabled",
            "Prefix": "reports/",
            "TagFilters": [{"Key": "class", "Value": "cold"}],
            "Transitions": [{"StorageClass": "GLACIER", "TransitionInDays": 30}],
            "ExpirationInDays": 365,
        },
        {"Id": "Tagged", "Status": "Enabled", "TagFilters": [{"Key": "tmp", "Value": "yes"}]},
        {
            "Id": "Versions",
            "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 60, "NewerNoncurrentVersions": 3},
            "NoncurrentVersionTransitions": [
                {
                    "StorageClass": "STANDARD_IA",
                    "TransitionInDays": 30,
                    "NewerNoncurrentVersions": 2,
                }
            ],
        },
    ]
    template = _template(
        {
            "Bucket": {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "VersioningConfiguration": {"Status": "Enabled"},
                    "LifecycleConfiguration": {"Rules": rules},
                },
            }
        }
    )
    session = boto3.Session(region_name="us-east-1")
    sent = _sent(session, "PutBucketLifecycleConfiguration")
    stack = provision(session, template=template)
    s3 = boto3.client("s3")
    applied = {
        rule["ID"]: rule
        for rule in s3.get_bucket_lifecycle_configuration(Bucket=stack.ref("Bucket"))["Rules"]
    }
    archive = applied["Archive"]
    assert archive["Filter"] == {
        "And": {"Prefix": "reports/", "Tags": [{"Key": "class", "Value": "cold"}]}
    }
    assert archive["Transitions"] == [{"Days": 30, "StorageClass": "GLACIER"}]
    assert archive["Expiration"] == {"Days": 365}
    assert applied["Tagged"]["Filter"] == {"Tag": {"Key": "tmp", "Value": "yes"}}
    versions = applied["Versions"]
    assert versions["NoncurrentVersionTransitions"] == [
        {"NoncurrentDays": 30, "StorageClass": "STANDARD_IA", "NewerNoncurrentVersions": 2}
    ]
    # moto keeps only the days of a noncurrent expiration: the rest is checked as sent.
    (call,) = sent
    (as_sent,) = [r for r in call["LifecycleConfiguration"]["Rules"] if r["ID"] == "Versions"]
    assert as_sent["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 60,
        "NewerNoncurrentVersions": 3,
    }


def _bucket(**properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::S3::Bucket", "Properties": properties}


def _lifecycle(rule: dict[str, Any]) -> dict[str, Any]:
    return {"Rules": [{"Id": "Old", "Status": "Enabled", **rule}]}


@pytest.mark.parametrize("value", [True, "5s", 2.5])
def test_a_queue_number_that_is_no_integer_is_refused(aws: None, value: Any) -> None:
    """`DelaySeconds: true` was sent as "True" and raised moto's ValueError."""
    with pytest.raises(InvalidTemplate, match="Queue: DelaySeconds: not an integer"):
        _provision(_template({"Queue": _queue(DelaySeconds=value)}))


def test_a_queue_number_from_a_number_parameter_is_applied(aws: None) -> None:
    template = {
        "Parameters": {"Delay": {"Type": "Number", "Default": 7}},
        "Resources": {"Queue": _queue(DelaySeconds={"Ref": "Delay"})},
    }
    stack = _provision(template)
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.ref("Queue"), AttributeNames=["DelaySeconds"]
    )["Attributes"]
    assert attributes["DelaySeconds"] == "7"


@pytest.mark.parametrize(
    ("bucket", "refused"),
    [
        (
            _bucket(
                ObjectLockEnabled=True,
                ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": {}},
            ),
            "Bucket: ObjectLockConfiguration.Rule: DefaultRetention is required",
        ),
        (
            _bucket(
                ObjectLockEnabled=True,
                ObjectLockConfiguration={
                    "ObjectLockEnabled": "Enabled",
                    "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 1, "Years": 1}},
                },
            ),
            "Bucket: ObjectLockConfiguration.Rule.DefaultRetention: Days or Years is required",
        ),
        (
            _bucket(
                LifecycleConfiguration=_lifecycle(
                    {"NoncurrentVersionTransitions": [{"StorageClass": "GLACIER"}]}
                )
            ),
            "Bucket: lifecycle rule Old: noncurrent version transition: TransitionInDays is"
            " required",
        ),
        (
            _bucket(LifecycleConfiguration=_lifecycle({"Transition": {"TransitionInDays": 30}})),
            "Bucket: lifecycle rule Old: transition: StorageClass is required",
        ),
        (
            _bucket(PublicAccessBlockConfiguration={"BlockPublicAcl": True}),
            "Bucket: PublicAccessBlockConfiguration has no BlockPublicAcl",
        ),
        (
            # S3 answers MalformedXML: a delete-marker expiry takes no days or date.
            _bucket(
                LifecycleConfiguration=_lifecycle(
                    {"ExpirationInDays": 30, "ExpiredObjectDeleteMarker": True}
                )
            ),
            "Bucket: lifecycle rule Old: ExpiredObjectDeleteMarker cannot be set with",
        ),
        (
            _bucket(LifecycleConfiguration=_lifecycle({"ExpirationInDays": "thirty"})),
            "Bucket: lifecycle rule Old: ExpirationInDays: not an integer: 'thirty'",
        ),
    ],
)
def test_bucket_settings_s3_would_refuse_are_refused_clearly(
    aws: None, bucket: dict[str, Any], refused: str
) -> None:
    """They raised KeyError, or botocore's ParamValidationError."""
    with pytest.raises(InvalidTemplate) as raised:
        _provision(_template({"Bucket": bucket}))
    assert str(raised.value).startswith(refused)


def test_buckets_get_their_public_access_block(aws: None) -> None:
    block = {"BlockPublicAcls": True, "BlockPublicPolicy": "true", "IgnorePublicAcls": False}
    stack = _provision(_template({"Bucket": _bucket(PublicAccessBlockConfiguration=block)}))
    applied = boto3.client("s3").get_public_access_block(Bucket=stack.ref("Bucket"))
    assert applied["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": False,
        "RestrictPublicBuckets": False,
    }


def test_tables_get_their_stream_throughput_recovery_period_and_tags(aws: None) -> None:
    template = _template(
        {
            "Table": _table(
                BillingMode="PROVISIONED",
                ProvisionedThroughput={"ReadCapacityUnits": "5", "WriteCapacityUnits": 2},
                StreamSpecification={"StreamViewType": "NEW_AND_OLD_IMAGES"},
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": True,
                    "RecoveryPeriodInDays": 7,
                },
                Tags=[{"Key": "tier", "Value": "metadata"}],
            ),
            "StreamArnHolder": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"SecretString": {"Fn::GetAtt": ["Table", "StreamArn"]}},
            },
        }
    )
    stack = _provision(template)
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=stack.ref("Table"))["Table"]
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    throughput = table["ProvisionedThroughput"]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (5, 2)
    assert stack.attribute("Table", "StreamArn") == table["LatestStreamArn"]
    secrets = boto3.client("secretsmanager")
    value = secrets.get_secret_value(SecretId=stack.ref("StreamArnHolder"))["SecretString"]
    assert value == table["LatestStreamArn"]
    backups = dynamodb.describe_continuous_backups(TableName=stack.ref("Table"))
    pitr = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert (pitr["PointInTimeRecoveryStatus"], pitr["RecoveryPeriodInDays"]) == ("ENABLED", 7)
    tags = dynamodb.list_tags_of_resource(ResourceArn=table["TableArn"])["Tags"]
    assert tags == [{"Key": "tier", "Value": "metadata"}]


def test_index_throughput_from_a_number_parameter_is_sent_as_a_number(aws: None) -> None:
    """A Number parameter's value is a string; DynamoDB takes capacity units as numbers."""
    capacity = {"ReadCapacityUnits": {"Ref": "Capacity"}, "WriteCapacityUnits": {"Ref": "Capacity"}}
    template = {
        "Parameters": {"Capacity": {"Type": "Number", "Default": 5}},
        "Resources": {
            "Table": _table(
                BillingMode="PROVISIONED",
                ProvisionedThroughput=capacity,
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by-pk",
                        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                        "ProvisionedThroughput": capacity,
                    }
                ],
            )
        },
    }
    stack = _provision(template)
    table = boto3.client("dynamodb").describe_table(TableName=stack.ref("Table"))["Table"]
    (index,) = table["GlobalSecondaryIndexes"]
    throughput = index["ProvisionedThroughput"]
    assert (throughput["ReadCapacityUnits"], throughput["WriteCapacityUnits"]) == (5, 5)


def test_a_table_with_neither_billing_mode_nor_throughput_is_refused(aws: None) -> None:
    """CloudFormation's default BillingMode is PROVISIONED, which needs a throughput; such a
    table was created on-demand."""
    table = _table()
    del table["Properties"]["BillingMode"]
    with pytest.raises(InvalidTemplate, match=r"Table: BillingMode PROVISIONED .* needs Prov"):
        _provision(_template({"Table": table}))


def test_secrets_and_roles_get_their_tags_path_and_boundary(aws: None) -> None:
    boundary = "arn:aws:iam::123456789012:policy/boundary"
    template = _template(
        {
            "Secret": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"SecretString": "{}", "Tags": [{"Key": "app", "Value": "vault"}]},
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []},
                    "Path": "/service/",
                    "PermissionsBoundary": boundary,
                    "Tags": [{"Key": "app", "Value": "vault"}],
                },
            },
        }
    )
    stack = _provision(template)
    secrets = boto3.client("secretsmanager")
    tags = secrets.describe_secret(SecretId=stack.ref("Secret"))["Tags"]
    assert tags == [{"Key": "app", "Value": "vault"}]
    role = boto3.client("iam").get_role(RoleName=stack.ref("Role"))["Role"]
    assert role["Arn"] == f"arn:aws:iam::123456789012:role/service/{stack.ref('Role')}"
    assert stack.attribute("Role", "Arn") == role["Arn"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary
    assert role["Tags"] == [{"Key": "app", "Value": "vault"}]


def test_generated_passwords_hold_each_kind_of_character_unless_told_otherwise(
    aws: None,
) -> None:
    # Three characters of three kinds: left to chance, all three would come out 1 time in 6.
    spec = {"PasswordLength": 3, "ExcludePunctuation": True}
    template = _template(
        {
            f"Password{n}": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {"GenerateSecretString": spec},
            }
            for n in range(10)
        }
    )
    stack = _provision(template)
    secrets = boto3.client("secretsmanager")
    for n in range(10):
        password = secrets.get_secret_value(SecretId=stack.ref(f"Password{n}"))["SecretString"]
        assert len(password) == 3
        assert any(c.isupper() for c in password)
        assert any(c.islower() for c in password)
        assert any(c.isdigit() for c in password)


@pytest.mark.parametrize(
    ("resource", "unsupported"),
    [
        (
            {"Type": "AWS::S3::Bucket", "Properties": {"WebsiteConfiguration": {}}},
            "Thing: the local stack does not emulate WebsiteConfiguration",
        ),
        (
            {"Type": "AWS::KMS::Key", "Properties": {"Origin": "EXTERNAL"}},
            "Thing: the local stack does not emulate Origin",
        ),
        (
            _table(KinesisStreamSpecification={"StreamArn": "arn:aws:kinesis:::stream/s"}),
            "Thing: the local stack does not emulate KinesisStreamSpecification",
        ),
        (
            _table(StreamSpecification={"StreamViewType": "KEYS_ONLY", "ResourcePolicy": {}}),
            "Thing: StreamSpecification: the local stack does not emulate ResourcePolicy",
        ),
        (
            {
                "Type": "AWS::S3::Bucket",
                "Properties": {
                    "LifecycleConfiguration": {
                        "Rules": [{"Id": "Odd", "Status": "Enabled", "Unheard": 1}]
                    }
                },
            },
            "Thing: lifecycle rule Odd: the local stack does not emulate Unheard",
        ),
        (
            _queue(VisibilityTimeout=30, Unheard=1),
            "Thing: the local stack does not emulate Unheard",
        ),
    ],
)
def test_a_property_the_stack_does_not_emulate_stops_provisioning(
    aws: None, resource: dict[str, Any], unsupported: str
) -> None:
    with pytest.raises(UnsupportedTemplate) as stopped:
        _provision(_template({"Thing": resource}))
    assert str(stopped.value) == unsupported


def test_properties_that_change_nothing_locally_are_left_out_and_said_so(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    template = _template(
        {
            "Table": _table(
                ContributorInsightsSpecification={"Enabled": True},
                TableClass="STANDARD_INFREQUENT_ACCESS",
            )
        }
    )
    with caplog.at_level(logging.INFO, logger="strongroom_local.provision"):
        stack = _provision(template)
    assert boto3.client("dynamodb").describe_table(TableName=stack.ref("Table"))["Table"]
    said = [r.getMessage() for r in caplog.records if r.name == "strongroom_local.provision"]
    assert said == [
        "Table: ContributorInsightsSpecification left out locally: CloudWatch metrics only",
        "Table: TableClass left out locally: a storage price class; reads and writes behave alike",
    ]


def test_conditional_bucket_policy_statements_are_left_out_and_said_so(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    bucket_arn = {"Fn::GetAtt": ["Bucket", "Arn"]}
    statements = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": bucket_arn,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": bucket_arn},
    ]
    template = _template(
        {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bucket"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
                },
            },
            "Bare": {"Type": "AWS::S3::Bucket"},
            "BarePolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bare"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statements[:1]},
                },
            },
        }
    )
    with caplog.at_level(logging.WARNING, logger="strongroom_local.provision"):
        stack = _provision(template)
    s3 = boto3.client("s3")
    (applied,) = json.loads(s3.get_bucket_policy(Bucket=stack.ref("Bucket"))["Policy"])["Statement"]
    assert applied["Action"] == "s3:DeleteBucket"
    with pytest.raises(ClientError, match="NoSuchBucketPolicy"):
        s3.get_bucket_policy(Bucket=stack.ref("Bare"))
    wrongly = (
        "(moto would evaluate them wrongly: it reads no Condition, NotPrincipal or NotResource,"
        ' and no Principal other than "*")'
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"BucketPolicy: statements DenyInsecureTransport not applied locally {wrongly}",
        f"BarePolicy: statements DenyInsecureTransport not applied locally {wrongly}"
        ": strongroom-local-bare has no bucket policy",
    ]
    assert [s["Sid"] for s in stack.unenforced_statements] == ["DenyInsecureTransport"] * 2


def _bucket_with_policy(statement: Any) -> dict[str, Any]:
    return _template(
        {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bucket"},
                    "PolicyDocument": {"Version": "2012-10-17", "Statement": statement},
                },
            },
        }
    )


def test_a_single_statement_policy_is_read_as_a_list_of_one(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    """IAM's grammar takes one statement without a list; iterated as a map, its keys became
    the statements (the Deny vanished) or the warning crashed."""
    deny = {
        "Sid": "DenyBucketDeletion",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteBucket",
        "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]},
    }
    stack = _provision(_bucket_with_policy(deny))
    s3 = boto3.client("s3")
    (applied,) = json.loads(s3.get_bucket_policy(Bucket=stack.ref("Bucket"))["Policy"])["Statement"]
    assert applied == {**deny, "Resource": stack.attribute("Bucket", "Arn")}
    conditional = {
        **deny,
        "Sid": "DenyInsecure",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    with caplog.at_level(logging.WARNING, logger="strongroom_local.provision"):
        stack = provision(
            boto3.Session(region_name="us-east-1"),
            template=_bucket_with_policy(conditional),
            stack_name="conditional",
        )
    assert [s["Sid"] for s in stack.unenforced_statements] == ["DenyInsecure"]
    assert "DenyInsecure not applied locally" in caplog.records[0].getMessage()


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("Deny everything", "Statement must be"),
        (None, "Statement must be"),
        (["Deny"], "Statement must be"),
        # Nothing was put, and nothing said.
        ([], "Statement is an empty list"),
    ],
)
def test_a_statement_that_is_no_statement_is_refused(
    aws: None, statement: Any, refused: str
) -> None:
    with pytest.raises(InvalidTemplate, match=f"BucketPolicy: PolicyDocument: {refused}"):
        _provision(_bucket_with_policy(statement))


def test_statements_moto_would_evaluate_wrongly_are_left_out_and_said_so(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    objects = {"Fn::Sub": "${Bucket.Arn}/*"}
    auditor = "arn:aws:iam::123456789012:role/auditor"
    statements = [
        # moto would deny every caller: it applies a Principal map to all.
        {
            "Sid": "DenyAuditorWrites",
            "Effect": "Deny",
            "Principal": {"AWS": auditor},
            "Action": "s3:PutObject",
            "Resource": objects,
        },
        # moto would deny the excepted principal too: it does not read NotPrincipal.
        {
            "Sid": "DenyAllButAuditor",
            "Effect": "Deny",
            "NotPrincipal": {"AWS": auditor},
            "Action": "s3:GetObject",
            "Resource": objects,
        },
        # moto would permit what this denies: it does not read NotResource.
        {
            "Sid": "DenyOutsideUploads",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "NotResource": {"Fn::Sub": "${Bucket.Arn}/uploads/*"},
        },
        {
            "Sid": "AllowFromTheAccount",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": objects,
            "Condition": {"StringEquals": {"aws:PrincipalAccount": "123456789012"}},
        },
        {
            "Sid": "DenyLockedWrites",
            "Effect": "Deny",
            "Principal": {"AWS": "*"},
            "Action": "s3:PutObject",
            "Resource": {"Fn::Sub": "${Bucket.Arn}/locked/*"},
        },
    ]
    with caplog.at_level(logging.WARNING, logger="strongroom_local.provision"):
        stack = _provision(_bucket_with_policy(statements))
    left_out = "DenyAuditorWrites, DenyAllButAuditor, DenyOutsideUploads, AllowFromTheAccount"
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith(f"BucketPolicy: statements {left_out} not applied locally (moto would")
    assert [s["Sid"] for s in stack.unenforced_statements] == left_out.split(", ")
    s3, bucket = boto3.client("s3"), stack.ref("Bucket")
    (applied,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert applied["Sid"] == "DenyLockedWrites"
    # Another caller than the auditor writes (the scoped Deny denied everyone); what is kept
    # is enforced.
    s3.put_object(Bucket=bucket, Key="data/object", Body=b"x")
    with pytest.raises(ClientError, match="Forbidden"):
        s3.put_object(Bucket=bucket, Key="locked/object", Body=b"x")


def test_policies_given_as_json_text_are_applied_as_their_documents(aws: None) -> None:
    """CloudFormation takes a policy as an object or as its JSON text; the text was sent
    encoded again (a JSON string literal as the policy) or raised a raw ValueError."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
    reads = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    everyone = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket"}
    bucket_policy = {
        "Version": "2012-10-17",
        "Statement": [{**everyone, "Resource": "arn:aws:s3:::strongroom-local-bucket"}],
    }
    key_policy = {"Version": "2012-10-17", "Statement": [{**KEY_POLICY["Statement"][0]}]}
    key_policy["Statement"][0]["Principal"] = {"AWS": "arn:aws:iam::123456789012:root"}
    queue_policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sqs:DeleteQueue"}],
    }
    template = _template(
        {
            "Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": json.dumps(key_policy)}},
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "BucketPolicy": {
                "Type": "AWS::S3::BucketPolicy",
                "Properties": {
                    "Bucket": {"Ref": "Bucket"},
                    "PolicyDocument": json.dumps(bucket_policy),
                },
            },
            "Queue": _queue(),
            "QueuePolicy": {
                "Type": "AWS::SQS::QueuePolicy",
                "Properties": {
                    "Queues": [{"Ref": "Queue"}],
                    "PolicyDocument": json.dumps(queue_policy),
                },
            },
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "AssumeRolePolicyDocument": json.dumps(trust),
                    "Policies": [{"PolicyName": "reads", "PolicyDocument": json.dumps(reads)}],
                },
            },
        }
    )
    stack = _provision(template)
    kms = boto3.client("kms")
    stored = kms.get_key_policy(KeyId=stack.ref("Key"), PolicyName="default")["Policy"]
    assert json.loads(stored) == key_policy
    stored = boto3.client("s3").get_bucket_policy(Bucket=stack.ref("Bucket"))["Policy"]
    assert json.loads(stored) == bucket_policy
    sqs = boto3.client("sqs")
    stored = sqs.get_queue_attributes(QueueUrl=stack.ref("Queue"), AttributeNames=["Policy"])
    assert json.loads(stored["Attributes"]["Policy"]) == queue_policy
    iam = boto3.client("iam")
    assert iam.get_role(RoleName=stack.ref("Role"))["Role"]["AssumeRolePolicyDocument"] == trust
    stored = iam.get_role_policy(RoleName=stack.ref("Role"), PolicyName="reads")
    assert stored["PolicyDocument"] == reads


@pytest.mark.parametrize("text", ['["not", "a", "document"]', "{not json"])
def test_a_policy_text_that_is_no_json_object_is_refused(aws: None, text: str) -> None:
    template = _template({"Key": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": text}}})
    with pytest.raises(InvalidTemplate, match="Key: KeyPolicy: "):
        _provision(template)


def test_a_bucket_policy_statement_without_a_principal_is_refused(aws: None) -> None:
    statement = {"Sid": "Nobody", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    with pytest.raises(InvalidTemplate, match="BucketPolicy: statement Nobody has no Principal"):
        _provision(_bucket_with_policy([statement]))


def test_template_yaml_provisions_and_says_which_statements_it_left_out(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="strongroom_local.provision"):
        stack = provision(boto3.Session(region_name="us-east-1"))
    said = {r.getMessage().split(":")[0]: r.getMessage() for r in caplog.records}
    assert sorted(said) == ["AccessLogBucketPolicy", "AuditBucketPolicy", "BackupBucketPolicy"]
    assert (
        "DenyInsecureTransport, S3LogDeliveryFromThisStacksBuckets" in said["AccessLogBucketPolicy"]
    )
    for bucket in ("AccessLogBucket", "BackupBucket", "AuditBucket"):
        assert said[f"{bucket}Policy"].endswith(f": {stack.ref(bucket)} has no bucket policy")


def test_a_resource_whose_condition_is_false_is_not_created(aws: None) -> None:
    template = _template(
        {
            "Always": _queue(),
            "ProdOnly": {**_queue(), "Condition": "IsProd"},
            "Uses": {
                "Type": "AWS::SecretsManager::Secret",
                "Properties": {
                    "SecretString": {"Fn::If": ["IsProd", {"Ref": "ProdOnly"}, {"Ref": "Always"}]}
                },
            },
        },
        Stage="dev",
    )
    template["Conditions"] = {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}}
    stack = _provision(template)
    assert sorted(stack.physical_ids) == ["Always", "Uses"]
    urls = boto3.client("sqs").list_queues()["QueueUrls"]
    assert urls == [stack.ref("Always")]


def test_a_resource_attribute_the_stack_does_not_emulate_stops_provisioning(aws: None) -> None:
    template = _template({"Queue": {**_queue(), "UpdatePolicy": {}}})
    with pytest.raises(UnsupportedTemplate, match="Queue: the local stack does not emulate Update"):
        _provision(template)
