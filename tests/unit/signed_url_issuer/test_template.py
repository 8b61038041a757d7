"""The template's least privilege for download links: the function reads no backups itself,
the signer role is assumable by the function's role only and reads only `orgs/*` through S3."""

from __future__ import annotations

from typing import Any

from strongroom_local.template import load_template


def _statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    return list(document["Statement"])


def _actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return {action} if isinstance(action, str) else set(action)


def test_the_function_itself_cannot_read_backups_or_use_org_keys() -> None:
    resources = load_template()["Resources"]
    function = resources["SignedUrlIssuerFunction"]["Properties"]
    statements = [s for policy in function["Policies"] for s in _statements(policy)]
    actions = set().union(*(_actions(s) for s in statements))
    assert not {a for a in actions if a.startswith(("sts:", "iam:"))}
    assert "kms:Decrypt" in actions  # the platform key, for the table and the audit bucket only
    for statement in statements:
        text = repr(statement)
        assert "BackupBucket" not in text
        if "kms:Decrypt" in _actions(statement):
            assert statement["Resource"] == {"Fn::GetAtt": ["PlatformKey", "Arn"]}
    env = function["Environment"]["Variables"]
    assert env["STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN"] == {
        "Fn::GetAtt": ["DownloadSignerRole", "Arn"]
    }


def test_the_signer_role_trusts_the_function_role_only_and_reads_org_prefixes_only() -> None:
    role = load_template()["Resources"]["DownloadSignerRole"]["Properties"]
    assert role["MaxSessionDuration"] == 3600
    [trust] = _statements(role["AssumeRolePolicyDocument"])
    assert trust["Principal"] == {"AWS": {"Fn::GetAtt": ["SignedUrlIssuerFunctionRole", "Arn"]}}
    assert _actions(trust) == {"sts:AssumeRole"}
    [policy] = role["Policies"]
    objects, keys = _statements(policy["PolicyDocument"])
    assert _actions(objects) == {"s3:GetObjectVersion"}  # links name a version
    assert objects["Resource"] == {"Fn::Sub": "${BackupBucket.Arn}/orgs/*"}
    assert _actions(keys) == {"kms:Decrypt"}
    condition = keys["Condition"]
    assert condition["StringEquals"]["aws:ResourceTag/strongroom:stage"] == {"Ref": "Stage"}
    assert condition["StringEquals"]["kms:ViaService"] == {
        "Fn::Sub": "s3.${AWS::Region}.amazonaws.com"
    }
    assert condition["StringLike"]["kms:EncryptionContext:aws:s3:arn"] == [
        {"Fn::GetAtt": ["BackupBucket", "Arn"]},
        {"Fn::Sub": "${BackupBucket.Arn}/orgs/*"},
    ]
