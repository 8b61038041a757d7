"""Keys, tables, buckets and queues provisioned from a template: every property as written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from strongroom_local.exceptions import UnsupportedTemplate
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
