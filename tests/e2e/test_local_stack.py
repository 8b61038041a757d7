"""The real template behind the local stack: unknown routes and unauthenticated calls."""

from __future__ import annotations

import re

import pytest

from strongroom_local.routes import Route, http_routes
from strongroom_local.template import load_template
from tests.e2e.conftest import LocalStackClient, new_user

pytestmark = pytest.mark.e2e
GATEWAY_UNAUTHORIZED = b'{"message":"Unauthorized"}'


def protected_route() -> Route | None:
    """The first JWT-protected route of template.yaml, if it declares any yet."""
    return next((route for route in http_routes(load_template()) if route.protected), None)


def concrete_path(template_path: str) -> str:
    """`/orgs/{org_id}/x/{proxy+}` -> `/orgs/org_e2e/x/a/b`."""
    path = re.sub(r"\{[^}]+\+\}", "a/b", template_path)
    return re.sub(r"\{([^}]+)\}", r"\1_e2e", path)


def test_an_unknown_route_is_404(local_stack: LocalStackClient) -> None:
    for path in ("/no/such/route", "/no-such-top-level"):
        response = local_stack.http.get(local_stack.url(path), timeout=30)
        assert response.status_code == 404, path
        assert response.json() == {"message": "Not Found"}


def test_a_protected_route_refuses_calls_without_a_valid_token(
    local_stack: LocalStackClient,
) -> None:
    route = protected_route()
    if route is None:
        pytest.skip("template.yaml declares no JWT-protected HttpApi route yet")
    method = "GET" if route.method == "ANY" else route.method
    url = local_stack.url(concrete_path(route.path))
    answers = [
        local_stack.http.request(method, url, headers=headers, timeout=30)
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            local_stack.auth("alice", ttl=-60),  # expired
            {
                "Authorization": local_stack.auth("alice")["Authorization"].replace(
                    "Bearer", "Basic"
                )
            },
        )
    ]
    for response in answers:
        assert response.status_code == 401
        assert response.content == GATEWAY_UNAUTHORIZED
    # The control: a valid token on the same request gets past the gateway (to the function).
    accepted = local_stack.http.request(
        method, url, headers=local_stack.auth(new_user("alice")), timeout=30
    )
    assert (accepted.status_code, accepted.content) != (401, GATEWAY_UNAUTHORIZED)
