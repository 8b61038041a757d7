"""How the local stack reads a template: parameters, conditions and intrinsic functions."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.provision import LOCAL_PARAMETERS, Stack, provision
from strongroom_local.template import Resolver, load_template, resources_of_type


def parameters_template() -> dict[str, Any]:
    return {
        "Parameters": {
            "Retention": {"Type": "Number", "Default": 90},
            "Strict": {"Type": "String", "Default": True},
            "Audiences": {"Type": "CommaDelimitedList", "Default": "a, b"},
        },
        "Conditions": {
            "DefaultRetention": {"Fn::Equals": [{"Ref": "Retention"}, 90]},
            "IsStrict": {"Fn::Equals": [{"Ref": "Strict"}, "true"]},
        },
    }


@pytest.mark.parametrize(
    "given",
    [{}, {"Retention": "90", "Strict": "true", "Audiences": "a,b"}],
    ids=["defaults", "command line"],
)
def test_parameter_values_are_strings_wherever_they_come_from(given: dict[str, str]) -> None:
    """CloudFormation holds every parameter value as a string (a list type: strings), so the
    YAML-typed default and the same value from the command line compare alike."""
    resolver = Resolver.for_template(parameters_template(), parameters=given)
    assert resolver.refs["Retention"] == "90"
    assert resolver.refs["Strict"] == "true"
    assert resolver.refs["Audiences"] == ["a", "b"]
    assert resolver.condition("DefaultRetention")
    assert resolver.condition("IsStrict")


def test_equals_compares_as_text() -> None:
    resolver = Resolver.for_template(parameters_template(), parameters={"Retention": "30"})
    assert not resolver.condition("DefaultRetention")
    assert resolver.resolve({"Fn::Equals": [True, "true"]})
    assert resolver.resolve({"Fn::Equals": [{"Ref": "Audiences"}, ["a", "b"]]})


def test_select_split_and_the_condition_functions_resolve() -> None:
    resolver = Resolver.for_template(parameters_template(), parameters={"Retention": "1"})
    assert resolver.resolve({"Fn::Select": [{"Ref": "Retention"}, {"Ref": "Audiences"}]}) == "b"
    assert resolver.resolve({"Fn::Split": [",", "a,,b"]}) == ["a", "", "b"]
    is_strict, retained = {"Condition": "IsStrict"}, {"Condition": "DefaultRetention"}
    assert resolver.resolve({"Fn::Not": [retained]})
    assert resolver.resolve({"Fn::Or": [is_strict, retained]})
    assert not resolver.resolve({"Fn::And": [is_strict, retained]})


@pytest.mark.parametrize(
    ("intrinsic", "refused"),
    [
        # Indexed as they came: an IndexError, the last item, a string's first letter.
        ({"Fn::Select": [5, ["a", "b"]]}, "Fn::Select: no item 5 in a list of 2"),
        ({"Fn::Select": [-1, ["a", "b"]]}, "Fn::Select: the index must be a whole number"),
        ({"Fn::Select": ["0", "abc"]}, "Fn::Select: a list is needed, not 'abc'"),
        ({"Fn::Select": [0]}, "Fn::Select takes a list of 2 arguments"),
        ({"Fn::Split": ["", "abc"]}, "Fn::Split: the delimiter must be a non-empty string"),
        # A map as Fn::Not's list: KeyError 0; as Fn::And's, its keys read as true.
        ({"Fn::Not": {"Fn::Equals": ["a", "a"]}}, "Fn::Not takes a list of 1 argument,"),
        ({"Fn::And": {"Condition": "IsStrict"}}, "Fn::And takes a list of 2 to 10 arguments"),
        ({"Fn::Or": [{"Condition": "IsStrict"}, "yes"]}, "Fn::Or: a condition is needed"),
        ({"Fn::If": ["IsStrict", "a"]}, "Fn::If takes a list of 3 arguments"),
    ],
)
def test_intrinsics_cloudformation_refuses_are_refused_clearly(
    intrinsic: dict[str, Any], refused: str
) -> None:
    resolver = Resolver.for_template(parameters_template())
    with pytest.raises(InvalidTemplate) as raised:
        resolver.resolve(intrinsic)
    assert str(raised.value).startswith(refused)


def test_conditions_that_refer_to_each_other_in_a_cycle_are_refused() -> None:
    """Evaluated as written, they recursed until RecursionError."""
    template = {
        "Conditions": {
            "A": {"Fn::Not": [{"Condition": "B"}]},
            "B": {"Fn::Or": [{"Condition": "C"}, {"Condition": "A"}]},
            "C": {"Fn::Equals": ["a", "b"]},
        }
    }
    with pytest.raises(
        InvalidTemplate, match="conditions refer to each other in a cycle: A -> B -> A"
    ):
        Resolver.for_template(template).condition("A")


def repository_resolver(**parameters: str) -> Resolver:
    return Resolver.for_template(load_template(), parameters={**LOCAL_PARAMETERS, **parameters})


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("Stage", "staging", "AllowedValues"),
        ("LogRetentionDays", "2", "AllowedValues"),
        ("BackupRetentionDays", "0", "MinValue"),
        ("AuditRetentionDays", "36501", "MaxValue"),
        ("AuditRetentionDays", "-5", "MinValue"),
        ("MaxOrgsPerUser", "ten", "not a number"),
        ("MaxOrgsPerUser", "1_0", "not a number"),
        ("JwtIssuer", "http://issuer.example.com", "AllowedPattern"),
        # An OpenID issuer is a scheme, host, port and path: no query, fragment or userinfo
        # (`iss` is compared as a string, and the JWKS is fetched below the issuer).
        ("JwtIssuer", "https://issuer.example.com/?tenant=a", "AllowedPattern"),
        ("JwtIssuer", "https://issuer.example.com/#a", "AllowedPattern"),
        ("JwtIssuer", "https://issuer.example@evil.example/", "AllowedPattern"),
        ("JwtIssuer", "https://issuer.example\\evil.example/", "AllowedPattern"),
        ("JwtIssuer", "https://issuer.example.com/a b", "AllowedPattern"),
        ("JwtIssuer", "https:///issuer", "AllowedPattern"),
        ("JwtIssuer", "https://:443/issuer", "AllowedPattern"),
        # Only a loopback URL may be plain HTTP (the local stack serves nothing else).
        ("OAuthRedirectUri", "http://callback.example.com/oauth/callback", "AllowedPattern"),
        ("OAuthReturnUrl", "http://127.0.0.1.example.com/health", "AllowedPattern"),
        # Loopback to urlsplit, evil.example to a browser: not a loopback URL, so not https.
        ("OAuthRedirectUri", "http://evil.example\\@127.0.0.1:3000/cb", "AllowedPattern"),
        ("OAuthReturnUrl", "http://127.1:3000/dev/health", "AllowedPattern"),
        # What the functions' settings refuse at start, refused at deploy: a URL not in RFC
        # 3986's characters (a backslash, `|`, a Unicode host) may be read as another.
        ("OAuthRedirectUri", "https://api.example\\oauth/callback", "AllowedPattern"),
        ("OAuthReturnUrl", "https://app.example/connections?x=a|b", "AllowedPattern"),
        ("OAuthReturnUrl", "https://b\u00fccher.example/connections", "AllowedPattern"),
        ("BillingProducts", "stripe:price 1=team", "AllowedPattern"),
    ],
)
def test_parameter_values_cloudformation_refuses_are_refused(
    name: str, value: str, reason: str
) -> None:
    with pytest.raises(InvalidTemplate, match=f"parameter {name}: .*{reason}"):
        repository_resolver(**{name: value})


def test_the_local_values_and_loopback_http_urls_pass() -> None:
    resolver = repository_resolver(
        OAuthRedirectUri="http://localhost:3000/dev/oauth/callback",
        OAuthReturnUrl="http://[::1]:3000/dev/health",
        BackupRetentionDays="1",
        Stage="prod",
    )
    assert resolver.refs["BackupRetentionDays"] == "1"
    deployed = "https://api.example.com:8443/v1/oauth/callback?tenant=a%20b&x=(1)"
    assert repository_resolver(OAuthRedirectUri=deployed).refs["OAuthRedirectUri"] == deployed
    assert repository_resolver().refs["OAuthRedirectUri"] == LOCAL_PARAMETERS["OAuthRedirectUri"]
    for issuer in ("https://tenant.eu.auth0.com/", "https://login.example.com:8443/oauth2/x-1"):
        assert repository_resolver(JwtIssuer=issuer).refs["JwtIssuer"] == issuer


def test_a_parameter_the_template_does_not_declare_is_refused() -> None:
    """CloudFormation refuses "Parameters: [stage] do not exist in the template"; ignored, the
    stack ran as dev when prod was asked for."""
    with pytest.raises(InvalidTemplate, match=r"Parameters: \[stage\] do not exist"):
        repository_resolver(stage="prod")
    with mock_aws(), pytest.raises(InvalidTemplate, match=r"Parameters: \[stage\] do not exist"):
        provision(boto3.Session(region_name="us-east-1"), parameters={"stage": "prod"})


def test_a_parameter_with_neither_default_nor_value_is_refused() -> None:
    """CloudFormation refuses "Parameters: [...] must have values"; it was a raw KeyError."""
    template = {
        "Parameters": {
            "Issuer": {"Type": "String"},
            "Stage": {"Type": "String", "Default": "dev"},
            "Audience": {"Type": "String"},
        }
    }
    with pytest.raises(InvalidTemplate, match=r"Parameters: \[Issuer, Audience\] must have values"):
        Resolver.for_template(template)
    with pytest.raises(InvalidTemplate, match=r"Parameters: \[Audience\] must have values"):
        Resolver.for_template(template, parameters={"Issuer": "https://issuer.test/"})


def test_the_stacks_own_values_serve_only_the_parameters_a_template_declares() -> None:
    """LOCAL_PARAMETERS go to templates that declare none of them: they are no caller's
    mistake. What the caller gives comes first."""
    defaults = {"Retention": "30", "JwtIssuer": "https://127.0.0.1/dev-issuer"}
    resolver = Resolver.for_template(parameters_template(), defaults=defaults)
    assert resolver.refs["Retention"] == "30"
    assert "JwtIssuer" not in resolver.refs
    given = Resolver.for_template(
        parameters_template(), parameters={"Retention": "7"}, defaults=defaults
    )
    assert given.refs["Retention"] == "7"


def constrained_template(**spec: Any) -> dict[str, Any]:
    return {"Parameters": {"Token": {"Type": "String", **spec}}}


def test_string_lengths_and_list_items_are_checked() -> None:
    template = constrained_template(MinLength=2, MaxLength=3)
    assert Resolver.for_template(template, parameters={"Token": "abc"}).refs["Token"] == "abc"
    for value in ("a", "abcd"):
        with pytest.raises(InvalidTemplate, match=r"parameter Token: .*Length"):
            Resolver.for_template(template, parameters={"Token": value})
    # A CommaDelimitedList's AllowedValues and AllowedPattern hold for each item.
    listed = {"Parameters": {"Kinds": {"Type": "CommaDelimitedList", "AllowedValues": ["a", "b"]}}}
    assert Resolver.for_template(listed, parameters={"Kinds": "a,b"}).refs["Kinds"] == ["a", "b"]
    with pytest.raises(InvalidTemplate, match="parameter Kinds"):
        Resolver.for_template(listed, parameters={"Kinds": "a,c"})


@pytest.mark.parametrize("no_echo", [True, "true", "True"], ids=["bool", "true", "True"])
@pytest.mark.parametrize(
    ("given", "refused"),
    [
        ("Hunter2", "lower-case letters"),
        # Not a string: its value was in the message.
        ({"secret": "Hunter2"}, "the value is not a string"),
        (["Hunter2"], "the value is not a string"),
    ],
)
def test_a_no_echo_parameters_value_is_never_shown(no_echo: Any, given: Any, refused: str) -> None:
    """NoEcho is a boolean as CloudFormation reads one: "True" (a string) hides the value too."""
    template = constrained_template(
        NoEcho=no_echo, AllowedPattern="[a-z]+", ConstraintDescription="lower-case letters"
    )
    with pytest.raises(InvalidTemplate, match=refused) as raised:
        Resolver.for_template(template, parameters={"Token": given})
    assert "Hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None
    assert raised.value.__context__ is None or raised.value.__suppress_context__


@pytest.mark.parametrize("kind", ["AWS::SSM::Parameter::Value<String>", "AWS::EC2::VPC::Id"])
def test_parameter_types_naming_account_resources_are_refused(kind: str) -> None:
    template = {"Parameters": {"Vpc": {"Type": kind, "Default": "vpc-1"}}}
    with pytest.raises(UnsupportedTemplate, match="parameter Vpc"):
        Resolver.for_template(template)


INTRINSICS_TEMPLATE = """
Parameters:
  Stage: {Type: String, Default: dev}
  Audiences: {Type: CommaDelimitedList, Default: strongroom}
Mappings:
  Sizes:
    dev: {Memory: 256, Label: small}
  Accounts:
    123456789012: {Env: local}
Globals:
  Function:
    Environment:
      Variables:
        MEMORY: !FindInMap [Sizes, !Ref Stage, Memory]
        ENCODED: !Base64 {"Fn::Sub": "stage=${Stage}"}
        STRICT: !Sub ["strict=${Strict}", {Strict: true}]
        JOINED: !Join [",", [true, false, 3, !FindInMap [Sizes, dev, Label]]]
"""


def intrinsics_resolver(tmp_path: Path) -> Resolver:
    path = tmp_path / "template.yaml"
    path.write_text(INTRINSICS_TEMPLATE, encoding="utf-8")
    return Resolver.for_template(load_template(path))


def test_find_in_map_and_base64_resolve(tmp_path: Path) -> None:
    resolver = intrinsics_resolver(tmp_path)
    variables = resolver.template["Globals"]["Function"]["Environment"]["Variables"]
    assert resolver.resolve(variables) == {
        "MEMORY": 256,
        "ENCODED": base64.b64encode(b"stage=dev").decode(),
        # Booleans written into a string read as CloudFormation writes them.
        "STRICT": "strict=true",
        "JOINED": "true,false,3,small",
    }
    with pytest.raises(InvalidTemplate, match=r"Sizes\.prod"):
        resolver.resolve({"Fn::FindInMap": ["Sizes", "prod", "Memory"]})


def test_find_in_map_finds_keys_yaml_reads_as_numbers(tmp_path: Path) -> None:
    """CloudFormation's keys are strings: an unquoted account id is one too."""
    resolver = intrinsics_resolver(tmp_path)
    by_account = {"Fn::FindInMap": ["Accounts", {"Ref": "AWS::AccountId"}, "Env"]}
    assert resolver.resolve(by_account) == "local"


@pytest.mark.parametrize(
    "intrinsic",
    [
        {"Fn::GetAZs": ""},
        {"Fn::ImportValue": "shared-queue-arn"},
        {"Fn::Cidr": ["10.0.0.0/16", 4, 8]},
        {"Fn::ToJsonString": {"a": 1}},
        {"Fn::FindInMap": ["Sizes", "prod", "Memory", {"DefaultValue": 128}]},
    ],
)
def test_intrinsics_the_stack_does_not_emulate_are_refused(
    tmp_path: Path, intrinsic: dict[str, Any]
) -> None:
    """Not resolved, one would reach a resource or an environment as the text of a map."""
    resolver = intrinsics_resolver(tmp_path)
    (name,) = intrinsic
    with pytest.raises(UnsupportedTemplate, match=name):
        resolver.resolve({"Variables": {"VALUE": intrinsic}})


def test_a_list_written_into_a_string_is_refused(tmp_path: Path) -> None:
    """CloudFormation refuses a list parameter in Fn::Sub; str() made it "aud=['strongroom']"."""
    resolver = intrinsics_resolver(tmp_path)
    with pytest.raises(InvalidTemplate, match="Audiences"):
        resolver.resolve({"Fn::Sub": "aud=${Audiences}"})
    with pytest.raises(InvalidTemplate, match="Fn::Join"):
        resolver.resolve({"Fn::Join": [",", ["a", {"Ref": "Audiences"}]]})
    assert resolver.resolve({"Fn::Join": [",", {"Ref": "Audiences"}]}) == "strongroom"


def test_an_environment_boolean_reads_as_cloudformation_writes_it() -> None:
    template = {"Globals": {"Function": {"Environment": {"Variables": {"STRICT": True}}}}}
    stack = Stack(template=template, resolver=Resolver.for_template(template))
    assert stack.function_environment() == {"STRICT": "true"}


def conditional_template() -> dict[str, Any]:
    return {
        "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
        "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
        "Resources": {
            "Queue": {"Type": "AWS::SQS::Queue"},
            "ProdQueue": {"Type": "AWS::SQS::Queue", "Condition": "IsProd"},
        },
    }


@pytest.mark.parametrize(
    ("stage", "queues"), [("dev", ["Queue"]), ("prod", ["Queue", "ProdQueue"])]
)
def test_a_resource_whose_condition_is_false_does_not_exist(stage: str, queues: list[str]) -> None:
    template = conditional_template()
    resolver = Resolver.for_template(template, parameters={"Stage": stage})
    assert list(resources_of_type(template, "AWS::SQS::Queue", resolver)) == queues
    assert resolver.exists("ProdQueue") is (stage == "prod")


def test_a_condition_is_not_read_without_the_parameters() -> None:
    with pytest.raises(UnsupportedTemplate, match="ProdQueue"):
        resources_of_type(conditional_template(), "AWS::SQS::Queue")


@pytest.mark.parametrize(
    "reference",
    [
        {"Ref": "ProdQueue"},
        {"Fn::GetAtt": ["ProdQueue", "Arn"]},
        {"Fn::GetAtt": "ProdQueue.Arn"},
        {"Fn::Sub": "${ProdQueue.Arn}/x"},
        {"Fn::If": ["IsProd", "prod", {"Ref": "ProdQueue"}]},
    ],
)
def test_a_reference_to_a_resource_that_does_not_exist_is_refused(
    reference: dict[str, Any],
) -> None:
    resolver = Resolver.for_template(conditional_template())
    resolver.refs["ProdQueue"] = "https://sqs/prod-queue"  # as if it had been created anyway
    resolver.attributes[("ProdQueue", "Arn")] = "arn:aws:sqs:::prod-queue"
    with pytest.raises(InvalidTemplate, match="ProdQueue does not exist"):
        resolver.resolve(reference)
    # An Fn::If that leaves it out is what CloudFormation accepts.
    guarded = {"Fn::If": ["IsProd", reference, {"Ref": "AWS::NoValue"}]}
    assert resolver.resolve({"QueueUrl": guarded}) == {}


@pytest.mark.parametrize(
    ("reference", "refused"),
    [
        ({"Ref": "Nope"}, "Ref Nope: the template has no parameter or resource Nope"),
        ({"Fn::GetAtt": ["Nope", "Arn"]}, "GetAtt Nope.Arn: the template has no resource Nope"),
        ({"Fn::Sub": "${Nope.Arn}"}, "GetAtt Nope.Arn: the template has no resource Nope"),
        ({"Ref": "AWS::Nope"}, "Ref AWS::Nope: CloudFormation has no pseudo parameter"),
    ],
)
def test_a_reference_to_what_the_template_does_not_have_is_refused(
    reference: dict[str, Any], refused: str
) -> None:
    """CloudFormation refuses the template: not UnsupportedTemplate (a raw KeyError here)."""
    with pytest.raises(InvalidTemplate) as raised:
        Resolver.for_template(conditional_template()).resolve(reference)
    assert str(raised.value).startswith(refused)


def test_references_the_stack_cannot_resolve_say_so() -> None:
    resolver = Resolver.for_template(conditional_template())
    with pytest.raises(UnsupportedTemplate, match="gives AWS::StackId no value"):
        resolver.resolve({"Fn::Sub": "${AWS::StackId}"})
    # Not known yet, for provisioning to explain (it names what it creates).
    with pytest.raises(KeyError, match="Ref Queue is not known"):
        resolver.resolve({"Ref": "Queue"})
    # SAM makes resources the template does not list: their names are not refused.
    serverless = {**conditional_template(), "Transform": "AWS::Serverless-2016-10-31"}
    serverless["Resources"]["Worker"] = {"Type": "AWS::Serverless::Function"}
    resolver = Resolver.for_template(serverless)
    for generated in ("ServerlessHttpApi", "WorkerRole"):
        with pytest.raises(KeyError, match=f"Ref {generated} is not known"):
            resolver.resolve({"Ref": generated})


def test_provision_creates_only_the_resources_whose_condition_holds() -> None:
    template = conditional_template()
    with mock_aws():
        stack = provision(boto3.Session(region_name="us-east-1"), template=template)
        assert list(stack.physical_ids) == ["Queue"]
