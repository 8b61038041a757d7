"""The one loader of a function's handler module (`functions/<name>/app.py`) for tests, and
the one way to run code in a fresh process with a function's Lambda environment.

Every function's handler file is `app.py`, so each is loaded under its own module name; its own
package (e.g. `credential_store`) is importable because tests/conftest.py puts every function
folder on sys.path, as Lambda does with the code root.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
# Every function folder (each holds an app.py).
FUNCTIONS = sorted(path.name for path in FUNCTIONS_DIR.iterdir() if (path / "app.py").is_file())


def load_app(function: str, module_name: str | None = None) -> Any:
    """A fresh module object of `functions/<function>/app.py`."""
    path = FUNCTIONS_DIR / function / "app.py"
    spec = importlib.util.spec_from_file_location(module_name or f"{function}_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# What Lambda gives a traced function's process (the X-Ray daemon on loopback: nothing may
# leave the machine, not even a UDP trace segment).
_LAMBDA_ENVIRONMENT = {
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "_HANDLER": "app.lambda_handler",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
}


def run_in_lambda_process(function: str, code: str, **environment: str) -> Any:
    """Run `code` in a fresh interpreter with Lambda's environment for `functions/<function>`
    (its folder and the layer on the path, as Lambda has them) and return the JSON its last
    line prints. For what must not touch the test process: imports, patches, sys.modules."""
    function_dir = FUNCTIONS_DIR / function
    layer_dir = FUNCTIONS_DIR.parent / "layers" / "common"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "POWERTOOLS_"))}
    env.update(
        _LAMBDA_ENVIRONMENT,
        LAMBDA_TASK_ROOT=str(function_dir),
        AWS_LAMBDA_FUNCTION_NAME=function,
        POWERTOOLS_SERVICE_NAME=function,
        PYTHONPATH=os.pathsep.join([str(function_dir), str(layer_dir)]),
        **environment,
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
