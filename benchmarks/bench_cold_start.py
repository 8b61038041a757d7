"""Cold start of each function, in the environment Lambda gives it, against `import boto3` alone.

Every figure is the median over RUNS rounds of fresh processes started with the function's Lambda
environment, as the local stack builds it (LAMBDA_TASK_ROOT, the template's variables, AWS on a
local moto server) and with tracing active as the template sets it: Powertools' Tracer on and
X-Ray in its Lambda mode (the daemon address on loopback, a made-up trace header). Time is the
process's own CPU time for the measured part, so a busy shared machine does not count; wall
time is printed beside it.

- baseline: `import boto3` alone, in the same environment and run;
- floor: boto3 + pydantic + Powertools' validating resolver, which any such function imports
  before any code of ours;
- per function: the import of its handler module and its ratio to the baseline (target: at
  most 1.5x), and the import plus a first request (a read route's HTTP API event, against the
  moto server), so that work moved from import to the first request shows.

Our own code (the function's and the layer's) is measured as deployed today, compiled from
source at every cold start (SAM ships no bytecode for it, and Lambda's file system is
read-only), and with its bytecode shipped (`compileall`, unchecked-hash), as `make build` does.
Run with `make bench` or `.venv/bin/python <this file>`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_PROFILE", None)

import boto3

from strongroom_local.provision import Stack, provision
from strongroom_local.runtime import lambda_environment
from strongroom_local.template import REPO_ROOT
from strongroom_local.wiring import LocalFunction, read_wiring

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
TARGET_RATIO = 1.5
REGION = "us-east-1"
LAYER_PACKAGES = ("strongroom",)
FLOOR = "import boto3, pydantic, aws_lambda_powertools.event_handler.openapi.params"
# As Lambda sets them for a traced function, but the daemon on loopback: nothing leaves the host.
TRACING_ENVIRONMENT = {
    "_X_AMZN_TRACE_ID": (
        "Root=1-6744a2f0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1"
    ),
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}

_CHILD = """
import json, sys, time
sys.path[:0] = {paths!r}
wall, cpu = time.perf_counter(), time.process_time()
{statement}
figures = {{"import_cpu": time.process_time() - cpu, "import_wall": time.perf_counter() - wall}}
{request}
print("BENCH " + json.dumps(figures))
"""
_REQUEST = """
class _Context:
    function_name = {name!r}
    memory_limit_in_mb = {memory!r}
    invoked_function_arn = {arn!r}
    aws_request_id = "bench-first-request"

    def get_remaining_time_in_millis(self):
        return 30_000

response = {module}.{handler}(json.loads({event!r}), _Context())
figures.update(
    first_cpu=time.process_time() - cpu,
    first_wall=time.perf_counter() - wall,
    status=response["statusCode"],
    body=response.get("body"),
)
"""


@dataclass(frozen=True)
class FirstRequest:
    """A function's first request: an HTTP API event, made by `setup`'s answer if it has one."""

    route: str
    path: str
    status: int
    setup: tuple[str, str, dict[str, Any]] | None = None  # route, path, body
    path_from_setup: str = ""  # a key of the setup's response body filled into `path`


FIRST_REQUESTS = {
    "CredentialStoreFunction": FirstRequest(
        route="GET /orgs/{org_id}",
        path="/orgs/{org_id}",
        status=200,
        setup=("POST /orgs", "/orgs", {"name": "Bench org"}),
        path_from_setup="org_id",
    ),
}


def http_event(route: str, path: str, body: Any = None, **params: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / "http_api_v2_base.json").read_text())
    method = route.split(" ", 1)[0]
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    if params:
        event["pathParameters"] = params
    if body is not None:
        event["body"] = json.dumps(body)
    return event


@dataclass(frozen=True)
class Case:
    """One thing measured in fresh processes: a statement, and maybe a first request after it."""

    label: str
    statement: str
    paths: list[str]
    env: Mapping[str, str]
    request: str = ""
    status: int = 0
    first_label: str = ""


@dataclass
class Samples:
    """A case's figures over the rounds, and each round's ratio to that round's baseline."""

    figures: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])

    def ratio(self, name: str) -> float:
        return statistics.median(self.ratios[name])


def run_child(
    statement: str, paths: list[str], env: Mapping[str, str], request: str = ""
) -> dict[str, Any]:
    code = _CHILD.format(paths=paths, statement=statement, request=request)
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(env), check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark process failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH "))
    return figures


def measure(cases: list[Case]) -> list[Samples]:
    """RUNS rounds, each running every case once, the baseline (the first case) first: a round's
    ratios compare processes that ran moments apart, so the machine's load drifting hits both."""
    samples = [Samples() for _ in cases]
    for _ in range(RUNS):
        baseline_cpu = 0.0
        for case, case_samples in zip(cases, samples, strict=True):
            figures = run_child(case.statement, case.paths, case.env, case.request)
            if case.request and figures["status"] != case.status:
                raise RuntimeError(f"first request answered {figures['status']}: {figures['body']}")
            baseline_cpu = baseline_cpu or figures["import_cpu"]
            for name, value in figures.items():
                if name.endswith(("_cpu", "_wall")):
                    case_samples.figures.setdefault(name, []).append(float(value))
                if name.endswith("_cpu"):
                    case_samples.ratios.setdefault(name, []).append(value / baseline_cpu)
    return samples


def copy_code(function: LocalFunction, into: Path, *, bytecode: bool) -> list[str]:
    """The function's and its layers' own code, copied without bytecode (as SAM ships it), or
    compiled as a build step could ship it; the paths in Lambda's order."""
    code_dir = into / "task"
    shutil.copytree(function.code_dir, code_dir, ignore=shutil.ignore_patterns("__pycache__"))
    paths = [str(code_dir)]
    for index, layer_dir in enumerate(function.layer_dirs):
        target = into / f"layer{index}"
        for package in LAYER_PACKAGES:
            if (layer_dir / package).is_dir():
                shutil.copytree(
                    layer_dir / package,
                    target / package,
                    ignore=shutil.ignore_patterns("__pycache__"),
                )
        paths.append(str(target))
    if bytecode:
        subprocess.run(  # noqa: S603 - our own interpreter
            [
                sys.executable,
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode",
                "unchecked-hash",
                *paths,
            ],
            check=True,
        )
    return paths


def first_request_code(function: LocalFunction, event: dict[str, Any]) -> str:
    module, _, handler = function.handler.rpartition(".")
    return _REQUEST.format(
        name=function.name,
        memory=str(function.memory_mb),
        arn=function.arn,
        module=module,
        handler=handler,
        event=json.dumps(event),
    )


def prepare_first_request(
    function: LocalFunction, paths: list[str], env: Mapping[str, str], first: FirstRequest
) -> str:
    """The first request's event, after its setup request (run once, in its own process)."""
    module = function.handler.rpartition(".")[0]
    params: dict[str, str] = {}
    path = first.path
    if first.setup is not None:
        route, setup_path, body = first.setup
        setup_code = first_request_code(function, http_event(route, setup_path, body))
        answer = run_child(f"import {module}", paths, env, setup_code)
        if first.path_from_setup:
            value = json.loads(answer["body"])[first.path_from_setup]
            params[first.path_from_setup] = value
            path = path.replace("{" + first.path_from_setup + "}", value)
    return first_request_code(function, http_event(first.route, path, **params))


def function_environment(stack: Stack, function: LocalFunction, aws_url: str) -> dict[str, str]:
    env = lambda_environment(
        function,
        stack.function_environment(function.logical_id),
        aws_endpoint_url=aws_url,
        region=REGION,
    )
    # The template turns tracing on (Tracing: Active); the local stack turns it off.
    env.pop("POWERTOOLS_TRACE_DISABLED", None)
    env.update(TRACING_ENVIRONMENT)
    # Lambda cannot write bytecode next to the code either.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def line(label: str, samples: Samples, name: str, suffix: str = "") -> float:
    ratio = samples.ratio(f"{name}_cpu")
    print(
        f"  {label:<52} {samples.median(f'{name}_cpu') * 1000:7.1f} ms"
        f" (wall {samples.median(f'{name}_wall') * 1000:7.1f})  {ratio:4.2f}x{suffix}"
    )
    return ratio


def main() -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per moto request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        aws_url = f"http://{host}:{port}"
        stack = provision(boto3.Session(region_name=REGION), endpoint_url=aws_url)
        functions = read_wiring(stack, REPO_ROOT).functions
        return report(stack, functions, aws_url)
    finally:
        server.stop()


def report(stack: Stack, functions: Mapping[str, LocalFunction], aws_url: str) -> int:
    print(
        f"cold start in Lambda's environment (tracing active): medians of {RUNS} rounds of fresh"
        " processes, CPU time (wall time beside it); ratios: medians of each round's ratio to"
        " the round's `import boto3`"
    )
    site = [str(REPO_ROOT / "layers" / "common")]
    env = function_environment(stack, next(iter(functions.values())), aws_url)
    cases = [
        Case("baseline: import boto3", "import boto3", site, env),
        Case("floor: boto3 + pydantic + Powertools validation", FLOOR, site, env),
    ]
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as tmp:
        for function in functions.values():
            env = function_environment(stack, function, aws_url)
            module = function.handler.rpartition(".")[0]
            first = FIRST_REQUESTS.get(function.logical_id)
            for bytecode in (False, True):
                how = "with bytecode shipped" if bytecode else "compiled at start (as deployed)"
                into = Path(tmp) / f"{function.logical_id}-{bytecode}"
                paths = copy_code(function, into, bytecode=bytecode)
                request, status, first_label = "", 0, ""
                if first is not None:
                    request = prepare_first_request(function, paths, env, first)
                    status, first_label = first.status, f"import + first request {first.route}"
                label = f"{function.logical_id}: our code {how}\n  import {module}"
                cases.append(
                    Case(label, f"import {module}", paths, env, request, status, first_label)
                )
        results = measure(cases)
    for case, samples in zip(cases, results, strict=True):
        if not case.paths[0].startswith(tmp):
            line(case.label, samples, "import")
            continue
        heading, _, label = case.label.partition("\n  ")
        print(heading)
        ratio = samples.ratio("import_cpu")
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        line(label, samples, "import", f" (target <= {TARGET_RATIO}x) {verdict}")
        if case.first_label:
            line(case.first_label, samples, "first")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
