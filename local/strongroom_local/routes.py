"""The HTTP routes template.yaml declares, and where each function's code lives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom_local.exceptions import InvalidTemplate
from strongroom_local.template import REPO_ROOT, Resolver, resources_of_type

HTTP_API_TYPE = "AWS::Serverless::HttpApi"
# The API SAM creates for HttpApi events without an ApiId.
IMPLICIT_API = "ServerlessHttpApi"


@dataclass(frozen=True)
class FunctionSpec:
    """A function of the template: its code folder and handler."""

    logical_id: str
    code_dir: Path
    handler: str


@dataclass(frozen=True)
class Route:
    """One HttpApi event of a function: `method path`, protected unless Authorizer is NONE."""

    function: FunctionSpec
    method: str
    path: str
    protected: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


def functions(
    template: Mapping[str, Any], root: Path = REPO_ROOT, resolver: Resolver | None = None
) -> dict[str, FunctionSpec]:
    """The template's functions; with a resolver, only those whose Condition holds."""
    specs = {}
    function_type = "AWS::Serverless::Function"
    for logical_id in resources_of_type(template, function_type, resolver):
        props = function_properties(template, logical_id)
        code_uri, handler = props.get("CodeUri"), props.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise ValueError(f"{logical_id}: CodeUri and Handler must be plain strings")
        specs[logical_id] = FunctionSpec(logical_id, (root / code_uri).resolve(), handler)
    return specs


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    key = next(iter(value))
    return key in ("Ref", "Condition") or key.startswith("Fn::")


def merge_globals(global_value: Any, value: Any) -> Any:
    """A property with its Globals value merged in, by SAM's rules (plugins/globals/globals.py).

    Maps merge key by key, lists are concatenated (the global items first), and any other value
    of the resource replaces the global one. An intrinsic function counts as a value, not a map.
    """
    maps = isinstance(global_value, dict) and isinstance(value, dict)
    if maps and not _is_intrinsic(global_value) and not _is_intrinsic(value):
        merged = dict(global_value)
        for key, item in value.items():
            merged[key] = merge_globals(merged[key], item) if key in merged else item
        return merged
    if isinstance(global_value, list) and isinstance(value, list):
        return [*global_value, *value]
    return value


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's properties as SAM deploys it: with Globals.Function merged in, but for
    those its IgnoreGlobals names."""
    resource = template["Resources"][logical_id]
    globals_fn = template.get("Globals", {}).get("Function", {}) or {}
    taken = _globals_taken(logical_id, resource.get("IgnoreGlobals"), globals_fn)
    return dict(merge_globals(taken, resource.get("Properties", {}) or {}))


def _globals_taken(logical_id: str, ignore: Any, globals_fn: Mapping[str, Any]) -> dict[str, Any]:
    """Globals.Function without what a resource's IgnoreGlobals attribute names: "*" (all of
    them) or a list of its properties, as SAM reads it (plugins/globals/globals.py)."""
    if not ignore or not globals_fn:
        return dict(globals_fn)
    if ignore == "*":
        return {}
    if not isinstance(ignore, list) or not all(isinstance(name, str) for name in ignore):
        raise InvalidTemplate(f'{logical_id}: IgnoreGlobals must be "*" or a list of properties')
    # SAM refuses a name Globals.Function does not set.
    unset = [name for name in ignore if name not in globals_fn]
    if unset:
        raise InvalidTemplate(
            f"{logical_id}: IgnoreGlobals names {unset[0]!r}, which Globals.Function does not set"
        )
    return {name: value for name, value in globals_fn.items() if name not in ignore}


def http_api_properties(
    template: Mapping[str, Any], resolver: Resolver | None = None
) -> dict[str, dict[str, Any]]:
    """Each HttpApi's properties as SAM deploys it: with Globals.HttpApi merged in, and the
    implicit API (Globals.HttpApi alone) that serves events without an ApiId. With a resolver,
    only the APIs whose Condition holds."""
    globals_api = template.get("Globals", {}).get("HttpApi", {}) or {}
    apis = {
        logical_id: merge_globals(globals_api, resource.get("Properties", {}) or {})
        for logical_id, resource in resources_of_type(template, HTTP_API_TYPE, resolver).items()
    }
    apis.setdefault(IMPLICIT_API, dict(globals_api))
    return apis


def http_routes(
    template: Mapping[str, Any], root: Path = REPO_ROOT, resolver: Resolver | None = None
) -> list[Route]:
    """Every HttpApi route of every function, in template order (with a resolver, of the
    functions whose Condition holds)."""
    api_auth = {
        logical_id: (props.get("Auth", {}) or {}).get("DefaultAuthorizer")
        for logical_id, props in http_api_properties(template, resolver).items()
    }
    specs = functions(template, root, resolver)
    routes = []
    for logical_id in specs:
        resource = template["Resources"][logical_id]
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            api_id = props.get("ApiId")
            api_ref = str(api_id.get("Ref")) if isinstance(api_id, dict) else IMPLICIT_API
            authorizer = props.get("Auth", {}).get("Authorizer", api_auth.get(api_ref))
            routes.append(
                Route(
                    function=specs[logical_id],
                    method=str(props.get("Method", "ANY")).upper(),
                    path=str(props.get("Path", "$default")),
                    protected=bool(authorizer) and authorizer != "NONE",
                )
            )
    return routes
