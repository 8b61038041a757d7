"""The HTTP routes template.yaml declares, and where each function's code lives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strongroom_local.template import REPO_ROOT, resources_of_type


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


def functions(template: Mapping[str, Any], root: Path = REPO_ROOT) -> dict[str, FunctionSpec]:
    globals_fn = template.get("Globals", {}).get("Function", {})
    specs = {}
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        props = resource.get("Properties", {})
        code_uri = props.get("CodeUri", globals_fn.get("CodeUri"))
        handler = props.get("Handler", globals_fn.get("Handler"))
        if not isinstance(code_uri, str) or not isinstance(handler, str):
            raise ValueError(f"{logical_id}: CodeUri and Handler must be plain strings")
        specs[logical_id] = FunctionSpec(logical_id, (root / code_uri).resolve(), handler)
    return specs


def http_routes(template: Mapping[str, Any], root: Path = REPO_ROOT) -> list[Route]:
    """Every HttpApi route of every function, in template order."""
    api_auth = {}
    for logical_id, api in resources_of_type(template, "AWS::Serverless::HttpApi").items():
        api_auth[logical_id] = api.get("Properties", {}).get("Auth", {}).get("DefaultAuthorizer")
    specs = functions(template, root)
    routes = []
    for logical_id, resource in resources_of_type(template, "AWS::Serverless::Function").items():
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            api_id = props.get("ApiId")
            api_ref = api_id.get("Ref") if isinstance(api_id, dict) else None
            default_authorizer = api_auth.get(api_ref) if api_ref else None
            authorizer = props.get("Auth", {}).get("Authorizer", default_authorizer)
            routes.append(
                Route(
                    function=specs[logical_id],
                    method=str(props.get("Method", "ANY")).upper(),
                    path=str(props.get("Path", "$default")),
                    protected=bool(authorizer) and authorizer != "NONE",
                )
            )
    return routes
