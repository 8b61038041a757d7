"""Shared fixtures: emulated AWS built from template.yaml, settings, events, loopback guard."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import pytest

# Fake credentials and a region before anything creates a boto3 client: nothing here may ever
# reach a real AWS account.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Strongroom")


def _share_botocore_model_caches() -> None:
    """Loaders with the same search paths share one cache of parsed models.

    Tests make new boto3 sessions (fresh clients, as a cold Lambda does), and every new session
    parsed botocore's JSON models again: about a third of the unit tests' time. botocore already
    shares a loader's results, read-only, between all the clients of a session; this shares them
    between sessions too. Nothing a client does changes.
    """
    init = botocore.loaders.Loader.__init__
    shared: dict[tuple[object, ...], dict[Any, Any]] = {}

    def init_sharing(self: botocore.loaders.Loader, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        key = (tuple(self.search_paths), tuple(self._extras_types))
        self._cache = shared.setdefault(key, {})

    botocore.loaders.Loader.__init__ = init_sharing  # type: ignore[method-assign]


_share_botocore_model_caches()

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each function's own modules, importable as in Lambda (its folder is the code root).
for _function_dir in sorted((REPO_ROOT / "functions").glob("*/")):
    sys.path.insert(0, str(_function_dir))

from moto import mock_aws  # noqa: E402
from moto.core.botocore_stubber import BotocoreStubber  # noqa: E402

from strongroom.settings import Settings  # noqa: E402
from strongroom_local.provision import Stack, provision  # noqa: E402
from tests.support.events import load_event  # noqa: E402
from tests.support.iam_check import IamCheck  # noqa: E402
from tests.support.network import install_loopback_guard  # noqa: E402

install_loopback_guard()


@pytest.fixture
def stack(atomic_aws: None) -> Iterator[Stack]:
    """Every key, table, bucket and queue of template.yaml, created in moto's mock_aws, each
    request to it atomic (`atomic_aws`): our code makes AWS calls from several threads (the
    revocation sweep, the backup worker's writes), which AWS serves atomically and moto not."""
    with mock_aws():
        yield provision(boto3.Session(region_name="us-east-1"))


@pytest.fixture
def iam_check(stack: Stack) -> Iterator[IamCheck]:
    """Holds every AWS call a guarded handler makes to its function's role in template.yaml.

    Function fixtures build their services from `iam_check.session()` and wrap their handler
    modules with `iam_check.guard(module, "<function folder>")`; a call the role would not
    allow fails the test at teardown, listing each denied action, resource and condition keys
    (tests/support/iam_check.py says what is modelled).
    """
    check = IamCheck(stack)
    yield check
    if check.problems:
        pytest.fail(check.report(), pytrace=False)


@pytest.fixture
def settings(stack: Stack) -> Settings:
    """The settings a function of the stack would read from its environment."""
    return Settings.from_environ(stack.function_environment())


@pytest.fixture
def event_loader():  # type: ignore[no-untyped-def]
    return load_event


@pytest.fixture
def atomic_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serialise moto's request handling: each AWS request is atomic, moto's are not.

    moto handles requests from several threads without a lock, so its conditional writes and
    transactions are not atomic across threads (two threads can both pass a condition; a failed
    TransactWriteItems restores a copy of the whole table, dropping other threads' writes; a
    read can raise RuntimeError as a write changes the dict it iterates). Every `stack` uses
    it, so tests test our conditions, not moto's emulation.
    """
    lock = threading.RLock()
    process = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        with lock:
            return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)
