"""A local function imports only what it would find in Lambda (the worker's import guard)."""

from __future__ import annotations

from pathlib import Path

import pytest

from strongroom_local.runtime import FunctionPool, lambda_environment
from strongroom_local.template import REPO_ROOT
from strongroom_local.wiring import LocalFunction

LAYER = (REPO_ROOT / "layers" / "common").resolve()


def pool_for(code_dir: Path, layers: tuple[Path, ...]) -> FunctionPool:
    spec = LocalFunction(
        logical_id="ProbeFunction",
        name="test-probe",
        arn="arn:aws:lambda:us-east-1:123456789012:function:test-probe",
        code_dir=code_dir,
        handler="app.lambda_handler",
        layer_dirs=layers,
        timeout_seconds=20,
        memory_mb=256,
    )
    environment = lambda_environment(
        spec, {}, aws_endpoint_url="http://127.0.0.1:9", region="us-east-1"
    )
    return FunctionPool(spec, environment, max_workers=1)


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    """A function whose handler imports the module its event names and reports the outcome."""
    (tmp_path / "helper.py").write_text("VALUE = 1\n")
    (tmp_path / "app.py").write_text(
        "import importlib\n"
        "def lambda_handler(event, context):\n"
        "    try:\n"
        "        importlib.import_module(event['module'])\n"
        "    except ImportError as exc:\n"
        "        return {'imported': False, 'error': type(exc).__name__}\n"
        "    return {'imported': True}\n"
    )
    return tmp_path


@pytest.mark.parametrize(
    ("module", "layers", "imported"),
    [
        ("json", (), True),  # the standard library
        ("helper", (), True),  # the function's own folder
        ("boto3", (), True),  # the Lambda Python runtime ships the SDK
        ("botocore.session", (), True),
        ("pydantic", (LAYER,), True),  # pinned by the layer's requirements.txt
        ("aws_lambda_powertools.event_handler", (LAYER,), True),
        ("strongroom.settings", (LAYER,), True),  # the layer's own folder
        # Installed for the developer, but not in the function, its layers or the runtime.
        ("pydantic", (), False),
        ("strongroom", (), False),
        ("yaml", (LAYER,), False),
        ("moto", (LAYER,), False),
        ("pytest", (LAYER,), False),
        ("strongroom_local", (LAYER,), False),
    ],
)
def test_a_function_imports_only_what_lambda_would_give_it(
    probe: Path, module: str, layers: tuple[Path, ...], imported: bool
) -> None:
    pool = pool_for(probe, layers)
    try:
        invocation = pool.invoke({"module": module})
    finally:
        pool.close()
    assert invocation.ok
    assert invocation.result["imported"] is imported
    if not imported:
        assert invocation.result["error"] == "ModuleNotFoundError"
