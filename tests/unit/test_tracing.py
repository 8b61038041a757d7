"""The tracer: X-Ray's patches as Powertools would apply them, each when its library is imported.

Every function makes its tracer with `strongroom.tracing.create_tracer`. Run in fresh processes
with the environment Lambda gives a traced function: patching is global and must not reach the
test process.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from strongroom_local.template import load_template, resources_of_type
from tests.support.events import load_event
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


def template_handlers() -> list[tuple[str, str]]:
    """(function folder, handler name) of every function in the template."""
    functions = resources_of_type(load_template(), "AWS::Serverless::Function")
    return [
        (
            PurePosixPath(resource["Properties"]["CodeUri"]).name,
            resource["Properties"]["Handler"].removeprefix("app."),
        )
        for resource in functions.values()
    ]


# Calls a handler twice with the tracer's subsegment recorded: once returning (an HTTP handler
# answers any API event, an SQS handler an empty batch), once raising (an event it cannot read).
TRACE_PROBE = """
import contextlib, json, sys
import app
recorded = []

class Subsegment:
    def put_metadata(self, key, value, namespace="default"):
        recorded.append(["metadata", key, repr(value)])
    def put_annotation(self, key, value):
        recorded.append(["annotation", key, repr(value)])

@contextlib.contextmanager
def in_subsegment(name=None, **kwargs):
    yield Subsegment()

app.tracer.provider.in_subsegment = in_subsegment

class Context:
    function_name = "f"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    aws_request_id = "req-trace"
    def get_remaining_time_in_millis(self):
        return 30000

handler = getattr(app, HANDLER)
outcomes = []
for event in (RETURNING_EVENT, {"Records": [None]} if "Records" in RETURNING_EVENT else {}):
    try:
        reply = handler(event, Context())
        outcomes.append(["returned", json.dumps(reply)])
    except Exception as exc:
        outcomes.append(["raised", type(exc).__name__])
print(json.dumps({"outcomes": outcomes, "recorded": recorded}))
"""

# What Settings needs for a handler to build its services (no AWS call is made).
SETTINGS = {
    "STRONGROOM_STAGE": "test",
    "STRONGROOM_TABLE": "strongroom-test",
    "STRONGROOM_BACKUP_BUCKET": "backups-test",
    "STRONGROOM_AUDIT_BUCKET": "audit-test",
    "STRONGROOM_PLATFORM_KEY_ID": "alias/platform-test",
    "STRONGROOM_BACKUP_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
    "STRONGROOM_OAUTH_REDIRECT_URI": "https://api.strongroom.example/oauth/callback",
    "STRONGROOM_OAUTH_RETURN_URL": "https://app.strongroom.example/connections",
    "STRONGROOM_AUDIT_RETENTION_DAYS": "365",
    "STRONGROOM_BACKUP_RETENTION_DAYS": "35",
}


def test_the_template_lists_every_handler_probed_below() -> None:
    assert sorted(template_handlers()) == [
        ("credential_store", "lambda_handler"),
        ("oauth_callback", "lambda_handler"),
        ("scheduled_backup", "dead_letter_handler"),
        ("scheduled_backup", "lambda_handler"),
        ("scheduled_backup", "worker_handler"),
        ("signed_url_issuer", "lambda_handler"),
        ("webhook_verifier", "lambda_handler"),
    ]


@pytest.mark.parametrize(("function", "handler"), template_handlers())
def test_a_trace_holds_no_reply_and_no_exception_object(function: str, handler: str) -> None:
    # A reply can carry a bearer credential (a presigned URL, an OAuth state) and X-Ray is not
    # redacted: Powertools stores replies and exceptions as metadata unless told not to.
    returning = (
        {"Records": []} if handler != "lambda_handler" else load_event("credential_store/health")
    )
    code = f"HANDLER = {handler!r}\nRETURNING_EVENT = {returning!r}\n{TRACE_PROBE}"
    report = run_in_lambda_process(function, code, **SETTINGS)
    assert [outcome[0] for outcome in report["outcomes"]] == ["returned", "raised"]
    # The handler was traced (its annotations are there), and nothing else was recorded.
    assert {entry[1] for entry in report["recorded"]} == {"ColdStart", "Service"}
    assert all(entry[0] == "annotation" for entry in report["recorded"])
