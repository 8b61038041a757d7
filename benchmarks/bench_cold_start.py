"""Cold start of every function, in the environment Lambda gives it, against `import boto3` alone.

Every function runs in fresh processes started with its Lambda environment, as the local stack
builds it (LAMBDA_TASK_ROOT, the template's variables, AWS on a local moto server) and with
tracing active as the template sets it: Powertools' Tracer on and X-Ray in its Lambda mode (the
daemon address on loopback, a made-up trace header).

- baseline: `import boto3` alone, in the same environment, deployment and run;
- floor: boto3 + pydantic + Powertools' validating resolver, which any such function imports
  before any code of ours; with X-Ray's SDK (what the Tracer adds, tracing active); the same
  without the validating resolver; and with the one boto3 client every first request makes;
- per function: the import of its handler module and its ratio to the baseline (target: at
  most 1.5x), and the import plus a first request, a cheap but real one through the handler
  against the moto server (FIRST_REQUESTS), so that work moved from import into the first
  request shows: the second figure is what a cold start really pays.

Two deployments, each with its own baseline: `make build` (bytecode for the layer's libraries
and our code, unchecked-hash, as Lambda's read-only file system needs it) and `sam build` alone
(no bytecode at all: SAM leaves our __pycache__ out and unpacks the layer's wheels without
compiling them, so every cold start compiles everything it imports).

Two measures:
- CPU time of the process for the measured part (a busy shared machine does not count; wall
  time beside it): medians of RUNS rounds, each running every case back to back, and ratios as
  medians of each round's own ratio to its baseline;
- instructions counted by valgrind's callgrind (when valgrind is installed; BENCH_INSTRUCTIONS=0
  skips it), for the `make build` deployment: one run per case, deterministic up to request
  ids and clocks, so a change of a few percent shows even when timings drift.

BENCH_PYTHON names the interpreter of the measured processes (bytecode is per version; Lambda
runs python3.13), with the layer's requirements installed; default: this one. BENCH_FUNCTIONS
(logical ids, comma separated) measures only those functions. Run with `make bench` or
`.venv/bin/python <this file>`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
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
CHILD_PYTHON = os.environ.get("BENCH_PYTHON", sys.executable)
COUNT_INSTRUCTIONS = os.environ.get("BENCH_INSTRUCTIONS", "1") != "0"
# Logical ids of the functions to measure, comma separated; default: every one.
ONLY = {name for name in os.environ.get("BENCH_FUNCTIONS", "").split(",") if name}
TARGET_RATIO = 1.5
REGION = "us-east-1"
LAYER_PACKAGES = ("strongroom",)
FLOOR = "import boto3, pydantic, aws_lambda_powertools.event_handler.openapi.params"
# What the mandated stack costs before any code of ours (labels, statements); the baseline first.
REFERENCES = [
    ("baseline: import boto3", "import boto3"),
    ("floor: boto3 + pydantic + Powertools' validating resolver", FLOOR),
    # With tracing active the Tracer loads X-Ray's SDK.
    ("floor + X-Ray's SDK (the Tracer, tracing active)", FLOOR + ", aws_xray_sdk.core"),
    (
        "boto3 + Powertools' resolver without validation + pydantic + X-Ray",
        "import boto3, aws_lambda_powertools.event_handler, aws_xray_sdk.core\n"
        "from pydantic import BaseModel",
    ),
    (
        "floor + X-Ray + one boto3 client (every first request makes one)",
        FLOOR + ", aws_xray_sdk.core\nboto3.Session().client('dynamodb')",
    ),
]
# As Lambda sets them for a traced function, but the daemon on loopback: nothing leaves the host.
TRACING_ENVIRONMENT = {
    "_X_AMZN_TRACE_ID": (
        "Root=1-6744a2f0-0123456789abcdef01234567;Parent=0123456789abcdef;Sampled=1"
    ),
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}
# Callgrind dumps its counters before each call of this libc function, which nothing else in
# these processes calls: `os.getsid(0)` marks where the measured parts start and end.
_MARK_FUNCTION = "getsid"

_CHILD = """
import json, os, sys, time
sys.path[:0] = {paths!r}
os.getsid(0)
wall, cpu = time.perf_counter(), time.process_time()
{statement}
figures = {{"import_cpu": time.process_time() - cpu, "import_wall": time.perf_counter() - wall}}
os.getsid(0)
{request}
os.getsid(0)
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
    answer=response.get("statusCode", response),
    body=response.get("body"),
)
"""

# Made-up identifiers of the right shapes for things that do not exist.
_UNKNOWN_CONNECTION = "conn_" + "a" * 26
_UNKNOWN_BACKUP = "bkp_" + "a" * 26
_UNKNOWN_SECRET = "A" * 43  # an OAuth state's secret part, and a browser binding


def http_event(
    route: str,
    path: str,
    *,
    body: Any = None,
    public: bool = False,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    cookies: list[str] | None = None,
    **params: str,
) -> dict[str, Any]:
    """An HTTP API (payload v2) event for `route`, from events/http_api_v2_base.json."""
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / "http_api_v2_base.json").read_text())
    method = route.split(" ", 1)[0]
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = method
    if public:
        del event["requestContext"]["authorizer"]
    if params:
        event["pathParameters"] = params
    if query:
        event["queryStringParameters"] = dict(query)
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    if headers:
        event["headers"].update(headers)
    if cookies:
        event["cookies"] = cookies
    if body is not None:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


@dataclass(frozen=True)
class FirstRequest:
    """A function's first request: what it is, its event for the bench org, what it answers."""

    what: str
    event: Callable[[str], dict[str, Any]]
    answer: Any  # the response's statusCode, or the whole response where it has none


def _sqs_event(body: dict[str, str]) -> dict[str, Any]:
    return {"Records": [{"messageId": "bench-message", "body": json.dumps(body)}]}


# Each cheap but real: through the handler, its resolver and validation, into the function's
# logic and at least one AWS call (the bench org exists; alice, who made it, is its owner).
FIRST_REQUESTS = {
    "CredentialStoreFunction": FirstRequest(
        "GET /orgs/{org_id}",
        lambda org: http_event("GET /orgs/{org_id}", f"/orgs/{org}", org_id=org),
        200,
    ),
    "OAuthCallbackFunction": FirstRequest(
        "GET /oauth/callback, unknown state",
        lambda org: http_event(
            "GET /oauth/callback",
            "/oauth/callback",
            public=True,
            query={"code": "bench-code", "state": f"{org}.{_UNKNOWN_SECRET}"},
            cookies=[f"__Host-strongroom_oauth_binding={_UNKNOWN_SECRET}"],
        ),
        302,
    ),
    "WebhookVerifierFunction": FirstRequest(
        "POST /webhooks/github, bad signature",
        lambda org: http_event(
            "POST /webhooks/{source}",
            "/webhooks/github",
            public=True,
            body={"zen": "Keep it logically awesome."},
            headers={
                "x-hub-signature-256": "sha256=" + "0" * 64,
                "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            },
            source="github",
        ),
        401,
    ),
    "BackupDispatcherFunction": FirstRequest(
        "POST .../backups, unknown connection",
        lambda org: http_event(
            "POST /orgs/{org_id}/connections/{connection_id}/backups",
            f"/orgs/{org}/connections/{_UNKNOWN_CONNECTION}/backups",
            org_id=org,
            connection_id=_UNKNOWN_CONNECTION,
        ),
        404,
    ),
    "BackupWorkerFunction": FirstRequest(
        "a queued job of an unknown backup",
        lambda org: _sqs_event(
            {"org_id": org, "connection_id": _UNKNOWN_CONNECTION, "backup_id": _UNKNOWN_BACKUP}
        ),
        {"batchItemFailures": []},
    ),
    "BackupDeadLetterFunction": FirstRequest(
        "a dead-lettered job of an unknown backup",
        lambda org: _sqs_event(
            {"org_id": org, "connection_id": _UNKNOWN_CONNECTION, "backup_id": _UNKNOWN_BACKUP}
        ),
        {"batchItemFailures": []},
    ),
    "SignedUrlIssuerFunction": FirstRequest(
        "GET .../backups, none yet",
        lambda org: http_event(
            "GET /orgs/{org_id}/connections/{connection_id}/backups",
            f"/orgs/{org}/connections/{_UNKNOWN_CONNECTION}/backups",
            org_id=org,
            connection_id=_UNKNOWN_CONNECTION,
        ),
        200,
    ),
}
# The bench org, made once through this function's handler before anything is measured.
ORG_MAKER = "CredentialStoreFunction"


@dataclass(frozen=True)
class Deployment:
    """How the code reaches Lambda: with bytecode for the layer's libraries and our code, or
    without any (then every cold start compiles them: the file system is read-only)."""

    title: str
    bytecode: bool
    libraries: list[str]  # where the layer's libraries are imported from (first on the path)


@dataclass(frozen=True)
class Case:
    """One thing measured in fresh processes: a statement, and maybe a first request after it.
    The first case of each deployment is its baseline."""

    label: str
    deployment: Deployment
    statement: str
    paths: list[str]
    env: Mapping[str, str]
    request: str = ""
    answer: Any = None
    first_label: str = ""


@dataclass
class Samples:
    """A case's figures over the rounds, each round's ratio to that round's baseline, and its
    instruction counts (import, import + first request)."""

    figures: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    instructions: dict[str, int] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.figures[name])

    def ratio(self, name: str) -> float:
        return statistics.median(self.ratios[name])


def child_code(statement: str, paths: list[str], request: str = "") -> str:
    return _CHILD.format(paths=paths, statement=statement, request=request)


def run_child(
    statement: str, paths: list[str], env: Mapping[str, str], request: str = ""
) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [CHILD_PYTHON, "-c", child_code(statement, paths, request)],
        capture_output=True,
        text=True,
        env=dict(env),
        check=False,
    )
    return _figures(done)


def _figures(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark process failed:\n{done.stderr[-2000:]}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH "))
    return figures


def _check_answer(case: Case, figures: Mapping[str, Any]) -> None:
    if case.request and figures["answer"] != case.answer:
        raise RuntimeError(f"first request answered {figures['answer']}: {figures.get('body')}")


def measure(cases: list[Case]) -> list[Samples]:
    """RUNS rounds, each running every case once, each deployment's baseline first: a round's
    ratios compare processes that ran moments apart, so the machine's load drifting hits both."""
    samples = [Samples() for _ in cases]
    for _ in range(RUNS):
        baseline_cpu: dict[str, float] = {}
        for case, case_samples in zip(cases, samples, strict=True):
            figures = run_child(case.statement, case.paths, case.env, case.request)
            _check_answer(case, figures)
            baseline = baseline_cpu.setdefault(case.deployment.title, figures["import_cpu"])
            for name, value in figures.items():
                if name.endswith(("_cpu", "_wall")):
                    case_samples.figures.setdefault(name, []).append(float(value))
                if name.endswith("_cpu"):
                    case_samples.ratios.setdefault(name, []).append(value / baseline)
    return samples


def count_instructions(valgrind: str, cases: list[Case], samples: list[Samples]) -> None:
    """Each case once under callgrind: instructions of its import, and of import + request."""
    with tempfile.TemporaryDirectory(prefix="strongroom-callgrind-") as tmp:
        for index, (case, case_samples) in enumerate(zip(cases, samples, strict=True)):
            out = Path(tmp) / f"case{index}.out"
            done = subprocess.run(  # noqa: S603 - valgrind on our own interpreter and code
                [
                    valgrind,
                    "--tool=callgrind",
                    f"--dump-before={_MARK_FUNCTION}",
                    f"--callgrind-out-file={out}",
                    CHILD_PYTHON,
                    "-c",
                    child_code(case.statement, case.paths, case.request),
                ],
                capture_output=True,
                text=True,
                # A fixed hash seed: set and dict orders, and so the work, repeat exactly.
                env={**case.env, "PYTHONHASHSEED": "0"},
                check=False,
            )
            _check_answer(case, _figures(done))
            # Dumps 1, 2 and 3 end at the marks: start-up, the import, the first request.
            parts = [_dump_total(out.with_name(f"{out.name}.{n}")) for n in (1, 2, 3, 4)]
            if parts[3] is not None or None in parts[:3]:
                raise RuntimeError("callgrind did not dump at exactly the three marks")
            case_samples.instructions["import"] = parts[1] or 0
            case_samples.instructions["first"] = (parts[1] or 0) + (parts[2] or 0)


def _dump_total(path: Path) -> int | None:
    if not path.exists():
        return None
    match = re.search(r"^totals: (\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {path.name}")
    return int(match.group(1))


_LIBRARY_FILES = """
import importlib.metadata, json, sys
files = {}
for name in sys.argv[1:]:
    dist = importlib.metadata.distribution(name)
    files[str(dist.locate_file(""))] = files.get(str(dist.locate_file("")), []) + [
        str(f) for f in dist.files or () if "__pycache__" not in f.parts and f.parts[0] != ".."
    ]
print(json.dumps(files))
"""


def copy_libraries(into: Path) -> Path:
    """The layer's libraries (layers/common/requirements.txt) as `sam build` ships them: the
    files of each distribution, no bytecode."""
    requirements = (REPO_ROOT / "layers" / "common" / "requirements.txt").read_text()
    names = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", requirements, re.MULTILINE)
    listed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [CHILD_PYTHON, "-c", _LIBRARY_FILES, *names], capture_output=True, text=True, check=True
    )
    for site, files in json.loads(listed.stdout).items():
        for name in files:
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(site) / name, target)
    return into


def compile_all(paths: list[str]) -> None:
    """Bytecode as `make build` ships it: for the runtime's version, valid whatever the mtimes."""
    subprocess.run(  # noqa: S603 - our own interpreter
        [CHILD_PYTHON, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", *paths],
        check=True,
    )


def copy_code(function: LocalFunction, into: Path, deployment: Deployment) -> list[str]:
    """The function's and its layers' own code, with bytecode or without as the deployment
    ships it, then the layer's libraries; the paths in Lambda's order."""
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
    if deployment.bytecode:
        compile_all(paths)
    return paths + deployment.libraries


def request_code(function: LocalFunction, event: dict[str, Any]) -> str:
    module, _, handler = function.handler.rpartition(".")
    return _REQUEST.format(
        name=function.name,
        memory=str(function.memory_mb),
        arn=function.arn,
        module=module,
        handler=handler,
        event=json.dumps(event),
    )


def function_paths(function: LocalFunction) -> list[str]:
    return [str(function.code_dir), *(str(layer) for layer in function.layer_dirs)]


def make_bench_org(stack: Stack, function: LocalFunction, aws_url: str) -> str:
    """The org every first request reads, made by `POST /orgs` in a process of its own."""
    env = function_environment(stack, function, aws_url)
    module = function.handler.rpartition(".")[0]
    event = http_event("POST /orgs", "/orgs", body={"name": "Bench org"})
    answer = run_child(
        f"import {module}", function_paths(function), env, request_code(function, event)
    )
    if answer["answer"] != 201:
        raise RuntimeError(f"POST /orgs answered {answer['answer']}: {answer['body']}")
    org_id: str = json.loads(answer["body"])["org_id"]
    return org_id


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


def deployments(tmp: Path) -> list[Deployment]:
    return [
        Deployment(
            "make build: bytecode shipped for the layer's libraries and our code",
            bytecode=True,
            # The interpreter's own site-packages: the same libraries, compiled at install.
            libraries=[],
        ),
        Deployment(
            "sam build alone: no bytecode (the layer's libraries and our code compile at every"
            " cold start)",
            bytecode=False,
            libraries=[str(copy_libraries(tmp / "libraries"))],
        ),
    ]


def build_cases(
    stack: Stack, functions: Mapping[str, LocalFunction], aws_url: str, tmp: Path
) -> list[Case]:
    org_id = make_bench_org(stack, functions[ORG_MAKER], aws_url)
    site = [str(REPO_ROOT / "layers" / "common")]
    env = function_environment(stack, next(iter(functions.values())), aws_url)
    cases = []
    for deployment in deployments(tmp):
        references = REFERENCES if deployment.bytecode else REFERENCES[:2]
        paths = site + deployment.libraries
        cases += [Case(label, deployment, what, paths, env) for label, what in references]
        for function in functions.values():
            if ONLY and function.logical_id not in ONLY:
                continue
            env = function_environment(stack, function, aws_url)
            module = function.handler.rpartition(".")[0]
            first = FIRST_REQUESTS[function.logical_id]
            into = tmp / f"{function.logical_id}-{deployment.bytecode}"
            cases.append(
                Case(
                    f"{function.logical_id} ({function.handler})",
                    deployment,
                    f"import {module}",
                    copy_code(function, into, deployment),
                    env,
                    request_code(function, first.event(org_id)),
                    first.answer,
                    f"+ first request: {first.what}",
                )
            )
    return cases


def report(stack: Stack, functions: Mapping[str, LocalFunction], aws_url: str) -> int:
    version = subprocess.run(  # noqa: S603 - our own interpreter
        [CHILD_PYTHON, "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    valgrind = shutil.which("valgrind") if COUNT_INSTRUCTIONS else None
    print(
        f"cold start in Lambda's environment (tracing active), Python {version}: medians of"
        f" {RUNS} rounds of fresh processes, CPU time (wall time beside it), ratios: medians of"
        " each round's ratio to the round's `import boto3` of the same deployment"
        + (
            "; instructions (callgrind, one run, bytecode shipped only) and their ratio"
            if valgrind
            else ""
        )
    )
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-") as tmp:
        cases = build_cases(stack, functions, aws_url, Path(tmp))
        results = measure(cases)
        if valgrind:
            counted = [i for i, case in enumerate(cases) if case.deployment.bytecode]
            count_instructions(valgrind, [cases[i] for i in counted], [results[i] for i in counted])
    shown = None
    baseline = 0
    over = 0
    for case, samples in zip(cases, results, strict=True):
        if case.deployment is not shown:
            shown = case.deployment
            baseline = samples.instructions.get("import", 0)
            print(f"== {shown.title}")
        if not case.request:
            row(case.label, samples, "import", baseline)
            continue
        print(case.label)
        ratio = samples.ratio("import_cpu")
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        over += ratio > TARGET_RATIO
        row("  import", samples, "import", baseline, f"  (target <= {TARGET_RATIO}x: {verdict})")
        row(f"  {case.first_label}", samples, "first", baseline)
    if over:
        print(f"{over} measured imports over the {TARGET_RATIO}x target")
    # A missed target is a failed run, whatever the figures printed before it.
    return 1 if over else 0


def row(
    label: str, samples: Samples, name: str, baseline_instructions: int, note: str = ""
) -> None:
    cpu, wall = samples.median(f"{name}_cpu"), samples.median(f"{name}_wall")
    figures = f"{cpu * 1000:7.1f} ms (wall {wall * 1000:7.1f}) {samples.ratio(f'{name}_cpu'):5.2f}x"
    count = samples.instructions.get(name)
    if count is not None and baseline_instructions:
        figures += f"  {count / 1e6:7.0f} M instr {count / baseline_instructions:5.2f}x"
    print(f"{label:<66} {figures}{note}")


if __name__ == "__main__":
    raise SystemExit(main())
