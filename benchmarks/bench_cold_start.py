"""Cold start: import time of each function's handler module in a fresh process.

Baseline, measured in the same run: `import boto3` alone in a fresh process. Target: each
handler at most 1.5x the baseline. Run with `make bench` or `.venv/bin/python <this file>`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from strongroom_local.routes import functions
from strongroom_local.template import REPO_ROOT, load_template

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
TARGET_RATIO = 1.5

_TIMER = """
import sys, time
sys.path[:0] = {paths!r}
start = time.perf_counter()
{statement}
print(time.perf_counter() - start)
"""


def _import_seconds(statement: str, paths: list[str], env: dict[str, str]) -> float:
    samples = []
    for _ in range(RUNS):
        code = _TIMER.format(paths=paths, statement=statement)
        out = subprocess.run(  # noqa: S603 - our own interpreter and code
            [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "1"})
    layer = str(REPO_ROOT / "layers" / "common")
    baseline = _import_seconds("import boto3", [layer], env)
    print(f"baseline: import boto3  median {baseline * 1000:7.1f} ms over {RUNS} fresh processes")
    # What any function with a validating Powertools resolver imports before any code of ours:
    # shows how much of a handler's ratio is the required stack rather than Strongroom.
    floor = _import_seconds(
        "import boto3, pydantic, aws_lambda_powertools.event_handler.openapi.params", [layer], env
    )
    print(
        f"floor: boto3 + pydantic + Powertools validation  median {floor * 1000:7.1f} ms"
        f"  ratio {floor / baseline:4.2f}x"
    )
    worst = 0.0
    for spec in functions(load_template()).values():
        module = spec.handler.rpartition(".")[0]
        seconds = _import_seconds(f"import {module}", [str(spec.code_dir), layer], env)
        ratio = seconds / baseline
        worst = max(worst, ratio)
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(
            f"{spec.logical_id:<28} median {seconds * 1000:7.1f} ms  "
            f"ratio {ratio:4.2f}x (target <= {TARGET_RATIO}x) {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
