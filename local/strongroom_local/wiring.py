"""What the template wires together: functions, their HTTP routes, schedules and SQS sources.

Read from the template once the stack is provisioned, so every `Ref` and `GetAtt` resolves to
the local resources. Nothing here is specific to one function: a function added to the template
is served, scheduled or fed from its queue by the local stack without further wiring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from strongroom.schedules import ScheduleExpression, parse_schedule_expression
from strongroom_local.exceptions import InvalidTemplate, UnsupportedTemplate
from strongroom_local.provision import Stack
from strongroom_local.routes import (
    HTTP_API_TYPE,
    IMPLICIT_API,
    function_properties,
    http_api_properties,
)
from strongroom_local.template import (
    cloudformation_bool,
    cloudformation_int,
    resources_of_type,
    scalar_text,
)

log = logging.getLogger("strongroom_local")

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
DEFAULT_ROUTE = "$default"
DEFAULT_STAGE = "$default"
# HTTP APIs wait this long for an integration at most, and by default (TimeoutInMillis).
MAX_INTEGRATION_TIMEOUT_MS = 30_000
# EventBridge Scheduler's context attributes, filled in a ScheduleV2's Input as it fires.
SCHEDULER_PLACEHOLDERS = (
    "<aws.scheduler.schedule-arn>",
    "<aws.scheduler.scheduled-time>",
    "<aws.scheduler.execution-id>",
    "<aws.scheduler.attempt-number>",
)


@dataclass(frozen=True)
class LocalFunction:
    """A function of the template, as the local runtime starts it."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    layer_dirs: tuple[Path, ...]
    timeout_seconds: int
    memory_mb: int
    # Asynchronous invocations (schedules): Lambda's retries after a failure, and the SQS
    # dead-letter queue that gets an event every attempt failed (None: dropped).
    async_retries: int = 2
    dead_letter_queue_arn: str | None = None
    # The template's Runtime: what the worker's imports are judged against.
    runtime: str = "python3.13"


@dataclass(frozen=True)
class JwtAuthorizerConfig:
    """A JWT authorizer of an HttpApi, with its issuer and audiences resolved."""

    name: str
    issuer: str
    audiences: tuple[str, ...]
    identity_header: str
    # What a route using it requires when the route names no AuthorizationScopes of its own.
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event of a function."""

    function_id: str
    event_name: str
    method: str
    path: str
    authorizer: str | None
    scopes: tuple[str, ...] = ()
    # API Gateway answers 503 when the function has not answered by then (TimeoutInMillis).
    timeout_ms: int = MAX_INTEGRATION_TIMEOUT_MS

    @property
    def route_key(self) -> str:
        return DEFAULT_ROUTE if self.path == DEFAULT_ROUTE else f"{self.method} {self.path}"

    @property
    def protected(self) -> bool:
        return self.authorizer is not None


@dataclass(frozen=True)
class HttpApiDefinition:
    """An HTTP API: its id, stage (a path prefix unless `$default`), authorizers and routes."""

    logical_id: str
    api_id: str
    stage: str
    authorizers: Mapping[str, JwtAuthorizerConfig]
    routes: tuple[HttpRoute, ...]


@dataclass(frozen=True)
class ScheduleSource:
    """A Schedule (EventBridge rule) or ScheduleV2 (EventBridge Scheduler) event."""

    function_id: str
    event_name: str
    kind: str
    expression: ScheduleExpression
    input: str | None
    enabled: bool
    arn: str


@dataclass(frozen=True)
class SqsSource:
    """An SQS event source mapping."""

    function_id: str
    event_name: str
    queue_arn: str
    batch_size: int
    batching_window_seconds: int
    report_batch_item_failures: bool
    enabled: bool
    # ScalingConfig.MaximumConcurrency: batches of this mapping run at once (None: no cap).
    maximum_concurrency: int | None = None


@dataclass(frozen=True)
class Wiring:
    functions: Mapping[str, LocalFunction]
    apis: tuple[HttpApiDefinition, ...]
    schedules: tuple[ScheduleSource, ...]
    queues: tuple[SqsSource, ...]

    def route_count(self) -> int:
        return sum(len(api.routes) for api in self.apis)


def _api_id(stack_name: str, logical_id: str) -> str:
    """A stable fake API id, shaped like API Gateway's (10 lower-case characters)."""
    return hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:10]


# Event types wired here (routes, schedules, SQS pollers); any other would be dropped while
# AWS invokes the function on it.
_WIRED_EVENT_TYPES = ("HttpApi", "Schedule", "ScheduleV2", "SQS")


def _check_types(stack: Stack) -> None:
    """Refuse a function event the stack would otherwise silently leave out (provision()
    refuses a resource type the stack neither creates nor runs)."""
    for logical_id, resource in resources_of_type(
        stack.template, FUNCTION_TYPE, stack.resolver
    ).items():
        for event_name, event in (resource.get("Properties", {}).get("Events") or {}).items():
            if event.get("Type") not in _WIRED_EVENT_TYPES:
                raise UnsupportedTemplate(
                    f"{logical_id}.{event_name}: {event.get('Type')} events are not emulated "
                    f"(only {', '.join(_WIRED_EVENT_TYPES)})"
                )


# AWS::Serverless::Function properties the local stack runs as written (on a function, and in
# Globals.Function those SAM takes there), and those it leaves out knowingly, each with why
# that changes nothing a request or an event meets locally. Any other stops the stack at start:
# a function URL, SnapStart, an alias (provisioned concurrency, traffic shifting), a VPC, an
# EFS mount or a container image would each make the deployed function behave otherwise than
# the local one.
_FUNCTION_PROPERTIES = frozenset(
    {
        "CodeUri",
        "DeadLetterQueue",
        "Environment",
        "EventInvokeConfig",
        "Events",
        "FunctionName",
        "Handler",
        "Layers",
        "MemorySize",
        "PackageType",  # Zip only (_check_function_properties)
        "Runtime",
        "Timeout",
    }
)
_NO_IAM = "moto enforces no IAM: nothing a function calls is checked against its role"
_FUNCTION_PROPERTIES_LEFT_OUT = {
    "Architectures": "the CPU Lambda runs on: the workers run this machine's Python and packages",
    "AssumeRolePolicyDocument": _NO_IAM,
    "CodeSigningConfigArn": "checks a package's signature at deploy; the workers run the code",
    "Description": "text for people",
    "EphemeralStorage": "the size of /tmp in Lambda: the workers' /tmp is this machine's",
    "KmsKeyArn": "encrypts the environment at rest in Lambda; a function reads it in plain",
    "LoggingConfig": "where and how Lambda ships logs: functions log to the stack's output",
    "PermissionsBoundary": _NO_IAM,
    "Policies": _NO_IAM,
    "PropagateTags": "labels only",
    "ReservedConcurrentExecutions": (
        "a share of the account's concurrency: locally at most --max-workers invocations of a"
        " function run at once"
    ),
    "Role": _NO_IAM,
    "RolePath": _NO_IAM,
    "RuntimeManagementConfig": "which runtime patch Lambda runs: the workers run local Python",
    "Tags": "labels only",
    "Tracing": "X-Ray: the local stack sends no traces (POWERTOOLS_TRACE_DISABLED)",
}


# What SAM takes in Globals.Function (its globals plugin, samtranslator/plugins/globals): every
# function property but Role, Policies, FunctionName, Events, PackageType, the image and inline
# code properties, VersionDescription and AutoPublishCodeSha256. SAM refuses any other there.
_GLOBALS_FUNCTION_PROPERTIES = frozenset(
    {
        "Handler",
        "Runtime",
        "CodeUri",
        "DeadLetterQueue",
        "Description",
        "MemorySize",
        "Timeout",
        "VpcConfig",
        "Environment",
        "Tags",
        "PropagateTags",
        "Tracing",
        "KmsKeyArn",
        "AutoPublishAlias",
        "AutoPublishAliasAllProperties",
        "Layers",
        "DeploymentPreference",
        "RolePath",
        "PermissionsBoundary",
        "ReservedConcurrentExecutions",
        "ProvisionedConcurrencyConfig",
        "AssumeRolePolicyDocument",
        "EventInvokeConfig",
        "FileSystemConfigs",
        "CodeSigningConfigArn",
        "Architectures",
        "SnapStart",
        "EphemeralStorage",
        "FunctionUrlConfig",
        "RuntimeManagementConfig",
        "LoggingConfig",
        "RecursiveLoop",
        "SourceKMSKeyArn",
        "TenancyConfig",
        "DurableConfig",
        "CapacityProviderConfig",
        "FunctionScalingConfig",
        "PublishToLatestPublished",
        "VersionDeletionPolicy",
    }
)


def _check_function_properties(stack: Stack) -> None:
    """Refuse a function property (or one of Globals.Function) the stack neither runs as
    written nor knowingly leaves out; say which it leaves out."""
    known = {*_FUNCTION_PROPERTIES, *_FUNCTION_PROPERTIES_LEFT_OUT}
    globals_fn = stack.template.get("Globals", {}).get("Function", {}) or {}
    # Refused by SAM before anything is deployed; locally a Globals FunctionName or Events
    # would otherwise be silently ignored.
    not_global = sorted(set(globals_fn) - _GLOBALS_FUNCTION_PROPERTIES)
    if not_global:
        raise InvalidTemplate(
            f"Globals.Function: SAM does not take {', '.join(not_global)} in Globals"
        )
    owners = {"Globals.Function": globals_fn}
    for logical_id, resource in resources_of_type(
        stack.template, FUNCTION_TYPE, stack.resolver
    ).items():
        owners[logical_id] = resource.get("Properties", {}) or {}
        # SAM refuses it there; read beside Properties (routes.function_properties).
        if "IgnoreGlobals" in owners[logical_id]:
            raise InvalidTemplate(
                f"{logical_id}: IgnoreGlobals is a resource attribute, beside Properties"
            )
    for where, props in owners.items():
        _supported(props, known, where)
        for name in sorted(set(props) & set(_FUNCTION_PROPERTIES_LEFT_OUT)):
            if _is_no_value(stack, props[name]):
                continue
            log.info(
                "%s: %s left out locally: %s", where, name, _FUNCTION_PROPERTIES_LEFT_OUT[name]
            )
        if "PackageType" in props:
            package_type = stack.resolver.resolve(props["PackageType"])
            if package_type != "Zip":
                raise UnsupportedTemplate(
                    f"{where}: PackageType {package_type!r} is not emulated (only Zip: CodeUri)"
                )


def _is_no_value(stack: Stack, value: Any) -> bool:
    """Whether a property is `AWS::NoValue`, directly or as the chosen branch of an Fn::If:
    then the function has no such property. Only the condition is evaluated, not the value."""
    while isinstance(value, dict) and list(value) == ["Fn::If"]:
        branches = value["Fn::If"]
        if not (isinstance(branches, list) and len(branches) == 3):
            return False  # malformed: left to the resolver to refuse where it reads it
        value = branches[1] if stack.resolver.condition(str(branches[0])) else branches[2]
    return bool(value == {"Ref": "AWS::NoValue"})


def _events(resource: Mapping[str, Any], event_type: str) -> dict[str, dict[str, Any]]:
    events = resource.get("Properties", {}).get("Events", {}) or {}
    return {
        name: event.get("Properties", {}) or {}
        for name, event in events.items()
        if event.get("Type") == event_type
    }


def register_references(stack: Stack) -> None:
    """Give functions, layers and HTTP APIs the Ref/GetAtt values their deployment would."""
    resolver = stack.resolver
    region, account = resolver.refs["AWS::Region"], resolver.refs["AWS::AccountId"]
    stack_name = resolver.refs["AWS::StackName"]
    for logical_id, resource in resources_of_type(stack.template, FUNCTION_TYPE, resolver).items():
        name = resource.get("Properties", {}).get("FunctionName")
        name = str(resolver.resolve(name)) if name else f"{stack_name}-{logical_id}"
        resolver.refs[logical_id] = name
        resolver.attributes[(logical_id, "Arn")] = (
            f"arn:aws:lambda:{region}:{account}:function:{name}"
        )
    for logical_id in resources_of_type(stack.template, LAYER_TYPE, resolver):
        arn = f"arn:aws:lambda:{region}:{account}:layer:{stack_name}-{logical_id}:1"
        resolver.refs[logical_id] = arn
    for logical_id in [*resources_of_type(stack.template, HTTP_API_TYPE, resolver), IMPLICIT_API]:
        resolver.refs.setdefault(logical_id, _api_id(stack_name, logical_id))


def _function(stack: Stack, logical_id: str, template_dir: Path) -> LocalFunction:
    props = function_properties(stack.template, logical_id)
    resolver = stack.resolver
    _refuse_switched_off(stack, logical_id, props)
    code_uri, handler = props.get("CodeUri"), props.get("Handler")
    if not isinstance(code_uri, str) or not isinstance(handler, str):
        raise UnsupportedTemplate(f"{logical_id}: CodeUri and Handler must be plain strings")
    layer_dirs = []
    # SAM appends a function's own Layers to the global ones (merge_globals).
    for layer in props.get("Layers", []):
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        layer_resource = stack.template["Resources"].get(ref) if ref else None
        if layer_resource is None or layer_resource.get("Type") != LAYER_TYPE:
            log.warning("%s: layer %s is not in the template; skipped locally", logical_id, layer)
            continue
        resolver.resolve(layer)  # refuses a layer whose Condition is false: it does not exist
        content = layer_resource.get("Properties", {}).get("ContentUri")
        if not isinstance(content, str):
            raise UnsupportedTemplate(f"{ref}: ContentUri must be a local folder")
        layer_dirs.append((template_dir / content).resolve())
    return LocalFunction(
        logical_id=logical_id,
        name=stack.ref(logical_id),
        arn=str(stack.attribute(logical_id, "Arn")),
        code_dir=(template_dir / code_uri).resolve(),
        handler=handler,
        layer_dirs=tuple(layer_dirs),
        timeout_seconds=int(resolver.resolve(props.get("Timeout", 3))),
        memory_mb=int(resolver.resolve(props.get("MemorySize", 128))),
        async_retries=_async_retries(stack, logical_id, props),
        dead_letter_queue_arn=_dead_letter_queue_arn(stack, logical_id, props),
        runtime=_python_runtime(logical_id, resolver.resolve(props.get("Runtime"))),
    )


def _refuse_switched_off(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> None:
    """ReservedConcurrentExecutions 0 turns the function off on AWS: every invocation of it is
    throttled. Locally it would run, so that is refused; any other value is left out
    (_FUNCTION_PROPERTIES_LEFT_OUT)."""
    where = f"{logical_id}: ReservedConcurrentExecutions"
    # Often an Fn::If whose other branch is AWS::NoValue (None): then the function has none.
    reserved = stack.resolver.resolve(props.get("ReservedConcurrentExecutions"))
    if reserved is not None and cloudformation_int(reserved, where) == 0:
        raise UnsupportedTemplate(
            f"{where} 0 turns the function off on AWS (every invocation is throttled);"
            " the local stack would run it"
        )


def _async_retries(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> int:
    """Lambda's retries of a failed asynchronous invocation (EventInvokeConfig).

    Only MaximumRetryAttempts is emulated: destinations and a maximum event age would send or
    drop events where the stack does neither.
    """
    where = f"{logical_id}.EventInvokeConfig"
    config = stack.resolver.resolve(props.get("EventInvokeConfig") or {})
    value = _supported(config, {"MaximumRetryAttempts"}, where).get("MaximumRetryAttempts", 2)
    if isinstance(value, bool) or str(value) not in ("0", "1", "2"):
        raise UnsupportedTemplate(f"{where}: MaximumRetryAttempts must be 0, 1 or 2")
    return int(value)


def _python_runtime(logical_id: str, runtime: Any) -> str:
    if not isinstance(runtime, str) or not re.fullmatch(r"python3\.\d{1,2}", runtime):
        raise UnsupportedTemplate(f"{logical_id}: only Python runtimes run locally ({runtime!r})")
    return runtime


def _dead_letter_queue_arn(stack: Stack, logical_id: str, props: Mapping[str, Any]) -> str | None:
    # Resolved first: an Fn::If may give the queue, or none (AWS::NoValue).
    target = stack.resolver.resolve(props.get("DeadLetterQueue"))
    if target is None:
        return None
    # SAM refuses one without both.
    if not isinstance(target, Mapping) or not {"Type", "TargetArn"} <= set(target):
        raise InvalidTemplate(f"{logical_id}: DeadLetterQueue takes a Type and a TargetArn")
    if target.get("Type") != "SQS":
        log.warning("%s: only an SQS dead-letter queue is emulated; events are dropped", logical_id)
        return None
    return scalar_text(target["TargetArn"], f"{logical_id}: DeadLetterQueue.TargetArn")


def _authorizers(stack: Stack, api_props: Mapping[str, Any]) -> dict[str, JwtAuthorizerConfig]:
    configs = {}
    for name, spec in (api_props.get("Auth", {}).get("Authorizers", {}) or {}).items():
        if "JwtConfiguration" not in spec:
            raise UnsupportedTemplate(f"authorizer {name}: only JWT authorizers are emulated")
        _supported(spec, _JWT_AUTHORIZER, f"authorizer {name}")
        jwt_config = stack.resolver.resolve(spec["JwtConfiguration"])
        _supported(jwt_config, {"issuer", "audience"}, f"authorizer {name}: JwtConfiguration")
        source = str(spec.get("IdentitySource", "$request.header.Authorization"))
        prefix = "$request.header."
        if not source.startswith(prefix):
            raise UnsupportedTemplate(f"authorizer {name}: identity source must be a header")
        audience = jwt_config.get("audience", [])
        scopes = stack.resolver.resolve(spec.get("AuthorizationScopes", [])) or []
        configs[name] = JwtAuthorizerConfig(
            name=name,
            issuer=str(jwt_config["issuer"]),
            audiences=tuple(
                str(a) for a in ([audience] if isinstance(audience, str) else audience)
            ),
            identity_header=source[len(prefix) :].lower(),
            scopes=tuple(str(s) for s in scopes),
        )
    return configs


# Globals.HttpApi keys the stack reads (Auth) or that change nothing a request meets locally
# (logs, throttling, tags, deployment checks). CORS, stage variables and custom domains would
# change answers, events or URLs: a template setting them for every API is refused.
_HTTP_API_GLOBALS = {
    "Auth",
    "AccessLogSettings",
    "DefaultRouteSettings",
    "RouteSettings",
    "FailOnWarnings",
    "Tags",
    "PropagateTags",
}
# An API's own properties: the same, its stage (read) and names that change nothing locally.
_HTTP_API_PROPERTIES = _HTTP_API_GLOBALS | {"StageName", "Name", "Description"}
# What the stack reads of Auth; an IAM authorizer, say, would refuse requests it lets through.
_HTTP_API_AUTH = {"DefaultAuthorizer", "Authorizers"}
_JWT_AUTHORIZER = {"JwtConfiguration", "IdentitySource", "AuthorizationScopes"}
# An OpenAPI definition brings routes, integrations and payload formats the stack does not read.
_HTTP_API_REFUSED = ("DefinitionBody", "DefinitionUri")


def _integration_timeout_ms(props: Mapping[str, Any], where: str) -> int:
    value = props.get("TimeoutInMillis", MAX_INTEGRATION_TIMEOUT_MS)
    if isinstance(value, bool) or not str(value).isdigit():
        raise UnsupportedTemplate(f"{where}: TimeoutInMillis must be a whole number")
    if not 50 <= int(value) <= MAX_INTEGRATION_TIMEOUT_MS:
        raise UnsupportedTemplate(f"{where}: TimeoutInMillis must be 50 to 30000 for an HttpApi")
    return int(value)


def _api_properties(stack: Stack) -> dict[str, dict[str, Any]]:
    globals_api = stack.template.get("Globals", {}).get("HttpApi", {}) or {}
    _supported(globals_api, _HTTP_API_GLOBALS, "Globals.HttpApi")
    api_props = http_api_properties(stack.template, stack.resolver)
    for logical_id, api in api_props.items():
        for key in _HTTP_API_REFUSED:
            if key in api:
                raise UnsupportedTemplate(f"{logical_id}: the local stack does not read {key}")
        _supported(api, _HTTP_API_PROPERTIES, logical_id)
        _supported(api.get("Auth") or {}, _HTTP_API_AUTH, f"{logical_id}.Auth")
    return api_props


def _served(route: HttpRoute, authorizers: Mapping[str, JwtAuthorizerConfig]) -> HttpRoute:
    """The route as SAM writes it: its authorizer's AuthorizationScopes unless it names some."""
    if route.authorizer is None:
        return route
    if route.authorizer not in authorizers:
        raise UnsupportedTemplate(f"{route.route_key}: unknown authorizer")
    return route if route.scopes else replace(route, scopes=authorizers[route.authorizer].scopes)


# HttpApi event properties the stack reads, and RouteSettings (throttling, metrics, logs),
# which changes nothing a request meets locally.
_HTTP_EVENT_PROPERTIES = {
    "ApiId",
    "Method",
    "Path",
    "Auth",
    "TimeoutInMillis",
    "PayloadFormatVersion",
    "RouteSettings",
}


def _http_route(
    stack: Stack,
    api_props: Mapping[str, Mapping[str, Any]],
    function_id: str,
    event_name: str,
    raw: Mapping[str, Any],
) -> tuple[str, HttpRoute]:
    """The API an HttpApi event is served on (logical id), and its route."""
    where = f"{function_id}.{event_name}"
    # Its ApiId resolves to the API's id; the logical id it names is what is looked up.
    api_id = raw.get("ApiId")
    others = {key: value for key, value in raw.items() if key != "ApiId"}
    props = _supported(stack.resolver.resolve(others), _HTTP_EVENT_PROPERTIES, where)
    # SAM's default; API Gateway's 1.0 format is another event shape altogether.
    if props.get("PayloadFormatVersion", "2.0") != "2.0":
        raise UnsupportedTemplate(f"{where}: only PayloadFormatVersion 2.0 is emulated")
    if api_id is None:
        api = IMPLICIT_API
    elif isinstance(api_id, dict) and list(api_id) == ["Ref"]:
        api = str(api_id["Ref"])
    else:
        raise UnsupportedTemplate(f"{where}: ApiId must be a Ref to an HttpApi of the template")
    # Not one when its Condition is false: then the API does not exist.
    if api not in api_props:
        raise UnsupportedTemplate(f"{where}: ApiId {api} is not an HttpApi of the stack")
    # The route reader (routes.py, the OpenAPI check) reads these as written.
    method, path = raw.get("Method", "ANY"), raw.get("Path", DEFAULT_ROUTE)
    if not isinstance(method, str) or not isinstance(path, str):
        raise UnsupportedTemplate(f"{where}: Method and Path must be plain strings")
    auth = _supported(props.get("Auth") or {}, {"Authorizer", "AuthorizationScopes"}, where)
    authorizer = auth.get("Authorizer", api_props[api].get("Auth", {}).get("DefaultAuthorizer"))
    scopes = auth.get("AuthorizationScopes") or []
    return api, HttpRoute(
        function_id=function_id,
        event_name=event_name,
        method=method.upper(),
        path=path,
        authorizer=None if authorizer in (None, "NONE") else scalar_text(authorizer, where),
        scopes=tuple(scalar_text(scope, f"{where}: AuthorizationScopes") for scope in scopes),
        timeout_ms=_integration_timeout_ms(props, where),
    )


def _apis(stack: Stack) -> tuple[HttpApiDefinition, ...]:
    template = stack.template
    api_props = _api_properties(stack)
    routes: dict[str, list[HttpRoute]] = {logical_id: [] for logical_id in api_props}
    for function_id, resource in resources_of_type(template, FUNCTION_TYPE, stack.resolver).items():
        for event_name, raw in _events(resource, "HttpApi").items():
            api_logical_id, route = _http_route(stack, api_props, function_id, event_name, raw)
            routes[api_logical_id].append(route)
    definitions = []
    for logical_id, api in api_props.items():
        if not routes[logical_id] and logical_id == IMPLICIT_API:
            continue
        authorizers = _authorizers(stack, api)
        stage = stack.resolver.resolve(api.get("StageName", DEFAULT_STAGE))
        definitions.append(
            HttpApiDefinition(
                logical_id=logical_id,
                api_id=stack.ref(logical_id),
                stage=str(stage),
                authorizers=authorizers,
                routes=tuple(_served(route, authorizers) for route in routes[logical_id]),
            )
        )
    return tuple(definitions)


def _enabled(props: Mapping[str, Any], where: str) -> bool:
    if "State" not in props:
        return cloudformation_bool(props.get("Enabled", True), f"{where}: Enabled")
    # SAM takes one or the other; EventBridge takes only these two states for a schedule.
    if "Enabled" in props:
        raise UnsupportedTemplate(f"{where}: Enabled and State cannot both be set")
    if props["State"] not in ("ENABLED", "DISABLED"):
        raise UnsupportedTemplate(f"{where}: State must be ENABLED or DISABLED")
    return bool(props["State"] == "ENABLED")


def _whole_number(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not str(value).isdigit() or not low <= int(value) <= high:
        raise UnsupportedTemplate(f"{where} must be a whole number from {low} to {high}")
    return int(value)


# Event properties the local stack honours; any other would be silently ignored here while AWS
# acts on it (a filter deletes what it does not match, a retry policy changes retries), so a
# template using one is refused rather than run differently.
_SCHEDULE_PROPERTIES = {
    "Schedule": {"Schedule", "Name", "Description", "Enabled", "State", "Input"},
    "ScheduleV2": {
        "ScheduleExpression",
        "ScheduleExpressionTimezone",
        "Name",
        "GroupName",
        "Description",
        "State",
        "Input",
        # Identity and encryption of the schedule itself: nothing the invocation sees.
        "RoleArn",
        "KmsKeyArn",
        "PermissionsBoundary",
        "OmitName",
    },
}
_SQS_PROPERTIES = {
    "Queue",
    "BatchSize",
    "Enabled",
    "FunctionResponseTypes",
    "MaximumBatchingWindowInSeconds",
    "ScalingConfig",
}


def _supported(props: Mapping[str, Any], known: set[str], where: str) -> Mapping[str, Any]:
    unknown = sorted(set(props) - known)
    if unknown:
        raise UnsupportedTemplate(f"{where}: the local stack does not emulate {', '.join(unknown)}")
    return props


def _maximum_concurrency(props: Mapping[str, Any], where: str) -> int | None:
    scaling = props.get("ScalingConfig")
    if scaling is None:
        return None
    if not isinstance(scaling, Mapping) or set(scaling) - {"MaximumConcurrency"}:
        raise UnsupportedTemplate(f"{where}: ScalingConfig takes only MaximumConcurrency")
    value = scaling.get("MaximumConcurrency")
    if value is None:
        return None
    # Lambda accepts 2 to 1000.
    return _whole_number(value, f"{where}: MaximumConcurrency", 2, 1000)


def _schedules(stack: Stack) -> tuple[ScheduleSource, ...]:
    resolver = stack.resolver
    region, account = resolver.refs["AWS::Region"], resolver.refs["AWS::AccountId"]
    stack_name = resolver.refs["AWS::StackName"]
    sources = []
    for function_id, resource in resources_of_type(stack.template, FUNCTION_TYPE, resolver).items():
        for kind in ("Schedule", "ScheduleV2"):
            for event_name, raw in _events(resource, kind).items():
                where = f"{function_id}.{event_name}"
                props = _supported(resolver.resolve(raw), _SCHEDULE_PROPERTIES[kind], where)
                required = "Schedule" if kind == "Schedule" else "ScheduleExpression"
                if required not in props:
                    raise UnsupportedTemplate(f"{where}: {required} is required")
                name = props.get("Name") or f"{stack_name}-{function_id}{event_name}"
                if kind == "Schedule":
                    expression = parse_schedule_expression(str(props["Schedule"]))
                    arn = f"arn:aws:events:{region}:{account}:rule/{name}"
                else:
                    expression = parse_schedule_expression(
                        str(props["ScheduleExpression"]),
                        timezone=props.get("ScheduleExpressionTimezone"),
                        allow_at=True,
                    )
                    group = props.get("GroupName", "default")
                    arn = f"arn:aws:scheduler:{region}:{account}:schedule/{group}/{name}"
                sources.append(
                    ScheduleSource(
                        function_id=function_id,
                        event_name=event_name,
                        kind=kind,
                        expression=expression,
                        input=_schedule_input(props, kind, arn, where),
                        enabled=_enabled(props, where),
                        arn=arn,
                    )
                )
    return tuple(sources)


def fill_scheduler_placeholders(text: str, values: Sequence[str]) -> str:
    """A ScheduleV2's Input with its placeholders replaced by `values` (in their order)."""
    for placeholder, value in zip(SCHEDULER_PLACEHOLDERS, values, strict=True):
        text = text.replace(placeholder, value)
    return text


def _schedule_input(props: Mapping[str, Any], kind: str, arn: str, where: str) -> str | None:
    """A schedule's Input, which EventBridge refuses unless it is JSON text (a ScheduleV2's
    once its placeholders are filled: here with sample values of the kind the timer fills)."""
    if "Input" not in props:
        return None
    text = props["Input"]
    # The event is this text; a map would reach the function as Python's repr.
    if not isinstance(text, str):
        raise UnsupportedTemplate(f"{where}: Input must be a string (JSON text)")
    filled = text
    if kind == "ScheduleV2":
        samples = (arn, "2026-01-01T00:00:00Z", "00000000-0000-0000-0000-000000000000", "1")
        filled = fill_scheduler_placeholders(text, samples)
    try:
        json.loads(filled, parse_constant=_not_json)
    except ValueError:
        raise UnsupportedTemplate(
            f"{where}: Input must be JSON text, as EventBridge needs"
        ) from None
    return text


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity; JSON, and so EventBridge, has no such values.
    raise ValueError(constant)


def _queues(stack: Stack) -> tuple[SqsSource, ...]:
    functions = resources_of_type(stack.template, FUNCTION_TYPE, stack.resolver)
    return tuple(
        _sqs_source(stack, function_id, event_name, raw)
        for function_id, resource in functions.items()
        for event_name, raw in _events(resource, "SQS").items()
    )


def _sqs_source(stack: Stack, function_id: str, event_name: str, raw: Any) -> SqsSource:
    where = f"{function_id}.{event_name}"
    props = _supported(stack.resolver.resolve(raw), _SQS_PROPERTIES, where)
    if "Queue" not in props:
        raise UnsupportedTemplate(f"{where}: Queue is required")
    batch_size = _whole_number(props.get("BatchSize", 10), f"{where}: BatchSize", 1, 10_000)
    window = _whole_number(
        props.get("MaximumBatchingWindowInSeconds", 0),
        f"{where}: MaximumBatchingWindowInSeconds",
        0,
        300,
    )
    # Lambda refuses a batch of more than 10 messages gathered without a window.
    if batch_size > 10 and window == 0:
        raise UnsupportedTemplate(
            f"{where}: a BatchSize over 10 needs MaximumBatchingWindowInSeconds"
        )
    response_types = props.get("FunctionResponseTypes") or []
    if not isinstance(response_types, list) or set(response_types) - {"ReportBatchItemFailures"}:
        raise UnsupportedTemplate(
            f"{where}: FunctionResponseTypes takes only ReportBatchItemFailures"
        )
    return SqsSource(
        function_id=function_id,
        event_name=event_name,
        queue_arn=scalar_text(props["Queue"], f"{where}: Queue"),
        batch_size=batch_size,
        batching_window_seconds=window,
        report_batch_item_failures=bool(response_types),
        enabled=cloudformation_bool(props.get("Enabled", True), f"{where}: Enabled"),
        maximum_concurrency=_maximum_concurrency(props, where),
    )


def read_wiring(stack: Stack, template_dir: Path) -> Wiring:
    """Everything the local stack serves, runs or feeds, from a provisioned stack."""
    _check_function_properties(stack)
    _check_types(stack)
    register_references(stack)
    functions = {
        logical_id: _function(stack, logical_id, template_dir)
        for logical_id in resources_of_type(stack.template, FUNCTION_TYPE, stack.resolver)
    }
    return Wiring(
        functions=functions,
        apis=_apis(stack),
        schedules=_schedules(stack),
        queues=_queues(stack),
    )
