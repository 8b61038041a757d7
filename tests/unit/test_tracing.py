"""The tracer: X-Ray's patches as Powertools would apply them, each when its library is imported.

Run in fresh processes with the environment Lambda gives a traced function: patching is global
and must not reach the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.conftest import REPO_ROOT

FUNCTION_DIR = REPO_ROOT / "functions" / "credential_store"
LAMBDA_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(FUNCTION_DIR),
    "AWS_LAMBDA_FUNCTION_NAME": "credential_store",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "_HANDLER": "app.lambda_handler",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Loopback: nothing may leave the machine, not even a UDP trace segment.
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "POWERTOOLS_SERVICE_NAME": "credential_store",
}
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


def run_probe(**environment: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "POWERTOOLS_"))}
    env.update(LAMBDA_ENVIRONMENT, **environment)
    env["PYTHONPATH"] = os.pathsep.join([str(FUNCTION_DIR), str(REPO_ROOT / "layers" / "common")])
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_traced_function_patches_each_library_when_it_is_imported() -> None:
    report = run_probe()
    assert report["disabled"] is False
    # boto3 is loaded by every handler: botocore is patched at once. requests, PyJWT and
    # sqlite3 are not loaded at cold start; requests and sqlite3 are patched once they are.
    assert report["at_import"] == ["botocore"]
    assert report["loaded"] == []
    assert report["after_use"] == ["botocore", "requests", "sqlite3"]


def test_untraced_function_patches_nothing() -> None:
    report = run_probe(POWERTOOLS_TRACE_DISABLED="1")
    assert report["disabled"] is True
    assert report["at_import"] == report["after_use"] == []
