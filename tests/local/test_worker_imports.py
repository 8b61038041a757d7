"""A local function imports only what it would find in Lambda (the worker's import guard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strongroom_local.runtime import FunctionPool, lambda_environment
from strongroom_local.template import REPO_ROOT
from strongroom_local.wiring import LocalFunction

LAYER = (REPO_ROOT / "layers" / "common").resolve()


def pool_for(
    code_dir: Path, layers: tuple[Path, ...], *, runtime: str = "python3.13"
) -> FunctionPool:
    spec = LocalFunction(
        logical_id="ProbeFunction",
        name="test-probe",
        arn="arn:aws:lambda:us-east-1:123456789012:function:test-probe",
        code_dir=code_dir,
        handler="app.lambda_handler",
        layer_dirs=layers,
        timeout_seconds=20,
        memory_mb=256,
        runtime=runtime,
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
        "import importlib, importlib.metadata, importlib.util\n"
        "def lambda_handler(event, context):\n"
        "    if 'distribution' in event:\n"
        "        try:\n"
        "            return {'version': importlib.metadata.version(event['distribution'])}\n"
        "        except importlib.metadata.PackageNotFoundError:\n"
        "            return {'version': None}\n"
        "    module = event['module']\n"
        "    try:\n"
        "        found = importlib.util.find_spec(module.partition('.')[0]) is not None\n"
        "    except ImportError:\n"
        "        found = 'raised'\n"
        "    try:\n"
        "        importlib.import_module(module)\n"
        "    except ImportError as exc:\n"
        "        return {'imported': False, 'found': found, 'error': type(exc).__name__}\n"
        "    return {'imported': True, 'found': found}\n"
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
    # What is refused looks not installed: a probe for an optional dependency answers None.
    assert invocation.result["found"] is imported


def call(probe: Path, layers: tuple[Path, ...], event: dict[str, str]) -> Any:
    pool = pool_for(probe, layers)
    try:
        invocation = pool.invoke(event)
    finally:
        pool.close()
    assert invocation.ok
    return invocation.result


@pytest.mark.parametrize(
    ("module", "runtime"),
    # Removed from the standard library by 3.12 (imp, distutils) and 3.13 (PEP 594, lib2to3).
    [
        ("imp", "python3.12"),
        ("distutils", "python3.12"),
        ("cgi", "python3.13"),
        ("telnetlib", "python3.13"),
        ("lib2to3", "python3.13"),
    ],
)
def test_standard_modules_the_runtime_no_longer_has_are_refused(
    probe: Path, module: str, runtime: str
) -> None:
    pool = pool_for(probe, (), runtime=runtime)
    try:
        result = pool.invoke({"module": module}).result
    finally:
        pool.close()
    assert (result["imported"], result["error"]) == (False, "ModuleNotFoundError")


def test_a_data_folder_does_not_let_the_installed_package_of_its_name_through(
    probe: Path,
) -> None:
    (probe / "yaml").mkdir()  # a namespace package in Lambda: empty
    pool = pool_for(probe, (LAYER,))
    try:
        invocation = pool.invoke({"module": "yaml"})
    finally:
        pool.close()
    assert invocation.result["imported"] is True
    assert call(probe, (LAYER,), {"module": "yaml.constructor"})["imported"] is False


def test_metadata_is_that_of_the_distributions_lambda_would_have(probe: Path) -> None:
    assert call(probe, (LAYER,), {"distribution": "pydantic"})["version"]
    assert call(probe, (), {"distribution": "boto3"})["version"]
    assert call(probe, (LAYER,), {"distribution": "moto"})["version"] is None
    assert call(probe, (), {"distribution": "pydantic"})["version"] is None
