"""The tracer: X-Ray's patches as Powertools would apply them, each when its library is imported.

Every function makes its tracer with `strongroom.tracing.create_tracer`. Run in fresh processes
with the environment Lambda gives a traced function: patching is global and must not reach the
test process.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.functions import FUNCTIONS, run_in_lambda_process

PROBE = """
import json, sys
import app
from aws_xray_sdk.core.patcher import _PATCHED_MODULES
report = {"disabled": app.tracer.disabled, "at_import": sorted(_PATCHED_MODULES),
          "loaded": sorted(m for m in ("requests", "jwt", "sqlite3") if m in sys.modules)}
import requests, sqlite3
report["after_use"] = sorted(_PATCHED_MODULES)
print(json.dumps(report))
"""


def run_probe(function: str, **environment: str) -> dict[str, Any]:
    report: dict[str, Any] = run_in_lambda_process(function, PROBE, **environment)
    return report


def test_every_function_is_listed() -> None:
    assert FUNCTIONS == [
        "credential_store",
        "oauth_callback",
        "scheduled_backup",
        "signed_url_issuer",
        "webhook_verifier",
    ]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_traced_function_patches_each_library_when_it_is_imported(function: str) -> None:
    report = run_probe(function)
    assert report["disabled"] is False
    # boto3 is loaded by every handler: botocore is patched at once. requests, PyJWT and
    # sqlite3 are not loaded at cold start; requests and sqlite3 are patched once they are.
    assert report["at_import"] == ["botocore"]
    assert report["loaded"] == []
    assert report["after_use"] == ["botocore", "requests", "sqlite3"]


@pytest.mark.parametrize("function", FUNCTIONS)
def test_untraced_function_patches_nothing(function: str) -> None:
    report = run_probe(function, POWERTOOLS_TRACE_DISABLED="1")
    assert report["disabled"] is True
    assert report["at_import"] == report["after_use"] == []
