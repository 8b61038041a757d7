"""The recorder that holds each function's AWS calls to its role (tests/support/iam_check.py)."""

from __future__ import annotations

import copy
import json
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from strongroom.settings import Settings
from strongroom_local.provision import Stack
from tests.support.functions import load_app
from tests.support.http import http_event
from tests.support.iam_check import IamCheck
from tests.unit.credential_store.conftest import LambdaContext

ORG = "org_" + "a" * 26


def _key(pk: str, sk: str = "ORG") -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _problems(check: IamCheck) -> list[str]:
    return [str(problem) for problem in check.problems]


def _template_without(stack: Stack, function: str, sid: str) -> Stack:
    template = copy.deepcopy(stack.template)
    policies = template["Resources"][function]["Properties"]["Policies"]
    for document in policies:
        document["Statement"] = [s for s in document["Statement"] if s.get("Sid") != sid]
    return replace(stack, template=template)


def _template_with(stack: Stack, function: str, statement: dict[str, Any]) -> Stack:
    template = copy.deepcopy(stack.template)
    template["Resources"][function]["Properties"]["Policies"][0]["Statement"].append(statement)
    return replace(stack, template=template)


def _org_key(stack: Stack, org_id: str = ORG, stage: str = "dev") -> str:
    kms = boto3.client("kms", region_name="us-east-1")
    key = kms.create_key(
        Tags=[
            {"TagKey": "strongroom:org_id", "TagValue": org_id},
            {"TagKey": "strongroom:stage", "TagValue": stage},
        ]
    )["KeyMetadata"]
    alias = f"alias/strongroom-dev/org/{org_id}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return alias


# ---- attribution --------------------------------------------------------------------------


def test_only_calls_made_while_a_function_runs_are_checked(stack: Stack) -> None:
    check = IamCheck(stack)
    dynamodb = check.session().client("dynamodb")
    table = stack.ref("Table")
    dynamodb.put_item(TableName=table, Item=_key("WEBHOOK_EVENT#1"))  # test setup
    assert (check.checked, check.problems) == (0, [])
    with check.acting_as("CredentialStoreFunction"):
        dynamodb.put_item(TableName=table, Item=_key("WEBHOOK_EVENT#2"))
        with check.outside():
            dynamodb.put_item(TableName=table, Item=_key("WEBHOOK_EVENT#3"))
    assert check.checked == 1
    assert _problems(check) == [
        "CredentialStoreFunction: dynamodb:PutItem: dynamodb:PutItem on "
        f"{stack.attribute('Table', 'Arn')} [dynamodb:leadingkeys=[WEBHOOK_EVENT#2]]: "
        "no statement allows it"
    ]


def test_a_call_from_a_thread_of_a_running_handler_is_that_functions(stack: Stack) -> None:
    check = IamCheck(stack)
    dynamodb = check.session().client("dynamodb")

    def lane() -> None:
        dynamodb.put_item(TableName=stack.ref("Table"), Item=_key("BACKUP_SCHEDULE#1"))

    with check.acting_as("WebhookVerifierFunction"):
        thread = threading.Thread(target=lane)
        thread.start()
        thread.join()
    assert [p.function for p in check.problems] == ["WebhookVerifierFunction"]
    assert "BACKUP_SCHEDULE#1" in check.problems[0].what


def test_a_guarded_handler_is_checked_and_the_report_fails_the_test(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /orgs through credential_store's handler, on a template that lost the grant of
    its org allowance counter: the check names the call; with the grant, nothing."""
    for name, value in stack.function_environment("CredentialStoreFunction").items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_environ(os.environ)

    def post_org(check: IamCheck) -> int:
        app = check.guard(load_app("credential_store", "credential_store_iam"), "credential_store")
        from credential_store import services as services_module

        built = services_module.build_services(settings, check.session())
        monkeypatch.setattr(app, "services", lambda: built)
        event = http_event("POST", "/orgs", sub="alice", body={"name": "Acme"})
        return int(app.lambda_handler(event, LambdaContext())["statusCode"])

    complete = IamCheck(stack)
    assert post_org(complete) == 201
    assert complete.checked > 5
    complete.assert_allowed()

    drifted = IamCheck(_template_without(stack, "CredentialStoreFunction", "OrgAllowances"))
    assert post_org(drifted) == 201  # moto does not enforce IAM: only the check sees it
    assert [(p.operation, p.why) for p in drifted.problems] == [
        ("dynamodb:UpdateItem", "no statement allows it")
    ]
    assert "ORGS_CREATED#alice" in drifted.problems[0].what
    with pytest.raises(pytest.fail.Exception, match=r"dynamodb:UpdateItem on .*ORGS_CREATED#"):
        drifted.assert_allowed()


# ---- DynamoDB -------------------------------------------------------------------------------


def test_transactions_are_judged_item_by_item(stack: Stack) -> None:
    # Without its Transactions statement the role still allows a transaction of tenant items
    # (IAM authorizes TransactWriteItems per item), and never one with a platform item.
    check = IamCheck(_template_without(stack, "CredentialStoreFunction", "Transactions"))
    dynamodb = check.session().client("dynamodb")
    table = stack.ref("Table")
    with check.acting_as("CredentialStoreFunction"):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": _key(ORG, "A")}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": _key(ORG, "B"),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )
        assert check.problems == []
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": _key(ORG, "C")}},
                {"Delete": {"TableName": table, "Key": _key("WEBHOOK_EVENT#1")}},
            ]
        )
        dynamodb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": _key(ORG)}}])
    assert [p.operation for p in check.problems] == ["dynamodb:TransactWriteItems"]
    assert check.problems[0].what.startswith("dynamodb:DeleteItem on ")
    assert "dynamodb:enclosingoperation=TransactWriteItems" in check.problems[0].what


def test_a_query_is_judged_on_its_partition_key_and_index(stack: Stack) -> None:
    check = IamCheck(stack)
    dynamodb = check.session().client("dynamodb")
    table = stack.ref("Table")

    def query(partition: str, index: str | None = None) -> None:
        key = "gsi1pk" if index else "pk"
        dynamodb.query(
            TableName=table,
            KeyConditionExpression="#k = :v",
            ExpressionAttributeNames={"#k": key},
            ExpressionAttributeValues={":v": {"S": partition}},
            **({"IndexName": index} if index else {}),
        )

    with check.acting_as("BackupDispatcherFunction"):
        query(ORG)
        query("BACKUP_DUE#3", "gsi1")
        query(f"{ORG}#CONN", "gsi1")  # tenant items are on the table only for this role
        query("BACKUP_DUE#3")
    arn = stack.attribute("Table", "Arn")
    assert [p.what for p in check.problems] == [
        f"dynamodb:Query on {arn}/index/gsi1 [dynamodb:leadingkeys=[{ORG}#CONN]]",
        f"dynamodb:Query on {arn} [dynamodb:leadingkeys=[BACKUP_DUE#3]]",
    ]


# ---- S3, and the KMS use it makes for its caller ------------------------------------------


def test_s3_objects_outside_the_roles_prefix_are_reported(stack: Stack) -> None:
    check = IamCheck(stack)
    s3 = check.session().client("s3")
    audit = stack.ref("AuditBucket")
    with check.acting_as("WebhookVerifierFunction"):
        s3.put_object(Bucket=audit, Key="audit/org_a/1.json", Body=b"{}")
        s3.get_object(Bucket=audit, Key="audit/org_a/1.json")
        assert check.problems == []
        s3.put_object(Bucket=audit, Key="elsewhere/1.json", Body=b"{}")
        s3.list_objects_v2(Bucket=audit, Prefix="audit/")
    assert [p.what.split(" [")[0] for p in check.problems] == [
        f"s3:PutObject on arn:aws:s3:::{audit}/elsewhere/1.json",
        f"s3:ListBucket on arn:aws:s3:::{audit}",
    ]


def test_object_lock_versions_and_prefixes_are_part_of_the_request(stack: Stack) -> None:
    audit = stack.ref("AuditBucket")
    # AppendAudit without s3:PutObjectRetention: a put that sets retention needs it too.
    template = copy.deepcopy(stack.template)
    for statement in template["Resources"]["CredentialStoreFunction"]["Properties"]["Policies"][0][
        "Statement"
    ]:
        if statement.get("Sid") == "AppendAudit":
            statement["Action"] = ["s3:PutObject", "s3:GetObject"]
    check = IamCheck(replace(stack, template=template))
    s3 = check.session().client("s3")
    with check.acting_as("CredentialStoreFunction"):
        s3.put_object(Bucket=audit, Key="audit/org_a/1.json", Body=b"{}")
        s3.list_objects_v2(Bucket=audit, Prefix="audit/org_a/")
        assert check.problems == []
        version = s3.put_object(
            Bucket=audit,
            Key="audit/org_a/2.json",
            Body=b"{}",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=datetime(2099, 1, 1, tzinfo=UTC),
        )["VersionId"]
        s3.get_object(Bucket=audit, Key="audit/org_a/2.json", VersionId=version)
        s3.list_objects_v2(Bucket=audit, Prefix="orgs/")
        s3.list_objects_v2(Bucket=audit)
    assert [p.what.split(" on ")[0] for p in check.problems] == [
        "s3:PutObjectRetention",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:ListBucket",
    ]
    assert "s3:prefix=orgs/" in check.problems[2].what


def test_sse_kms_writes_and_reads_need_the_key_through_s3(stack: Stack) -> None:
    check = IamCheck(stack)
    s3 = check.session().client("s3")
    bucket = stack.ref("BackupBucket")
    tagged, untagged = _org_key(stack), _org_key(stack, "org_" + "b" * 26, stage="prod")
    with check.acting_as("BackupWorkerFunction"):
        s3.put_object(
            Bucket=bucket,
            Key=f"orgs/{ORG}/f.json",
            Body=b"[]",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=tagged,
        )
        s3.get_object(Bucket=bucket, Key=f"orgs/{ORG}/f.json")
        assert check.problems == []
        s3.put_object(
            Bucket=bucket,
            Key=f"orgs/{ORG}/g.json",
            Body=b"[]",
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=untagged,
        )
    assert [p.what.split(" on ")[0] for p in check.problems] == ["kms:GenerateDataKey"]
    assert "kms:viaservice=s3.us-east-1.amazonaws.com" in check.problems[0].what

    # The dead-letter function may abort uploads but read nothing, nor decrypt.
    dead_letters = IamCheck(stack)
    s3 = dead_letters.session().client("s3")
    with dead_letters.acting_as("BackupDeadLetterFunction"):
        s3.get_object(Bucket=bucket, Key=f"orgs/{ORG}/f.json")
    assert [p.what.split(" on ")[0] for p in dead_letters.problems] == [
        "s3:GetObject",
        "kms:Decrypt",
    ]


def test_presigning_is_not_a_call(stack: Stack) -> None:
    check = IamCheck(stack)
    s3 = check.session().client("s3")
    with check.acting_as("SignedUrlIssuerFunction"):
        s3.generate_presigned_url(
            "get_object", Params={"Bucket": stack.ref("BackupBucket"), "Key": "orgs/x"}
        )
    assert (check.checked, check.problems) == (0, [])


# ---- KMS, STS, SQS, Secrets Manager -----------------------------------------------------------


def test_kms_calls_are_judged_on_the_key_its_tags_and_the_context(stack: Stack) -> None:
    check = IamCheck(stack)
    kms = check.session().client("kms")
    alias = _org_key(stack)
    wrapped = boto3.client("kms", region_name="us-east-1").encrypt(
        KeyId=alias, Plaintext=b"k" * 32, EncryptionContext={"org_id": ORG}
    )["CiphertextBlob"]
    with check.acting_as("OAuthCallbackFunction"):
        # The key named by the ciphertext alone, as by its alias.
        kms.decrypt(CiphertextBlob=wrapped, EncryptionContext={"org_id": ORG})
        assert check.problems == []
        kms.generate_data_key(KeyId=alias, KeySpec="AES_256", EncryptionContext={"org_id": ORG})
    assert [p.operation for p in check.problems] == ["kms:GenerateDataKey"]
    assert ":key/" in check.problems[0].what  # judged on the key's ARN, not the alias

    creating = IamCheck(stack)
    kms = creating.session().client("kms")
    with creating.acting_as("CredentialStoreFunction"):
        kms.create_key(
            Tags=[
                {"TagKey": "strongroom:org_id", "TagValue": ORG},
                {"TagKey": "strongroom:stage", "TagValue": "dev"},
            ]
        )
        assert creating.problems == []
        kms.create_key(Tags=[{"TagKey": "strongroom:stage", "TagValue": "prod"}])
    assert [p.what.split(" on ")[0] for p in creating.problems] == [
        "kms:CreateKey",
        "kms:TagResource",
    ]


def test_assume_role_is_allowed_by_the_target_roles_trust_policy(stack: Stack) -> None:
    signer = stack.attribute("DownloadSignerRole", "Arn")
    check = IamCheck(stack)
    sts = check.session().client("sts")
    with check.acting_as("SignedUrlIssuerFunction"):
        sts.assume_role(RoleArn=signer, RoleSessionName="sess")
    with check.acting_as("CredentialStoreFunction"):
        sts.assume_role(RoleArn=signer, RoleSessionName="sess")
    assert [(p.function, p.why) for p in check.problems] == [
        ("CredentialStoreFunction", "the trust policy does not name this role")
    ]
    # An explicit deny in the caller's own policy wins over the trust policy.
    denying = IamCheck(
        _template_with(
            stack,
            "SignedUrlIssuerFunction",
            {"Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "*"},
        )
    )
    sts = denying.session().client("sts")
    with denying.acting_as("SignedUrlIssuerFunction"):
        sts.assume_role(RoleArn=signer, RoleSessionName="sess")
    assert [p.why for p in denying.problems] == ["explicit deny"]


def test_sqs_and_secrets_manager_calls_are_judged_on_their_arns(stack: Stack) -> None:
    check = IamCheck(stack)
    session = check.session()
    sqs, secrets = session.client("sqs"), session.client("secretsmanager")
    with check.acting_as("BackupDispatcherFunction"):
        sqs.send_message(QueueUrl=stack.ref("BackupQueue"), MessageBody="{}")
        assert check.problems == []  # the queue's key too, through SQS
        sqs.send_message(QueueUrl=stack.ref("BackupDeadLetterQueue"), MessageBody="{}")
        secrets.get_secret_value(SecretId=stack.ref("GithubWebhookSecret"))
    with check.acting_as("WebhookVerifierFunction"):
        secrets.get_secret_value(SecretId=stack.secret_names["GithubWebhookSecret"])
    assert [(p.function, p.what.split(" on ")[0]) for p in check.problems] == [
        ("BackupDispatcherFunction", "sqs:SendMessage"),
        ("BackupDispatcherFunction", "secretsmanager:GetSecretValue"),
        ("BackupDispatcherFunction", "kms:Decrypt"),
    ]


def test_sending_to_a_queue_under_a_customer_key_needs_the_key_through_sqs(stack: Stack) -> None:
    check = IamCheck(
        _template_without(stack, "BackupDispatcherFunction", "PlatformKeyForTableQueueAndAudit")
    )
    sqs = check.session().client("sqs")
    with check.acting_as("BackupDispatcherFunction"):
        sqs.send_message(QueueUrl=stack.ref("BackupQueue"), MessageBody="{}")
    assert [p.what.split(" on ")[0] for p in check.problems] == [
        "kms:GenerateDataKey",
        "kms:Decrypt",
    ]
    assert check.problems[0].what.split(" on ")[1].startswith(stack.attribute("PlatformKey", "Arn"))
    assert "kms:viaservice=sqs.us-east-1.amazonaws.com" in check.problems[0].what


def test_an_operation_without_a_rule_is_reported_not_passed(stack: Stack) -> None:
    check = IamCheck(stack)
    dynamodb = check.session().client("dynamodb")
    with check.acting_as("CredentialStoreFunction"):
        dynamodb.list_tables()
    assert [(p.operation, p.what) for p in check.problems] == [
        ("dynamodb:ListTables", "not modelled")
    ]
    assert json.dumps(check.report()).count("not modelled") == 1
