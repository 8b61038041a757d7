"""What the local stack reads from a template: functions, routes, schedules, queues, env."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.provision import Stack, provision
from strongroom_local.routes import http_routes
from strongroom_local.runtime import lambda_environment
from strongroom_local.template import REPO_ROOT, load_template
from strongroom_local.wiring import Wiring, read_wiring
from tests.local.conftest import FIXTURE_TEMPLATE, FIXTURES

# template.yaml's; the fixture template's also have RecordDir (CloudFormation refuses a
# parameter its template does not declare).
REPOSITORY_PARAMETERS = {"JwtIssuer": "https://issuer.test/", "JwtAudience": "aud-a,aud-b"}
PARAMETERS = {**REPOSITORY_PARAMETERS, "RecordDir": "/r"}


@pytest.fixture
def fixture_stack_in_moto() -> Iterator[Stack]:
    with mock_aws():
        yield provision(
            boto3.Session(region_name="us-east-1"),
            template_path=FIXTURE_TEMPLATE,
            parameters=PARAMETERS,
        )


@pytest.fixture
def wiring(fixture_stack_in_moto: Stack) -> Wiring:
    return read_wiring(fixture_stack_in_moto, FIXTURES)


def test_functions_get_their_code_layers_and_limits(wiring: Wiring) -> None:
    assert sorted(wiring.functions) == [
        "ConsumerFunction",
        "EchoFunction",
        "ShapesFunction",
        "TickFunction",
    ]
    echo = wiring.functions["EchoFunction"]
    assert echo.code_dir == FIXTURES / "echo"
    assert echo.handler == "app.lambda_handler"
    assert echo.layer_dirs == ((REPO_ROOT / "layers" / "common").resolve(),)
    assert (echo.timeout_seconds, echo.memory_mb) == (10, 256)
    assert echo.name == "strongroom-local-EchoFunction"
    assert (
        echo.arn == "arn:aws:lambda:us-east-1:123456789012:function:strongroom-local-EchoFunction"
    )
    assert wiring.functions["ShapesFunction"].timeout_seconds == 2
    tick = wiring.functions["TickFunction"]
    assert tick.handler == "app.handler"
    assert tick.async_retries == 1
    assert tick.dead_letter_queue_arn == (
        "arn:aws:sqs:us-east-1:123456789012:strongroom-local-TickDeadLetterQueue"
    )
    # Lambda's defaults: two retries, and a failed event is dropped.
    assert (echo.async_retries, echo.dead_letter_queue_arn) == (2, None)


def test_routes_carry_stage_authorizer_and_scopes(wiring: Wiring) -> None:
    (api,) = wiring.apis
    assert api.stage == "v1"
    assert len(api.api_id) == 10
    (authorizer,) = api.authorizers.values()
    assert authorizer.issuer == "https://issuer.test/"
    assert authorizer.audiences == ("aud-a", "aud-b")
    assert authorizer.identity_header == "authorization"
    routes = {(r.route_key, r.protected, r.scopes) for r in api.routes}
    assert routes == {
        ("GET /echo/{id}", True, ()),
        ("POST /echo/{id}", True, ()),
        ("GET /scoped", True, ("echo.read",)),
        ("ANY /public/{proxy+}", False, ()),
        ("GET /public/exact", False, ()),
        ("POST /items/{item_id}/parts/{part_id}", False, ()),
        ("GET /shapes/{kind}", False, ()),
        ("GET /hurried/{kind}", False, ()),
    }
    # TimeoutInMillis, or API Gateway's 30 s.
    timeouts = {r.route_key: r.timeout_ms for r in api.routes}
    assert timeouts.pop("GET /hurried/{kind}") == 300
    assert set(timeouts.values()) == {30_000}


def test_schedules_and_queues_are_read(wiring: Wiring, fixture_stack_in_moto: Stack) -> None:
    nightly, hourly = wiring.schedules
    assert (nightly.function_id, nightly.event_name, nightly.kind) == (
        "TickFunction",
        "Nightly",
        "Schedule",
    )
    assert nightly.expression.text == "cron(0 3 * * ? *)"
    assert nightly.input is None
    assert nightly.enabled
    assert nightly.arn == (
        "arn:aws:events:us-east-1:123456789012:rule/strongroom-local-TickFunctionNightly"
    )
    assert hourly.kind == "ScheduleV2"
    assert hourly.expression.text == "rate(1 hour)"
    assert hourly.input is not None
    assert hourly.arn.startswith("arn:aws:scheduler:us-east-1:123456789012:schedule/default/")
    (jobs,) = wiring.queues
    assert jobs.function_id == "ConsumerFunction"
    assert jobs.queue_arn == fixture_stack_in_moto.attribute("JobQueue", "Arn")
    assert (jobs.batch_size, jobs.batching_window_seconds) == (4, 1)
    assert jobs.report_batch_item_failures
    assert jobs.enabled


@pytest.mark.parametrize("template_path", [FIXTURE_TEMPLATE, REPO_ROOT / "template.yaml"])
def test_routes_agree_with_the_route_reader(template_path: Any) -> None:
    """The route table the stack serves is the one routes.py (and the OpenAPI check) sees."""
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"),
            template_path=template_path,
            parameters=PARAMETERS if template_path == FIXTURE_TEMPLATE else REPOSITORY_PARAMETERS,
        )
        wiring = read_wiring(stack, template_path.parent)
    assert_routes_agree(wiring, load_template(template_path), template_path.parent)


def assert_routes_agree(wiring: Wiring, template: dict[str, Any], root: Any = FIXTURES) -> None:
    served = {(r.function_id, r.route_key, r.protected) for api in wiring.apis for r in api.routes}
    declared = {
        (r.function.logical_id, r.route_key, r.protected) for r in http_routes(template, root)
    }
    assert served == declared


def test_the_function_environment_points_only_at_the_emulator(
    fixture_stack_in_moto: Stack, wiring: Wiring
) -> None:
    echo = wiring.functions["EchoFunction"]
    template_env = fixture_stack_in_moto.function_environment("EchoFunction")
    assert template_env["FIXTURE_NAME"] == "echo"
    assert template_env["FIXTURE_TABLE"] == fixture_stack_in_moto.ref("Table")
    hostile = {**template_env, "AWS_ENDPOINT_URL": "https://example.com", "AWS_PROFILE": "prod"}
    environment = lambda_environment(
        echo,
        hostile,
        aws_endpoint_url="http://127.0.0.1:4566",
        region="us-east-1",
        allow_hosts=["127.0.0.1:9000", "localhost:9001"],
    )
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert environment["AWS_ACCESS_KEY_ID"] == "testing"
    assert environment["AWS_CONFIG_FILE"] == environment["AWS_SHARED_CREDENTIALS_FILE"]
    assert environment["STRONGROOM_DEV_ALLOW_HOSTS"] == "127.0.0.1:9000,localhost:9001"
    assert environment["FIXTURE_NAME"] == "echo"
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == echo.name
    assert environment["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert environment["AWS_REGION"] == "us-east-1"
    no_hosts = lambda_environment(
        echo, template_env, aws_endpoint_url="http://127.0.0.1:1", region="us-east-1"
    )
    assert "STRONGROOM_DEV_ALLOW_HOSTS" not in no_hosts
    assert "AWS_PROFILE" not in no_hosts


def test_lambda_authorizers_are_refused_rather_than_skipped() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    authorizers = template["Resources"]["HttpApi"]["Properties"]["Auth"]["Authorizers"]
    authorizers["JwtAuthorizer"] = {"FunctionArn": "arn:aws:lambda:...:function:auth"}
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"), template=template, parameters=PARAMETERS
        )
        with pytest.raises(UnsupportedTemplate):
            read_wiring(stack, FIXTURES)


def wiring_of(template: dict[str, Any]) -> Wiring:
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"), template=template, parameters=PARAMETERS
        )
        return read_wiring(stack, FIXTURES)


def job_events(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["ConsumerFunction"]["Properties"]["Events"]["Jobs"]["Properties"]


@pytest.mark.parametrize(("value", "enabled"), [("false", False), ("False", False), (True, True)])
def test_enabled_is_read_as_cloudformation_reads_it(value: Any, enabled: bool) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    job_events(template)["Enabled"] = value
    (jobs,) = wiring_of(template).queues
    assert jobs.enabled is enabled


def test_an_enabled_that_is_no_boolean_is_refused() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    job_events(template)["Enabled"] = "no"
    with pytest.raises(UnsupportedTemplate, match="Enabled"):
        wiring_of(template)


def test_maximum_concurrency_is_read() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    job_events(template)["ScalingConfig"] = {"MaximumConcurrency": 3}
    (jobs,) = wiring_of(template).queues
    assert jobs.maximum_concurrency == 3


@pytest.mark.parametrize(
    ("event", "prop", "value"),
    [
        # A filter deletes what it does not match, in AWS; locally it would be ignored.
        ("Jobs", "FilterCriteria", {"Filters": [{"Pattern": '{"body": {"kind": ["a"]}}'}]}),
        ("Jobs", "ScalingConfig", {"MaximumConcurrency": 1}),
        ("Nightly", "RetryPolicy", {"MaximumRetryAttempts": 0}),
        ("Nightly", "DeadLetterConfig", {"Type": "SQS"}),
    ],
)
def test_event_properties_the_stack_does_not_emulate_are_refused(
    event: str, prop: str, value: Any
) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    function = "ConsumerFunction" if event == "Jobs" else "TickFunction"
    template["Resources"][function]["Properties"]["Events"][event]["Properties"][prop] = value
    with pytest.raises(UnsupportedTemplate):
        wiring_of(template)


def test_the_repository_template_uses_only_what_the_stack_emulates() -> None:
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"),
            template_path=REPO_ROOT / "template.yaml",
            parameters=REPOSITORY_PARAMETERS,
        )
        wiring = read_wiring(stack, REPO_ROOT)
    concurrency = {q.function_id: q.maximum_concurrency for q in wiring.queues}
    assert concurrency == {"BackupWorkerFunction": 20, "BackupDeadLetterFunction": 2}


def http_events(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]["EchoFunction"]["Properties"]["Events"]


def api_auth(template: dict[str, Any]) -> dict[str, Any]:
    auth: dict[str, Any] = template["Resources"]["HttpApi"]["Properties"]["Auth"]
    return auth


def routes_by_key(wiring: Wiring) -> dict[str, Any]:
    return {(api.logical_id, r.route_key): r for api in wiring.apis for r in api.routes}


@pytest.mark.parametrize(
    ("prop", "value"),
    [
        ("TimeoutInMillis", 49),
        ("TimeoutInMillis", 30_001),
        ("TimeoutInMillis", "soon"),
        ("PayloadFormatVersion", "1.0"),
    ],
)
def test_integration_settings_api_gateway_or_the_stack_do_not_take_are_refused(
    prop: str, value: Any
) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    http_events(template)["Scoped"]["Properties"][prop] = value
    with pytest.raises(UnsupportedTemplate, match=prop):
        wiring_of(template)


def test_integration_timeouts_within_api_gateways_range_are_read() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    http_events(template)["Scoped"]["Properties"]["TimeoutInMillis"] = 50
    http_events(template)["Exact"]["Properties"]["TimeoutInMillis"] = 30_000
    http_events(template)["Parts"]["Properties"]["PayloadFormatVersion"] = "2.0"
    routes = routes_by_key(wiring_of(template))
    assert routes[("HttpApi", "GET /scoped")].timeout_ms == 50
    assert routes[("HttpApi", "GET /public/exact")].timeout_ms == 30_000


def test_an_openapi_definition_is_refused_rather_than_ignored() -> None:
    # Its routes, integrations and payload formats would not be read.
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["HttpApi"]["Properties"]["DefinitionBody"] = {"openapi": "3.0.1"}
    with pytest.raises(UnsupportedTemplate, match="DefinitionBody"):
        wiring_of(template)


def test_globals_http_api_applies_to_every_http_api() -> None:
    """SAM merges Globals.HttpApi into each HttpApi, the implicit one included."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["HttpApi"] = {"Auth": api_auth(template)}
    del template["Resources"]["HttpApi"]["Properties"]["Auth"]
    http_events(template)["Implicit"] = {
        "Type": "HttpApi",
        "Properties": {"Method": "GET", "Path": "/implicit"},
    }
    wiring = wiring_of(template)
    routes = routes_by_key(wiring)
    assert routes[("HttpApi", "GET /echo/{id}")].authorizer == "JwtAuthorizer"
    assert routes[("HttpApi", "GET /scoped")].scopes == ("echo.read",)
    assert not routes[("HttpApi", "GET /public/exact")].protected
    assert routes[("ServerlessHttpApi", "GET /implicit")].authorizer == "JwtAuthorizer"
    assert_routes_agree(wiring, template)


def test_the_apis_own_settings_win_over_globals() -> None:
    """SAM's merge: maps merge key by key, lists are concatenated, other values are replaced."""
    template = load_template(FIXTURE_TEMPLATE)
    jwt = api_auth(template)["Authorizers"]["JwtAuthorizer"]
    template["Globals"]["HttpApi"] = {
        "Auth": {
            "DefaultAuthorizer": "GlobalAuthorizer",
            "Authorizers": {
                "GlobalAuthorizer": {**jwt, "AuthorizationScopes": ["global.only"]},
                "JwtAuthorizer": {"AuthorizationScopes": ["from.globals"]},
            },
        },
        "AccessLogSettings": {"Format": "$context.requestId"},
    }
    jwt["AuthorizationScopes"] = ["from.api"]
    wiring = wiring_of(template)
    (api,) = wiring.apis
    assert sorted(api.authorizers) == ["GlobalAuthorizer", "JwtAuthorizer"]
    routes = routes_by_key(wiring)
    echo = routes[("HttpApi", "GET /echo/{id}")]
    assert (echo.authorizer, echo.scopes) == ("JwtAuthorizer", ("from.globals", "from.api"))
    assert_routes_agree(wiring, template)


def test_an_authorizers_scopes_apply_to_routes_that_name_none() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    api_auth(template)["Authorizers"]["JwtAuthorizer"]["AuthorizationScopes"] = ["echo.any"]
    # An empty list names none either (SAM reads it as absent).
    http_events(template)["Posted"]["Properties"]["Auth"] = {"AuthorizationScopes": []}
    routes = routes_by_key(wiring_of(template))
    assert routes[("HttpApi", "GET /echo/{id}")].scopes == ("echo.any",)
    assert routes[("HttpApi", "POST /echo/{id}")].scopes == ("echo.any",)
    assert routes[("HttpApi", "GET /scoped")].scopes == ("echo.read",)
    assert routes[("HttpApi", "GET /public/exact")].scopes == ()


@pytest.mark.parametrize("key", ["CorsConfiguration", "StageVariables", "Domain", "Typo"])
def test_globals_http_api_keys_the_stack_does_not_emulate_are_refused(key: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["HttpApi"] = {key: {"AllowOrigins": ["https://example.com"]}}
    with pytest.raises(UnsupportedTemplate, match=key):
        wiring_of(template)


def test_a_function_runs_with_its_template_runtime() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    assert {f.runtime for f in wiring_of(template).functions.values()} == {"python3.13"}
    template["Globals"]["Function"]["Runtime"] = "nodejs22.x"
    with pytest.raises(UnsupportedTemplate, match="only Python runtimes"):
        wiring_of(template)


@pytest.mark.parametrize(("stage", "exists"), [("v1", False), ("prod", True)])
def test_functions_whose_condition_is_false_are_neither_served_scheduled_nor_fed(
    stage: str, exists: bool
) -> None:
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"),
            template_path=FIXTURE_TEMPLATE,
            parameters={**PARAMETERS, "Stage": stage},
        )
        # provision.py refuses a conditional resource until it passes its resolver to
        # resources_of_type, so the Conditions are added to what it provisioned.
        stack.template["Conditions"] = {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}}
        for function in ("ShapesFunction", "ConsumerFunction", "TickFunction"):
            stack.template["Resources"][function]["Condition"] = "IsProd"
        wiring = read_wiring(stack, FIXTURES)
    assert sorted(wiring.functions) == (
        ["ConsumerFunction", "EchoFunction", "ShapesFunction", "TickFunction"]
        if exists
        else ["EchoFunction"]
    )
    served = {r.function_id for api in wiring.apis for r in api.routes}
    assert served == ({"EchoFunction", "ShapesFunction"} if exists else {"EchoFunction"})
    assert len(wiring.schedules) == (2 if exists else 0)
    assert len(wiring.queues) == (1 if exists else 0)


@pytest.mark.parametrize(
    "event_type", ["Api", "CloudWatchEvent", "EventBridgeRule", "DynamoDB", "SNS", "Kinesis"]
)
def test_event_types_the_stack_does_not_wire_are_refused(event_type: str) -> None:
    """AWS would invoke the function on such an event; locally it would never be called."""
    template = load_template(FIXTURE_TEMPLATE)
    http_events(template)["Other"] = {"Type": event_type, "Properties": {}}
    with pytest.raises(UnsupportedTemplate, match=f"EchoFunction.Other: {event_type}"):
        wiring_of(template)


RAW_INVOKERS = {
    "NightlyRule": {
        "Type": "AWS::Events::Rule",
        "Properties": {
            "ScheduleExpression": "rate(1 day)",
            "Targets": [{"Id": "tick", "Arn": {"Fn::GetAtt": ["TickFunction", "Arn"]}}],
        },
    },
    "JobMapping": {
        "Type": "AWS::Lambda::EventSourceMapping",
        "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["JobQueue", "Arn"]},
            "FunctionName": {"Ref": "TickFunction"},
        },
    },
    "Alerts": {"Type": "AWS::SNS::Topic"},
}


@pytest.mark.parametrize("logical_id", sorted(RAW_INVOKERS))
def test_resource_types_the_stack_neither_creates_nor_skips_are_refused(logical_id: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    resource = RAW_INVOKERS[logical_id]
    template["Resources"][logical_id] = resource
    with pytest.raises(UnsupportedTemplate, match=f"{logical_id}: .*{resource['Type']}"):
        wiring_of(template)


def test_resources_skipped_on_purpose_or_that_do_not_exist_are_accepted() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoLogs"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"RetentionInDays": 7},
    }
    # A Condition that is false: CloudFormation creates no rule, so nothing is left out.
    template["Conditions"] = {"Never": {"Fn::Equals": ["a", "b"]}}
    template["Resources"]["NightlyRule"] = {**RAW_INVOKERS["NightlyRule"], "Condition": "Never"}
    assert sorted(wiring_of(template).functions) == [
        "ConsumerFunction",
        "EchoFunction",
        "ShapesFunction",
        "TickFunction",
    ]


@pytest.mark.parametrize(
    "key", ["CorsConfiguration", "StageVariables", "Domain", "DisableExecuteApiEndpoint", "Typo"]
)
def test_an_apis_own_keys_the_stack_does_not_emulate_are_refused(key: str) -> None:
    """The same keys refused in Globals.HttpApi are refused on the API itself."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["HttpApi"]["Properties"][key] = {"AllowOrigins": ["https://a.test"]}
    with pytest.raises(UnsupportedTemplate, match=f"HttpApi: .*{key}"):
        wiring_of(template)


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ("Auth", "EnableIamAuthorizer"),
        ("Authorizer", "FunctionArn"),
        ("JwtConfiguration", "client_id"),
    ],
)
def test_auth_settings_the_stack_does_not_emulate_are_refused(where: str, key: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    auth = api_auth(template)
    authorizer = auth["Authorizers"]["JwtAuthorizer"]
    settings = {"Auth": auth, "Authorizer": authorizer, **authorizer}
    settings[where][key] = "x"
    with pytest.raises(UnsupportedTemplate, match=key):
        wiring_of(template)


def test_an_apis_name_and_description_are_accepted() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    props = template["Resources"]["HttpApi"]["Properties"]
    props.update(Name="fixture-api", Description="the fixture's API")
    (api,) = wiring_of(template).apis
    assert api.stage == "v1"


def invoke_config(template: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = template["Resources"]["TickFunction"]["Properties"][
        "EventInvokeConfig"
    ]
    return config


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DestinationConfig", {"OnFailure": {"Type": "SQS", "Destination": "arn:aws:sqs:::q"}}),
        ("MaximumEventAgeInSeconds", 60),
        ("MaximumRetryAttempts", 3),
    ],
)
def test_event_invoke_settings_the_stack_does_not_honour_are_refused(key: str, value: Any) -> None:
    """A destination would get events the stack never sends, a maximum age drop some."""
    template = load_template(FIXTURE_TEMPLATE)
    invoke_config(template)[key] = value
    with pytest.raises(UnsupportedTemplate, match=f"TickFunction.EventInvokeConfig: .*{key}"):
        wiring_of(template)


def test_no_retries_is_read() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    invoke_config(template)["MaximumRetryAttempts"] = 0
    assert wiring_of(template).functions["TickFunction"].async_retries == 0


EVENT_FUNCTIONS = {
    "Protected": "EchoFunction",
    "Jobs": "ConsumerFunction",
    "Nightly": "TickFunction",
    "Hourly": "TickFunction",
}
ABSENT = object()


@pytest.mark.parametrize(
    ("event", "prop", "value", "reason"),
    [
        ("Protected", "RequestParameters", ["route.request.header.x"], "RequestParameters"),
        ("Protected", "Auth", {"Authorizer": "NONE", "InvokeRole": "x"}, "InvokeRole"),
        ("Protected", "Path", {"Fn::Sub": "/${Stage}/echo"}, "plain strings"),
        ("Protected", "ApiId", "a1b2c3d4e5", "ApiId"),
        ("Nightly", "State", "enabled", "ENABLED or DISABLED"),
        ("Nightly", "State", "PAUSED", "ENABLED or DISABLED"),
        ("Nightly", "Input", {"job": "nightly"}, "Input"),
        ("Nightly", "Schedule", ABSENT, "Schedule is required"),
        ("Hourly", "ScheduleExpression", ABSENT, "ScheduleExpression is required"),
        ("Hourly", "FlexibleTimeWindow", {"Mode": "FLEXIBLE"}, "FlexibleTimeWindow"),
        ("Jobs", "Queue", ABSENT, "Queue is required"),
        ("Jobs", "BatchSize", "ten", "BatchSize"),
        ("Jobs", "BatchSize", 0, "BatchSize"),
        ("Jobs", "MaximumBatchingWindowInSeconds", 301, "MaximumBatchingWindowInSeconds"),
        ("Jobs", "FunctionResponseTypes", ["ReportFailures"], "FunctionResponseTypes"),
        ("Jobs", "ScalingConfig", {"MaximumConcurrency": "many"}, "MaximumConcurrency"),
    ],
)
def test_every_events_properties_are_refused_unless_honoured(
    event: str, prop: str, value: Any, reason: str
) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    function = template["Resources"][EVENT_FUNCTIONS[event]]
    props = function["Properties"]["Events"][event]["Properties"]
    if value is ABSENT:
        del props[prop]
    else:
        props[prop] = value
    with pytest.raises(UnsupportedTemplate, match=f"{EVENT_FUNCTIONS[event]}.{event}: .*{reason}"):
        wiring_of(template)


@pytest.mark.parametrize(
    ("event", "value"),
    [
        ("Nightly", "hello"),
        ("Nightly", ""),
        ("Nightly", '{"job": "nightly"'),
        ("Nightly", '{"ratio": NaN}'),
        # Filled in place as the schedule fires: outside a string it is not JSON.
        ("Hourly", '{"at": <aws.scheduler.scheduled-time>}'),
        ("Hourly", "<aws.scheduler.execution-id>"),
    ],
)
def test_a_schedule_input_that_is_not_json_is_refused(event: str, value: str) -> None:
    """EventBridge refuses a target Input that is not JSON text: the stack does not start."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["TickFunction"]["Properties"]["Events"][event]["Properties"]["Input"] = (
        value
    )
    with pytest.raises(UnsupportedTemplate, match=f"TickFunction.{event}: Input must be JSON"):
        wiring_of(template)


@pytest.mark.parametrize(
    ("event", "value"),
    [
        ("Nightly", '"hello"'),
        ("Nightly", "[1, 2.5, null]"),
        (
            "Hourly",
            '{"at": "<aws.scheduler.scheduled-time>", "n": "<aws.scheduler.attempt-number>"}',
        ),
        ("Hourly", '"<aws.scheduler.schedule-arn>"'),
    ],
)
def test_a_schedule_input_that_is_json_is_kept_as_written(event: str, value: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["TickFunction"]["Properties"]["Events"][event]["Properties"]["Input"] = (
        value
    )
    (source,) = [s for s in wiring_of(template).schedules if s.event_name == event]
    assert source.input == value


def test_a_schedule_takes_enabled_or_state_but_not_both() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    nightly = template["Resources"]["TickFunction"]["Properties"]["Events"]["Nightly"]
    nightly["Properties"]["State"] = "DISABLED"
    assert not wiring_of(template).schedules[0].enabled
    nightly["Properties"]["Enabled"] = False
    with pytest.raises(UnsupportedTemplate, match="Enabled and State"):
        wiring_of(template)


def test_a_large_batch_needs_a_batching_window() -> None:
    """Lambda refuses a BatchSize over 10 without one."""
    template = load_template(FIXTURE_TEMPLATE)
    job_events(template)["BatchSize"] = 100
    (jobs,) = wiring_of(template).queues
    assert (jobs.batch_size, jobs.batching_window_seconds) == (100, 1)
    job_events(template)["MaximumBatchingWindowInSeconds"] = 0
    with pytest.raises(UnsupportedTemplate, match="BatchSize over 10"):
        wiring_of(template)


# Function properties that would make the deployed function behave otherwise than the local one.
NOT_EMULATED_FUNCTION_PROPERTIES = {
    "FunctionUrlConfig": {"AuthType": "NONE"},
    "SnapStart": {"ApplyOn": "PublishedVersions"},
    "AutoPublishAlias": "live",
    "ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 2},
    "DeploymentPreference": {"Type": "Canary10Percent5Minutes"},
    "FileSystemConfigs": [{"Arn": "arn:aws:elasticfilesystem:...", "LocalMountPath": "/mnt/x"}],
    "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1",
    "ImageConfig": {"Command": ["app.handler"]},
    "InlineCode": "def handler(event, context): return 1",
    "VpcConfig": {"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
    "RecursiveLoop": "Allow",
    "Handlr": "app.handler",
}


@pytest.mark.parametrize("prop", sorted(NOT_EMULATED_FUNCTION_PROPERTIES))
def test_function_properties_the_stack_does_not_emulate_stop_it(prop: str) -> None:
    """Started as if they were absent, the local function would behave otherwise than the one
    deployed: a function URL never served, an EFS path missing, a VPC's network not applied."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoFunction"]["Properties"][prop] = NOT_EMULATED_FUNCTION_PROPERTIES[
        prop
    ]
    with pytest.raises(
        UnsupportedTemplate, match=f"^EchoFunction: the local stack does not emulate {prop}$"
    ):
        wiring_of(template)


@pytest.mark.parametrize("prop", ["SnapStart", "VpcConfig"])
def test_globals_function_properties_the_stack_does_not_emulate_stop_it(prop: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["Function"][prop] = NOT_EMULATED_FUNCTION_PROPERTIES[prop]
    with pytest.raises(
        UnsupportedTemplate, match=f"^Globals.Function: the local stack does not emulate {prop}$"
    ):
        wiring_of(template)


# A function's own, which SAM refuses in Globals.Function (as it does a name it does not know).
NOT_GLOBAL_FUNCTION_PROPERTIES = {
    "Role": "arn:aws:iam::123456789012:role/shared",
    "Policies": ["AWSLambdaBasicExecutionRole"],
    "FunctionName": "shared-name",
    "Events": {"Ping": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 hour)"}}},
    "PackageType": "Zip",
    "ImageUri": NOT_EMULATED_FUNCTION_PROPERTIES["ImageUri"],
    "ImageConfig": NOT_EMULATED_FUNCTION_PROPERTIES["ImageConfig"],
    "InlineCode": NOT_EMULATED_FUNCTION_PROPERTIES["InlineCode"],
    "VersionDescription": "v2",
    "AutoPublishCodeSha256": "abc123",
    "EphemeralStorageTypo": {},
}


@pytest.mark.parametrize("prop", sorted(NOT_GLOBAL_FUNCTION_PROPERTIES))
def test_globals_function_properties_sam_refuses_there_are_invalid(prop: str) -> None:
    """SAM refuses them in Globals; locally a Globals FunctionName or Events would otherwise be
    silently ignored (every function keeps its own name, and no event is wired)."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["Function"][prop] = NOT_GLOBAL_FUNCTION_PROPERTIES[prop]
    with pytest.raises(
        InvalidTemplate, match=f"^Globals.Function: SAM does not take {prop} in Globals$"
    ):
        wiring_of(template)


@pytest.mark.parametrize(("package_type", "runs"), [("Zip", True), ("Image", False)])
def test_only_zip_packages_run(package_type: str, runs: bool) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoFunction"]["Properties"]["PackageType"] = package_type
    if runs:
        assert "EchoFunction" in wiring_of(template).functions
    else:
        with pytest.raises(UnsupportedTemplate, match="EchoFunction: PackageType 'Image'"):
            wiring_of(template)


def test_function_properties_left_out_knowingly_are_accepted_and_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["Function"]["Tracing"] = "Active"
    echo = template["Resources"]["EchoFunction"]["Properties"]
    echo.update(
        Architectures=["arm64"],
        Policies=["AWSLambdaBasicExecutionRole"],
        ReservedConcurrentExecutions=5,
        EphemeralStorage={"Size": 1024},
        LoggingConfig={"LogFormat": "JSON"},
    )
    with caplog.at_level(logging.INFO, logger="strongroom_local"):
        wiring = wiring_of(template)
    assert "EchoFunction" in wiring.functions
    said = [record.getMessage() for record in caplog.records]
    assert (
        "Globals.Function: Tracing left out locally: X-Ray: the local stack sends no traces"
        " (POWERTOOLS_TRACE_DISABLED)"
    ) in said
    assert (
        "EchoFunction: Policies left out locally: moto enforces no IAM: nothing a function"
        " calls is checked against its role"
    ) in said
    for prop in ("Architectures", "ReservedConcurrentExecutions", "EphemeralStorage"):
        assert any(line.startswith(f"EchoFunction: {prop} left out locally: ") for line in said)


def test_a_property_given_as_no_value_is_not_said_to_be_left_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`!If [Cond, x, !Ref AWS::NoValue]` with Cond false: the function has no such property,
    so the start-up log does not claim one was left out."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Conditions"] = {"Never": {"Fn::Equals": ["a", "b"]}}
    echo = template["Resources"]["EchoFunction"]["Properties"]
    echo.update(
        ReservedConcurrentExecutions={"Fn::If": ["Never", 5, {"Ref": "AWS::NoValue"}]},
        Tags={"Ref": "AWS::NoValue"},
        EphemeralStorage={"Fn::If": ["Never", {"Ref": "AWS::NoValue"}, {"Size": 1024}]},
    )
    with caplog.at_level(logging.INFO, logger="strongroom_local"):
        wiring = wiring_of(template)
    assert "EchoFunction" in wiring.functions
    said = [record.getMessage() for record in caplog.records]
    assert not [line for line in said if "ReservedConcurrentExecutions left out" in line]
    assert not [line for line in said if "Tags left out" in line]
    ephemeral = "EchoFunction: EphemeralStorage left out locally: "
    assert any(line.startswith(ephemeral) for line in said)


# ---- Globals.Function merged as SAM merges it ----------------------------------------------


def stack_of(template: dict[str, Any]) -> tuple[Stack, Wiring]:
    with mock_aws():
        stack = provision(
            boto3.Session(region_name="us-east-1"), template=template, parameters=PARAMETERS
        )
        return stack, read_wiring(stack, FIXTURES)


def test_globals_maps_merge_key_by_key_into_a_function_s_own() -> None:
    """SAM merges a map of Globals.Function into the function's key by key: a function naming
    only its dead-letter queue's TargetArn keeps the Type the Globals give (SQS)."""
    template = load_template(FIXTURE_TEMPLATE)
    tick = template["Resources"]["TickFunction"]["Properties"]
    template["Globals"]["Function"]["DeadLetterQueue"] = {
        "Type": "SQS",
        "TargetArn": {"Fn::GetAtt": ["JobDeadLetterQueue", "Arn"]},
    }
    tick["DeadLetterQueue"] = {"TargetArn": {"Fn::GetAtt": ["TickDeadLetterQueue", "Arn"]}}
    template["Globals"]["Function"]["Environment"]["Variables"]["SHARED"] = "from-globals"
    tick["Environment"]["Variables"]["RECORD_DIR"] = "/tick-records"
    stack, wiring = stack_of(template)
    assert wiring.functions["TickFunction"].dead_letter_queue_arn == (
        "arn:aws:sqs:us-east-1:123456789012:strongroom-local-TickDeadLetterQueue"
    )
    # The Globals' own value where the function names none.
    assert wiring.functions["EchoFunction"].dead_letter_queue_arn == (
        "arn:aws:sqs:us-east-1:123456789012:strongroom-local-JobDeadLetterQueue"
    )
    # Environment.Variables: both kept; the function's value wins where both name one.
    environment = stack.function_environment("TickFunction")
    assert environment["SHARED"] == "from-globals"
    assert environment["TICK_FAILS"] == "no"
    assert environment["RECORD_DIR"] == "/tick-records"
    assert stack.function_environment("EchoFunction")["RECORD_DIR"] == "/r"


def test_globals_lists_come_first_and_primitives_are_overridden() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["ExtraLayer"] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {"ContentUri": "shapes/"},
    }
    echo = template["Resources"]["EchoFunction"]["Properties"]
    echo["Layers"] = [{"Ref": "ExtraLayer"}]
    echo["MemorySize"] = 1024
    _, wiring = stack_of(template)
    assert wiring.functions["EchoFunction"].layer_dirs == (
        (REPO_ROOT / "layers" / "common").resolve(),
        FIXTURES / "shapes",
    )
    assert wiring.functions["EchoFunction"].memory_mb == 1024
    assert wiring.functions["ShapesFunction"].memory_mb == 256


def test_an_intrinsic_is_a_value_not_a_map_to_merge() -> None:
    """SAM takes an intrinsic function as a whole value: the function's Fn::If replaces the
    Globals' variables rather than being merged into them as a key named Fn::If."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Conditions"] = {"Always": {"Fn::Equals": ["a", "a"]}}
    template["Resources"]["EchoFunction"]["Properties"]["Environment"] = {
        "Variables": {"Fn::If": ["Always", {"ONLY": "mine"}, {"ONLY": "not taken"}]}
    }
    stack, _ = stack_of(template)
    assert stack.function_environment("EchoFunction") == {"ONLY": "mine"}


# ---- IgnoreGlobals: SAM's resource attribute that keeps Globals.Function off a function --------


def test_ignore_globals_star_takes_none_of_the_globals() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    echo = template["Resources"]["EchoFunction"]
    echo["IgnoreGlobals"] = "*"
    echo["Properties"]["Runtime"] = "python3.12"
    stack, wiring = stack_of(template)
    function = wiring.functions["EchoFunction"]
    # Lambda's defaults, no layer, and only its own variables.
    assert (function.timeout_seconds, function.memory_mb) == (3, 128)
    assert function.layer_dirs == ()
    assert function.runtime == "python3.12"
    assert stack.function_environment("EchoFunction") == {"FIXTURE_NAME": "echo"}
    # The other functions keep the Globals.
    assert wiring.functions["ShapesFunction"].memory_mb == 256


def test_ignore_globals_lists_the_globals_a_function_does_not_take() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoFunction"]["IgnoreGlobals"] = ["Timeout", "Layers"]
    stack, wiring = stack_of(template)
    function = wiring.functions["EchoFunction"]
    assert (function.timeout_seconds, function.memory_mb) == (3, 256)
    assert function.layer_dirs == ()
    assert function.runtime == "python3.13"
    assert stack.function_environment("EchoFunction")["RECORD_DIR"] == "/r"


@pytest.mark.parametrize(
    ("ignore", "message"),
    [
        (["Tracing"], "IgnoreGlobals names 'Tracing', which Globals.Function does not set"),
        ("Timeout", 'IgnoreGlobals must be "\\*" or a list'),
        ({"Timeout": True}, 'IgnoreGlobals must be "\\*" or a list'),
    ],
)
def test_an_ignore_globals_sam_refuses_is_invalid(ignore: Any, message: str) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoFunction"]["IgnoreGlobals"] = ignore
    with pytest.raises(InvalidTemplate, match=f"^EchoFunction: {message}"):
        stack_of(template)


def test_ignore_globals_among_the_properties_is_invalid() -> None:
    """SAM reads it beside Properties and refuses it among them."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["EchoFunction"]["Properties"]["IgnoreGlobals"] = "*"
    with pytest.raises(InvalidTemplate, match="IgnoreGlobals is a resource attribute"):
        stack_of(template)


# ---- ReservedConcurrentExecutions 0: a function switched off on AWS --------------------------


@pytest.mark.parametrize(
    "reserved",
    [
        0,
        "0",  # a Number parameter's value
        {"Fn::If": ["Always", 0, {"Ref": "AWS::NoValue"}]},
    ],
    ids=["zero", "zero-as-text", "zero-by-condition"],
)
def test_a_function_with_no_reserved_concurrency_is_refused(reserved: Any) -> None:
    """AWS throttles every invocation of it; the local stack would run it."""
    template = load_template(FIXTURE_TEMPLATE)
    template["Conditions"] = {"Always": {"Fn::Equals": ["a", "a"]}}
    template["Resources"]["TickFunction"]["Properties"]["ReservedConcurrentExecutions"] = reserved
    with pytest.raises(
        UnsupportedTemplate, match=r"^TickFunction: ReservedConcurrentExecutions 0 turns"
    ):
        wiring_of(template)


def test_no_reserved_concurrency_in_globals_is_refused_for_the_functions_taking_it() -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Globals"]["Function"]["ReservedConcurrentExecutions"] = 0
    with pytest.raises(UnsupportedTemplate, match=r"^EchoFunction: ReservedConcurrentExecutions"):
        wiring_of(template)
    for logical_id in ("EchoFunction", "ShapesFunction", "ConsumerFunction", "TickFunction"):
        template["Resources"][logical_id]["IgnoreGlobals"] = ["ReservedConcurrentExecutions"]
    assert "TickFunction" in wiring_of(template).functions


@pytest.mark.parametrize(
    "reserved", [5, {"Fn::If": ["Never", 0, {"Ref": "AWS::NoValue"}]}, {"Ref": "AWS::NoValue"}]
)
def test_other_reserved_concurrency_is_left_out(reserved: Any) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Conditions"] = {"Never": {"Fn::Equals": ["a", "b"]}}
    template["Resources"]["TickFunction"]["Properties"]["ReservedConcurrentExecutions"] = reserved
    assert "TickFunction" in wiring_of(template).functions


# ---- DeadLetterQueue given by an intrinsic ---------------------------------------------------


@pytest.mark.parametrize(("condition", "has_queue"), [("Always", True), ("Never", False)])
def test_a_dead_letter_queue_given_by_a_condition_is_resolved_first(
    condition: str, has_queue: bool, caplog: pytest.LogCaptureFixture
) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Conditions"] = {
        "Always": {"Fn::Equals": ["a", "a"]},
        "Never": {"Fn::Equals": ["a", "b"]},
    }
    queue = {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["TickDeadLetterQueue", "Arn"]}}
    template["Resources"]["TickFunction"]["Properties"]["DeadLetterQueue"] = {
        "Fn::If": [condition, queue, {"Ref": "AWS::NoValue"}]
    }
    with caplog.at_level(logging.WARNING, logger="strongroom_local"):
        tick = wiring_of(template).functions["TickFunction"]
    assert tick.dead_letter_queue_arn == (
        "arn:aws:sqs:us-east-1:123456789012:strongroom-local-TickDeadLetterQueue"
        if has_queue
        else None
    )
    assert not [r for r in caplog.records if "dead-letter" in r.getMessage()]


@pytest.mark.parametrize("queue", [{"Type": "SQS"}, {"TargetArn": "arn:aws:sqs:::q"}, "q"])
def test_a_dead_letter_queue_without_type_and_target_is_invalid(queue: Any) -> None:
    template = load_template(FIXTURE_TEMPLATE)
    template["Resources"]["TickFunction"]["Properties"]["DeadLetterQueue"] = queue
    with pytest.raises(InvalidTemplate, match=r"^TickFunction: DeadLetterQueue takes"):
        wiring_of(template)
