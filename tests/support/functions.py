"""The one loader of a function's handler module (`functions/<name>/app.py`) for tests.

Every function's handler file is `app.py`, so each is loaded under its own module name; its own
package (e.g. `credential_store`) is importable because tests/conftest.py puts every function
folder on sys.path, as Lambda does with the code root.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"


def load_app(function: str, module_name: str | None = None) -> Any:
    """A fresh module object of `functions/<function>/app.py`."""
    path = FUNCTIONS_DIR / function / "app.py"
    spec = importlib.util.spec_from_file_location(module_name or f"{function}_app", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
