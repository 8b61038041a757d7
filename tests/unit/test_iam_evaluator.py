"""The IAM policy evaluator under the check of every function's role (tests/support/iam.py)."""

from __future__ import annotations

from typing import Any

import pytest

from strongroom_local.provision import Stack
from tests.support.iam import (
    Policy,
    Request,
    UnsupportedPolicy,
    evaluate,
    function_role,
    role_trust_policies,
    trusts,
)

TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/t"


def policy(*statements: dict[str, Any]) -> Policy:
    return Policy.parse({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: Any, resource: Any = "*", condition: Any = None, **extra: Any) -> dict[str, Any]:
    statement = {"Effect": "Allow", "Action": action, "Resource": resource, **extra}
    if condition is not None:
        statement["Condition"] = condition
    return statement


def allowed(policies: Policy | list[Policy], action: str, resource: str, **context: Any) -> bool:
    listed = policies if isinstance(policies, list) else [policies]
    # Condition keys are written with ":" and "/" in IAM; keyword arguments cannot hold them.
    keys = {k.replace("__", ":").replace("_SLASH_", "/"): v for k, v in context.items()}
    return evaluate(listed, Request(action, resource, keys)).allowed


LEADING_ORG = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["org_*"]}}


def test_nothing_is_allowed_without_a_statement_that_allows_it() -> None:
    decision = evaluate([], Request("dynamodb:GetItem", TABLE))
    assert not decision.allowed
    assert decision.reason == "no statement allows it"
    assert not allowed(policy(allow("dynamodb:PutItem", TABLE)), "dynamodb:GetItem", TABLE)


def test_actions_match_with_wildcards_and_regardless_of_case() -> None:
    granted = policy(allow(["dynamodb:Get*", "s3:?etObject"], "*"))
    assert allowed(granted, "dynamodb:GetItem", TABLE)
    assert allowed(granted, "DynamoDB:getitem", TABLE)
    assert allowed(granted, "s3:GetObject", "arn:aws:s3:::b/k")
    assert not allowed(granted, "dynamodb:PutItem", TABLE)
    assert not allowed(granted, "s3:GetObjectVersion", "arn:aws:s3:::b/k")


def test_resources_match_with_wildcards_case_sensitively() -> None:
    granted = policy(allow("s3:PutObject", "arn:aws:s3:::audit-bucket/audit/*"))
    assert allowed(granted, "s3:PutObject", "arn:aws:s3:::audit-bucket/audit/org_1/e.json")
    assert not allowed(granted, "s3:PutObject", "arn:aws:s3:::audit-bucket/other/e.json")
    assert not allowed(granted, "s3:PutObject", "arn:aws:s3:::audit-bucket/AUDIT/e.json")
    assert not allowed(granted, "s3:PutObject", "arn:aws:s3:::audit-bucket-2/audit/e.json")


def test_an_explicit_deny_wins_over_any_allow() -> None:
    granted = policy(
        allow("s3:*", "*"),
        {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:GetObject", "Resource": "*/secret*"},
    )
    assert allowed(granted, "s3:GetObject", "arn:aws:s3:::b/public")
    decision = evaluate([granted], Request("s3:GetObject", "arn:aws:s3:::b/secret.json"))
    assert (decision.allowed, decision.reason, decision.statement) == (
        False,
        "explicit deny",
        "NoSecrets",
    )
    # A deny in another policy of the same role wins too, whichever order they come in.
    deny = policy({"Effect": "Deny", "Action": "*", "Resource": "*"})
    assert not allowed([granted, deny], "s3:GetObject", "arn:aws:s3:::b/public")
    assert not allowed([deny, granted], "s3:GetObject", "arn:aws:s3:::b/public")


def test_not_action_and_not_resource_match_everything_else() -> None:
    granted = policy(
        {"Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": "arn:aws:s3:::locked/*"}
    )
    assert allowed(granted, "s3:PutObject", "arn:aws:s3:::open/k")
    assert not allowed(granted, "s3:DeleteObject", "arn:aws:s3:::open/k")
    assert not allowed(granted, "s3:PutObject", "arn:aws:s3:::locked/k")


def test_leading_keys_must_all_be_tenant_keys() -> None:
    granted = policy(allow("dynamodb:PutItem", TABLE, LEADING_ORG))
    assert allowed(granted, "dynamodb:PutItem", TABLE, dynamodb__LeadingKeys=["org_abc"])
    assert not allowed(granted, "dynamodb:PutItem", TABLE, dynamodb__LeadingKeys=["WEBHOOK#1"])
    assert not allowed(
        granted, "dynamodb:PutItem", TABLE, dynamodb__LeadingKeys=["org_abc", "AUDIT_SWEEP#1"]
    )


def test_for_all_values_holds_when_the_key_is_absent_and_for_any_value_does_not() -> None:
    # IAM's documented pitfall: a request without LeadingKeys (a Scan) passes ForAllValues.
    every = policy(allow("dynamodb:Scan", TABLE, LEADING_ORG))
    assert allowed(every, "dynamodb:Scan", TABLE)
    assert allowed(every, "dynamodb:Scan", TABLE, dynamodb__LeadingKeys=[])
    some = policy(
        allow(
            "dynamodb:Scan",
            TABLE,
            {"ForAnyValue:StringLike": LEADING_ORG["ForAllValues:StringLike"]},
        )
    )
    assert not allowed(some, "dynamodb:Scan", TABLE)
    assert allowed(some, "dynamodb:Scan", TABLE, dynamodb__LeadingKeys=["x", "org_1"])


def test_string_conditions_and_absent_keys() -> None:
    tagged = policy(allow("kms:Decrypt", "*", {"StringEquals": {"aws:ResourceTag/stage": "dev"}}))
    assert allowed(tagged, "kms:Decrypt", "k", aws__ResourceTag_SLASH_stage="dev")
    assert not allowed(tagged, "kms:Decrypt", "k", aws__ResourceTag_SLASH_stage="prod")
    assert not allowed(tagged, "kms:Decrypt", "k")  # absent: false
    # Key names are case-insensitive, values are not.
    assert allowed(tagged, "kms:Decrypt", "k", AWS__RESOURCETAG_SLASH_STAGE="dev")
    assert not allowed(tagged, "kms:Decrypt", "k", aws__ResourceTag_SLASH_stage="DEV")

    negated = policy(allow("kms:Decrypt", "*", {"StringNotEquals": {"aws:ResourceTag/stage": "x"}}))
    assert allowed(negated, "kms:Decrypt", "k")  # absent: a negated operator holds
    assert not allowed(negated, "kms:Decrypt", "k", aws__ResourceTag_SLASH_stage="x")

    if_exists = policy(allow("kms:Decrypt", "*", {"StringEqualsIfExists": {"kms:ViaService": "a"}}))
    assert allowed(if_exists, "kms:Decrypt", "k")
    assert not allowed(if_exists, "kms:Decrypt", "k", kms__ViaService="b")

    like = policy(allow("s3:ListBucket", "*", {"StringLike": {"s3:prefix": ["audit/*"]}}))
    assert allowed(like, "s3:ListBucket", "b", s3__prefix="audit/org_1/")
    assert not allowed(like, "s3:ListBucket", "b", s3__prefix="orgs/")
    assert not allowed(like, "s3:ListBucket", "b")


def test_several_values_are_alternatives_and_several_keys_must_all_hold() -> None:
    granted = policy(
        allow(
            "kms:Decrypt",
            "*",
            {
                "StringEquals": {"kms:ViaService": ["s3.x", "sqs.x"], "aws:ResourceTag/s": "dev"},
                "ArnLike": {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::b*"},
            },
        )
    )
    context = {
        "kms:viaservice": "sqs.x",
        "aws:resourcetag/s": "dev",
        "kms:encryptioncontext:aws:s3:arn": "arn:aws:s3:::b/o",
    }
    assert evaluate([granted], Request("kms:Decrypt", "k", context)).allowed
    for key, wrong in (
        ("kms:viaservice", "dynamodb.x"),
        ("aws:resourcetag/s", "prod"),
        ("kms:encryptioncontext:aws:s3:arn", "arn:aws:s3:::other/o"),
    ):
        assert not evaluate([granted], Request("kms:Decrypt", "k", {**context, key: wrong})).allowed


def test_null_and_bool_conditions() -> None:
    needs_context = policy(
        allow("kms:Decrypt", "*", {"Null": {"kms:EncryptionContext:org_id": "false"}})
    )
    assert allowed(needs_context, "kms:Decrypt", "k", kms__EncryptionContext__org_id="org_1")
    assert not allowed(needs_context, "kms:Decrypt", "k")
    without = policy(allow("kms:Decrypt", "*", {"Null": {"kms:EncryptionContext:org_id": "true"}}))
    assert allowed(without, "kms:Decrypt", "k")
    assert not allowed(without, "kms:Decrypt", "k", kms__EncryptionContext__org_id="org_1")
    tls = policy(allow("s3:*", "*", {"Bool": {"aws:SecureTransport": "true"}}))
    assert allowed(tls, "s3:GetObject", "o", aws__SecureTransport="true")
    assert not allowed(tls, "s3:GetObject", "o", aws__SecureTransport="false")


def test_what_is_not_modelled_is_refused_not_misjudged() -> None:
    with pytest.raises(UnsupportedPolicy, match="NumericLessThan"):
        policy(allow("s3:*", "*", {"NumericLessThan": {"s3:max-keys": "10"}}))
    with pytest.raises(UnsupportedPolicy, match="qualifier"):
        policy(allow("s3:*", "*", {"ForSomeValues:StringLike": {"a": "b"}}))
    with pytest.raises(UnsupportedPolicy, match="policy variables"):
        policy(allow("s3:*", "arn:aws:s3:::b/${aws:username}/*"))
    with pytest.raises(UnsupportedPolicy, match="Principal"):
        policy(allow("s3:*", "*", Principal="*"))


# ---- the template's roles ------------------------------------------------------------------


def _table_request(stack: Stack, action: str, leading: str) -> Request:
    arn = stack.attribute("Table", "Arn")
    return Request(action, arn, {"dynamodb:leadingkeys": [leading]})


def test_each_function_role_is_read_from_the_template_with_the_stacks_names(stack: Stack) -> None:
    store = function_role(stack.template, stack.resolver, "CredentialStoreFunction")
    webhooks = function_role(stack.template, stack.resolver, "WebhookVerifierFunction")
    assert store.arn == stack.attribute("CredentialStoreFunctionRole", "Arn")

    assert store.evaluate(_table_request(stack, "dynamodb:PutItem", "org_abc")).allowed
    assert not store.evaluate(_table_request(stack, "dynamodb:PutItem", "WEBHOOK_EVENT#1")).allowed
    assert webhooks.evaluate(_table_request(stack, "dynamodb:PutItem", "WEBHOOK_EVENT#1")).allowed
    assert not webhooks.evaluate(_table_request(stack, "dynamodb:Query", "BACKUP_DUE#0")).allowed

    audit = stack.attribute("AuditBucket", "Arn")
    assert store.evaluate(Request("s3:PutObject", f"{audit}/audit/org_abc/1.json")).allowed
    assert not store.evaluate(Request("s3:PutObject", f"{audit}/elsewhere/1.json")).allowed
    backups = stack.attribute("BackupBucket", "Arn")
    issuer = function_role(stack.template, stack.resolver, "SignedUrlIssuerFunction")
    assert not issuer.evaluate(Request("s3:GetObject", f"{backups}/orgs/org_abc/x.json")).allowed


def test_org_keys_are_usable_only_tagged_with_the_stage_and_with_an_org_context(
    stack: Stack,
) -> None:
    oauth = function_role(stack.template, stack.resolver, "OAuthCallbackFunction")
    key = "arn:aws:kms:us-east-1:123456789012:key/1234"
    good = {"aws:resourcetag/strongroom:stage": "dev", "kms:encryptioncontext:org_id": "org_a"}
    assert oauth.evaluate(Request("kms:Decrypt", key, good)).allowed
    assert not oauth.evaluate(Request("kms:GenerateDataKey", key, good)).allowed
    wrong_stage = {**good, "aws:resourcetag/strongroom:stage": "prod"}
    assert not oauth.evaluate(Request("kms:Decrypt", key, wrong_stage)).allowed
    no_org = {"aws:resourcetag/strongroom:stage": "dev"}
    assert not oauth.evaluate(Request("kms:Decrypt", key, no_org)).allowed


def test_a_sam_policy_template_is_refused_until_it_is_expanded(stack: Stack) -> None:
    template = {
        "Resources": {
            "F": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"Policies": [{"DynamoDBReadPolicy": {"TableName": "t"}}]},
            }
        }
    }
    with pytest.raises(UnsupportedPolicy, match="DynamoDBReadPolicy"):
        function_role(template, stack.resolver, "F")


def test_a_role_trust_policy_that_names_the_caller_lets_it_assume_the_role(stack: Stack) -> None:
    documents = role_trust_policies(stack.template, stack.resolver)
    signer = documents[stack.attribute("DownloadSignerRole", "Arn")]
    issuer_role = stack.attribute("SignedUrlIssuerFunctionRole", "Arn")
    store_role = stack.attribute("CredentialStoreFunctionRole", "Arn")
    assert trusts(signer, issuer_role, "sts:AssumeRole").allowed
    assert not trusts(signer, store_role, "sts:AssumeRole").allowed
    assert not trusts(signer, issuer_role, "sts:TagSession").allowed

    account = {
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "sts:AssumeRole",
            }
        ]
    }
    assert trusts(account, store_role, "sts:AssumeRole").reason == "delegated"
    denied = {
        "Statement": [
            *account["Statement"],
            {"Effect": "Deny", "Principal": {"AWS": store_role}, "Action": "sts:*"},
        ]
    }
    assert not trusts(denied, store_role, "sts:AssumeRole").allowed
