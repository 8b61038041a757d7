"""Every AWS client a function makes waits and retries within limits its Lambda timeout allows.

moto answers at once, so no test here can watch a slow AWS: they check what our code decides
(the config of every client each function builds, the worst case it allows against the
template's timeouts) and, against a loopback server that never answers, that botocore keeps to
a config made the way `lazy_client` makes it.
"""

from __future__ import annotations

import ast
import importlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError

from strongroom import lazy
from strongroom.aws_limits import PROMPT_CALLS, TRANSFER_CALLS, worst_case_seconds
from strongroom.lazy import lazy_client
from strongroom.settings import Settings
from strongroom_local.provision import Stack
from strongroom_local.template import load_template, resources_of_type

REPO = Path(__file__).resolve().parents[2]
# Each function's services module, and the functions of the template that run it.
SERVICES = {
    "credential_store.services": ("CredentialStoreFunction",),
    "oauth_flow.services": ("OAuthCallbackFunction",),
    "webhook_verifier.services": ("WebhookVerifierFunction",),
    "backup_downloads.services": ("SignedUrlIssuerFunction",),
    "backup_jobs.services": (
        "BackupDispatcherFunction",
        "BackupWorkerFunction",
        "BackupDeadLetterFunction",
    ),
}


class ConfigRecordingSession(boto3.Session):
    """A session that notes each client it makes and the config it was given."""

    def __init__(self) -> None:
        super().__init__(region_name="us-east-1")
        self.made: list[tuple[str, Config]] = []

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        self.made.append((service_name, kwargs["config"]))
        return super().client(service_name, *args, **kwargs)


def _limits(config: Config) -> tuple[Any, ...]:
    return (config.connect_timeout, config.read_timeout, config.retries)


def _timeout_of(function: str) -> int:
    template = load_template()
    own = template["Resources"][function]["Properties"].get("Timeout")
    return int(own if own is not None else template["Globals"]["Function"]["Timeout"])


@pytest.mark.parametrize("module_name", sorted(SERVICES))
def test_every_client_a_function_makes_has_limits_within_its_timeout(
    module_name: str, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    functions = SERVICES[module_name]
    environment = stack.function_environment(functions[0])
    if module_name == "backup_downloads.services":
        environment["STRONGROOM_DOWNLOAD_SIGNER_ROLE_ARN"] = (
            "arn:aws:iam::123456789012:role/strongroom-dev-download-signer"
        )
    settings = Settings.from_environ(environment)
    session = ConfigRecordingSession()
    # Make each client at once, so that every one the function could use is seen here.
    monkeypatch.setattr(lazy, "on_first_use", lambda factory: factory())
    importlib.import_module(module_name).build_services(settings, session)

    assert session.made, "the function makes no client through lazy_client"
    for service, config in session.made:
        if module_name == "backup_jobs.services" and service == "s3" and config.read_timeout == 30:
            expected = TRANSFER_CALLS  # the worker's backup parts
        else:
            expected = PROMPT_CALLS
        assert _limits(config) == _limits(expected), service
        slowest = min(_timeout_of(function) for function in functions)
        if expected is TRANSFER_CALLS:
            slowest = _timeout_of("BackupWorkerFunction")  # only the worker moves parts
        assert worst_case_seconds(config) < slowest, (module_name, service)
    if module_name == "backup_downloads.services":  # other settings are kept, limits added
        unsigned = [config for service, config in session.made if config.signature_version]
        assert [config.signature_version for config in unsigned] == [UNSIGNED]
    if module_name == "backup_jobs.services":  # the audit log's S3 client is a prompt one
        s3_limits = sorted(
            _limits(config)[:2] for service, config in session.made if service == "s3"
        )
        assert s3_limits == [(1, 4), (5, 30)]


def test_every_function_in_the_template_is_covered() -> None:
    functions = resources_of_type(load_template(), "AWS::Serverless::Function")
    assert sorted(name for names in SERVICES.values() for name in names) == sorted(functions)


def test_worst_case_counts_every_attempt_and_the_longest_waits() -> None:
    # 3 attempts of 1 s to connect and 4 s to read, and before retries 0 and 1 standard mode's
    # longest jittered waits (1 s, 2 s), each raised by up to 5 s by a retry-after header.
    assert worst_case_seconds(PROMPT_CALLS) == 3 * (1 + 4) + (1 + 5) + (2 + 5)
    assert worst_case_seconds(TRANSFER_CALLS) == 5 * (5 + 30) + (1 + 2 + 4 + 8) + 4 * 5


def test_no_code_makes_a_client_but_through_lazy_client() -> None:
    # A client made with `session.client(...)` or `boto3.client(...)` would get botocore's
    # 60 s limits. (Docstrings may show it; only calls count.)
    offenders = []
    for root in ("functions", "layers/common/strongroom"):
        for path in sorted((REPO / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"client", "resource"}
                    and path.name != "lazy.py"
                ):
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[float]]]:
    """A loopback HTTP endpoint that accepts connections and never answers; the times at which
    it accepted each one."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[float] = []
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(time.monotonic())
            held.append(connection)  # kept open, never answered

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_a_silent_endpoint_is_asked_as_often_as_the_limits_allow(
    silent_server: tuple[str, list[float]],
) -> None:
    # The read timeout is shortened for the test; attempts and the rest come from PROMPT_CALLS
    # by the merge lazy_client does.
    endpoint, accepted = silent_server
    dynamodb = lazy_client(
        boto3.Session(region_name="us-east-1"),
        "dynamodb",
        config=Config(read_timeout=0.2),
        endpoint_url=endpoint,
    )
    assert _limits(lazy.made(dynamodb).meta.config)[::2] == (1, PROMPT_CALLS.retries)
    with pytest.raises(ReadTimeoutError):
        dynamodb.get_item(TableName="t", Key={"pk": {"S": "x"}})
    assert len(accepted) == PROMPT_CALLS.retries["total_max_attempts"]
