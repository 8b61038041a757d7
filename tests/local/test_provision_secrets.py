"""Secrets Manager secrets provisioned from a template: as written, generated, or CFN-generated."""

from __future__ import annotations

import json
import string
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.provision import provision


def _template(**secrets: dict[str, Any]) -> dict[str, Any]:
    return {
        "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
        "Resources": {
            name: {"Type": "AWS::SecretsManager::Secret", **resource}
            for name, resource in secrets.items()
        },
    }


def _value(name_or_arn: str) -> str:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    return str(client.get_secret_value(SecretId=name_or_arn)["SecretString"])


def test_secrets_as_written_generated_or_emulated() -> None:
    template = _template(
        Written={"Properties": {"Name": {"Fn::Sub": "app-${Stage}/written"}, "SecretString": "{}"}},
        Webhook={
            "Metadata": {"StrongroomLocal": {"GeneratedValue": "webhook-signing-secret"}},
            "Properties": {"Name": "app/webhook", "SecretString": '{"active": []}'},
        },
        Password={
            "Properties": {
                "GenerateSecretString": {
                    "PasswordLength": 20,
                    "ExcludePunctuation": True,
                    "ExcludeCharacters": "abc",
                }
            }
        },
        Templated={
            "Properties": {
                "GenerateSecretString": {
                    "SecretStringTemplate": '{"user": "svc"}',
                    "GenerateStringKey": "password",
                }
            }
        },
    )
    with mock_aws():
        stack = provision(boto3.Session(region_name="us-east-1"), template=template)
        assert stack.secret_names == {
            "Written": "app-dev/written",
            "Webhook": "app/webhook",
            "Password": "strongroom-local-Password",
            "Templated": "strongroom-local-Templated",
        }
        assert stack.ref("Written").startswith("arn:aws:secretsmanager:us-east-1:")
        assert _value(stack.ref("Written")) == "{}"
        (generated,) = json.loads(_value("app/webhook"))["active"]
        assert generated.startswith("whsec_")
        assert len(generated) == 38
        password = _value("strongroom-local-Password")
        assert len(password) == 20
        assert not set(password) & (set(string.punctuation) | set("abc "))
        document = json.loads(_value("strongroom-local-Templated"))
        assert document["user"] == "svc"
        assert len(document["password"]) == 32


@pytest.mark.parametrize(
    ("local", "refused"),
    [
        (
            {"GeneratedValue": "rsa-key"},
            r"Odd: Metadata.StrongroomLocal.GeneratedValue 'rsa-key' is not one the local stack"
            r" generates \(webhook-signing-secret\)",
        ),
        # A misspelt key would have stored the template's placeholder.
        (
            {"GeneratedValues": "webhook-signing-secret"},
            "Odd: Metadata.StrongroomLocal: the local stack does not emulate GeneratedValues",
        ),
        ("webhook-signing-secret", "Odd: Metadata.StrongroomLocal must be a map"),
    ],
)
def test_a_generated_value_the_stack_cannot_make_stops_it_as_unsupported(
    local: Any, refused: str
) -> None:
    """As the rest of the template reader refuses what it cannot emulate: the CLI says so and
    exits cleanly (a plain ValueError was a traceback)."""
    template = _template(
        Odd={"Metadata": {"StrongroomLocal": local}, "Properties": {"SecretString": "{}"}}
    )
    with mock_aws(), pytest.raises(UnsupportedTemplate, match=f"^{refused}$"):
        provision(boto3.Session(region_name="us-east-1"), template=template)


@pytest.mark.parametrize(
    ("properties", "refused"),
    [
        # Four characters came out: one of each kind RequireEachIncludedType asks for.
        ({"GenerateSecretString": {"PasswordLength": 2}}, "PasswordLength 2 is too short"),
        ({"GenerateSecretString": {"PasswordLength": 0}}, "PasswordLength must be 1 to 4096"),
        # The SecretString was stored, the generation ignored.
        (
            {"SecretString": "{}", "GenerateSecretString": {}},
            "SecretString and GenerateSecretString exclude each other",
        ),
        # The template was dropped; a key alone had one made up.
        (
            {"GenerateSecretString": {"SecretStringTemplate": '{"user": "svc"}'}},
            "GenerateStringKey and SecretStringTemplate go together",
        ),
        (
            {"GenerateSecretString": {"GenerateStringKey": "password"}},
            "GenerateStringKey and SecretStringTemplate go together",
        ),
        (
            {
                "GenerateSecretString": {
                    "GenerateStringKey": "password",
                    "SecretStringTemplate": '["svc"]',
                }
            },
            "SecretStringTemplate is not a JSON object",
        ),
        # IndexError: nothing to choose from.
        (
            {
                "GenerateSecretString": {
                    "ExcludeUppercase": True,
                    "ExcludeLowercase": True,
                    "ExcludeNumbers": True,
                    "ExcludePunctuation": True,
                }
            },
            "every character is excluded",
        ),
    ],
)
def test_secret_settings_secrets_manager_would_refuse_are_refused(
    properties: dict[str, Any], refused: str
) -> None:
    template = _template(Odd={"Properties": properties})
    with mock_aws(), pytest.raises(InvalidTemplate) as raised:
        provision(boto3.Session(region_name="us-east-1"), template=template)
    assert str(raised.value).startswith("Odd: ")
    assert refused in str(raised.value)


def test_a_password_as_long_as_its_required_kinds_holds_one_of_each() -> None:
    template = _template(Short={"Properties": {"GenerateSecretString": {"PasswordLength": 4}}})
    with mock_aws():
        provision(boto3.Session(region_name="us-east-1"), template=template)
        password = _value("strongroom-local-Short")
    assert len(password) == 4
    assert any(c.isupper() for c in password)
    assert any(c.islower() for c in password)
    assert any(c.isdigit() for c in password)
    assert any(c in string.punctuation for c in password)
