"""The OpenAPI document covers every route of template.yaml and is generated from the code."""

from __future__ import annotations

from strongroom.api.openapi import openapi_document
from strongroom_local.openapi import OPENAPI_PATH, build_openapi, render
from strongroom_local.routes import http_routes
from strongroom_local.template import load_template


def test_committed_document_is_what_the_code_generates() -> None:
    generated = render(build_openapi())
    assert OPENAPI_PATH.read_text(encoding="utf-8") == generated, (
        "stale openapi.json: run `make openapi` and commit the result"
    )


def test_every_template_route_is_documented_with_its_auth() -> None:
    document = openapi_document()
    routes = http_routes(load_template())
    assert routes
    for route in routes:
        operation = document["paths"].get(route.path, {}).get(route.method.lower())
        assert operation is not None, f"{route.route_key} missing from openapi.json"
        assert operation["security"] == ([{"jwt": []}] if route.protected else [])


def test_every_documented_route_is_in_the_template() -> None:
    declared = {(r.path, r.method.lower()) for r in http_routes(load_template())}
    documented = {
        (path, method) for path, item in openapi_document()["paths"].items() for method in item
    }
    assert documented <= declared
