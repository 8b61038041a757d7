"""Powertools' Tracer as every function makes it, with X-Ray's patches applied on import.

Powertools' Tracer patches every library X-Ray supports at once (X-Ray's `patch_all`), and
patching a library imports it: requests and its TLS stack at every cold start of a function
that may never make an HTTP request. `create_tracer` patches the same libraries, each when it
is first imported (at once if it already is: botocore, in every function), so traces keep the
same subsegments and a cold start imports only what the function uses.

Every handler is traced with `capture_response=False, capture_error=False`: Powertools would
otherwise store the handler's whole reply (a presigned URL, an OAuth authorization URL and its
state cookie) and its exception objects in the trace, where no redaction reaches. An escaping
exception's type and message still reach X-Ray (its SDK records them, as Lambda's own error
report does); like every error of ours they carry no secret.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import wrapt
from aws_lambda_powertools import Tracer
from aws_xray_sdk.core import patch  # type: ignore[import-untyped]

# What X-Ray's patch_all would patch among the layer's libraries and the standard library (the
# other libraries it supports are not installed): X-Ray's name for the patch, and the module
# whose import applies it.
PATCHED_ON_IMPORT = {"botocore": "botocore", "requests": "requests", "sqlite3": "sqlite3"}


def create_tracer(service: str) -> Tracer:
    """Powertools' Tracer for `service`, on or off as Powertools decides from the environment
    (on in Lambda with active tracing), with PATCHED_ON_IMPORT's patches applied on import."""
    tracer = Tracer(service=service, auto_patch=False)
    if not tracer.disabled:
        for name, module in PATCHED_ON_IMPORT.items():
            wrapt.register_post_import_hook(_patcher(name), module)
    return tracer


def _patcher(name: str) -> Callable[[ModuleType], None]:
    def apply_patch(_: ModuleType) -> None:
        # As patch_all: a library X-Ray fails to patch is left unpatched, its import unharmed.
        patch((name,), raise_errors=False)

    return apply_patch
