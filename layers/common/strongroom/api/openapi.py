"""The API's OpenAPI document, generated from every function's resolver (`make openapi`)."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The committed document; read once per process."""
    text = resources.files("strongroom.api").joinpath("openapi.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document
