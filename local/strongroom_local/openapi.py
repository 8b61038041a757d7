"""Generate the API's OpenAPI document from the functions' own resolvers.

Each function declares its routes on a Powertools resolver; this imports every function of
template.yaml in isolation, merges their schemas, and marks the routes the template protects with
the JWT bearer scheme. The result is committed in the layer (`strongroom/api/openapi.json`) so the
function that serves `GET /openapi.json` has it without the other functions' code; a test fails
when the committed document is stale or a template route is missing from it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge

from strongroom_local.routes import FunctionSpec, functions, http_routes
from strongroom_local.template import REPO_ROOT, load_template

OPENAPI_PATH = REPO_ROOT / "layers" / "common" / "strongroom" / "api" / "openapi.json"
TITLE = "Strongroom API"
VERSION = "1.0.0"


def _load_resolver(spec: FunctionSpec) -> Any:
    """Import a function's handler module as Lambda would (its folder first on the path)."""
    module_file, _, _ = spec.handler.rpartition(".")
    path = spec.code_dir / (module_file.replace(".", "/") + ".py")
    module_name = f"_strongroom_openapi_{spec.logical_id}"
    sys.path.insert(0, str(spec.code_dir))
    try:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(spec.code_dir))
    return module.app


def build_openapi() -> dict[str, Any]:
    template = load_template()
    merge = OpenAPIMerge(title=TITLE, version=VERSION, on_conflict="error")
    loaded: set[tuple[Path, str]] = set()
    for spec in functions(template).values():
        # Functions that share a code folder and module (a dispatcher and its worker) share
        # one resolver: merge it once.
        module = (spec.code_dir, spec.handler.rpartition(".")[0])
        if module in loaded:
            continue
        loaded.add(module)
        resolver = _load_resolver(spec)
        merge.add_schema(resolver.get_openapi_schema(title=TITLE, version=VERSION))
    document: dict[str, Any] = json.loads(merge.get_openapi_json_schema())
    document.setdefault("components", {})["securitySchemes"] = {
        "jwt": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    for route in http_routes(template):
        operation = document.get("paths", {}).get(route.path, {}).get(route.method.lower())
        if operation is not None:
            operation["security"] = [{"jwt": []}] if route.protected else []
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def write_openapi(path: Path = OPENAPI_PATH) -> Path:
    path.write_text(render(build_openapi()), encoding="utf-8")
    return path


if __name__ == "__main__":
    print(write_openapi())
