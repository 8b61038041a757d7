"""The process one local Lambda function runs in: run by path, standard library only.

Started by `strongroom_local.runtime` with the function's environment. Like Lambda's Python
runtime it puts the function folder and its layers first on `sys.path`, imports the handler
module once (so each function has its own `app` module, warm between invocations) and calls
the handler with the event and a context object.

Protocol, one JSON document per line: the parent writes `{"code_dir", "layer_dirs",
"handler"}` then one `{"event", "context"}` per invocation on stdin; the worker answers
`{"ready": true}` (or `{"ready": false, "errorType": ...}`) and then `{"ok": true, "result"}` or
`{"ok": false, "errorType"}` per invocation on its original stdout. The handler's own stdout
(print, loggers) is redirected to stderr, which the parent copies into the stack's log, so
nothing a handler prints can corrupt the protocol. Tracebacks go to that log only.

The worker runs on the stack's own interpreter, whose environment also holds the developer's
tools (moto, pytest, yaml, the editable `strongroom`). A function may import only what it would
find in Lambda: the standard library, its own folder, its layers' folders, the distributions
its layers' `requirements.txt` pin (as `sam build` installs them) and the SDK the Lambda Python
runtime ships (boto3 and its dependencies). Any other top-level import fails as it would in
Lambda, so a requirement missing from a layer, or a `Layers:` entry missing from a function,
fails locally rather than only once deployed.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import json
import os
import re
import signal
import sys
import time
import traceback
from typing import IO, Any


class LambdaContext:
    """The attributes and method of the context object of Lambda's Python runtime."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.aws_request_id: str = fields["aws_request_id"]
        self.function_name: str = fields["function_name"]
        self.function_version: str = fields["function_version"]
        self.invoked_function_arn: str = fields["invoked_function_arn"]
        # A string, as Lambda's runtime reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE.
        self.memory_limit_in_mb: str = fields["memory_limit_in_mb"]
        self.log_group_name: str = fields["log_group_name"]
        self.log_stream_name: str = fields["log_stream_name"]
        self.identity = None
        self.client_context = None
        self._deadline_ms: int = fields["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


# What the Lambda Python runtime itself provides besides the standard library.
RUNTIME_DISTRIBUTIONS = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "urllib3", "python-dateutil", "six"}
)
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(layer_dir: str) -> set[str]:
    """The distributions a layer's requirements.txt names (one per requirement line)."""
    try:
        with open(os.path.join(layer_dir, "requirements.txt"), encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return set()
    names = set()
    for line in text.splitlines():
        match = _REQUIREMENT.match(line)
        if match:
            names.add(_canonical(match.group(1)))
    return names


# Standard modules the runtime's Python no longer has, by the version that removed them.
_REMOVED_STDLIB = {
    (3, 12): {"asynchat", "asyncore", "distutils", "imp", "smtpd"},
    # PEP 594's dead batteries, and lib2to3.
    (3, 13): {
        *("aifc", "audioop", "cgi", "cgitb", "chunk", "crypt", "imghdr", "lib2to3", "mailcap"),
        *("msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau"),
        *("telnetlib", "uu", "xdrlib"),
    },
}


def removed_stdlib(runtime: tuple[int, int]) -> set[str]:
    """The standard modules of this interpreter that `runtime`'s Python no longer has."""
    return {
        name for version, names in _REMOVED_STDLIB.items() if runtime >= version for name in names
    }


class RemovedFromRuntime(importlib.abc.MetaPathFinder):
    """Refuses a standard module the Lambda runtime's (newer) Python no longer has. It must
    raise, as the standard library's own finder would find it next (importlib.util.find_spec
    raises for it too, where Lambda answers None)."""

    def __init__(self, names: set[str]) -> None:
        self._names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self._names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)


class InstalledForLambda(importlib.abc.MetaPathFinder):
    """Serves from the interpreter's site-packages only the top-level modules Lambda would
    have: the layers' pinned distributions and the runtime's SDK. For any other name it finds
    nothing, exactly as if it were not installed (importlib.util.find_spec answers None)."""

    def __init__(self, site_dirs: list[str], allowed: set[str], distributions: set[str]) -> None:
        self._site_dirs = site_dirs
        self._allowed = allowed
        self._distributions = distributions

    def find_distributions(self, context: Any = None) -> Any:
        """The metadata of the distributions Lambda would have (importlib.metadata.version)."""
        name = getattr(context, "name", None)
        found = importlib.machinery.PathFinder.find_distributions(
            importlib.metadata.DistributionFinder.Context(name=name, path=self._site_dirs)
        )
        return (d for d in found if _canonical(d.metadata["Name"] or "") in self._distributions)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        # Submodules are found through their package's __path__, once it was allowed.
        if path is not None or fullname not in self._allowed:
            return None
        return importlib.machinery.PathFinder.find_spec(fullname, self._site_dirs)


def restrict_imports(code_dirs: list[str], runtime: str) -> None:
    """Make the function's imports those of Lambda: its folder and layers first on sys.path,
    then the standard library; the developer's site-packages only through InstalledForLambda;
    no finder a .pth file installed (editable installs); none of what `runtime` removed."""
    wanted = set(RUNTIME_DISTRIBUTIONS)
    for directory in code_dirs:
        wanted |= _pinned(directory)
    # Read while site-packages is still on sys.path (packages_distributions searches it).
    allowed = {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if any(_canonical(d) in wanted for d in distributions)
    }
    site_dirs = [d for d in sys.path if os.path.basename(d) in ("site-packages", "dist-packages")]
    sys.path[:] = [*code_dirs, *(d for d in sys.path if d not in site_dirs)]
    standard = (
        importlib.machinery.BuiltinImporter,
        importlib.machinery.FrozenImporter,
        importlib.machinery.PathFinder,
    )
    version = re.fullmatch(r"python(\d+)\.(\d+)", runtime)
    removed = removed_stdlib((int(version[1]), int(version[2]))) if version else set()
    sys.meta_path[:] = [
        RemovedFromRuntime(removed),
        *(finder for finder in sys.meta_path if finder in standard),
        InstalledForLambda(site_dirs, allowed, wanted),
    ]
    importlib.invalidate_caches()


def _send(channel: IO[bytes], message: dict[str, Any]) -> None:
    channel.write(json.dumps(message).encode("utf-8") + b"\n")
    channel.flush()


def _load_handler(spec: str) -> Any:
    module_name, _, function_name = spec.rpartition(".")
    module = importlib.import_module(module_name.replace("/", "."))
    return getattr(module, function_name)


def main() -> int:
    # The stack stops its workers by closing their stdin; a terminal's Ctrl-C is its business.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests = os.fdopen(os.dup(0), "rb")
    responses = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    init = json.loads(requests.readline())
    restrict_imports([init["code_dir"], *init["layer_dirs"]], init.get("runtime", "python3.13"))
    os.chdir(init["code_dir"])
    try:
        handler = _load_handler(init["handler"])
    except Exception as exc:  # noqa: BLE001 - the runtime reports any init failure
        print(f"[ERROR] Runtime.ImportModuleError: {type(exc).__name__}", file=sys.stderr)
        traceback.print_exc()
        _send(responses, {"ready": False, "errorType": "Runtime.ImportModuleError"})
        return 1
    _send(responses, {"ready": True})
    for line in requests:
        request = json.loads(line)
        context = LambdaContext(request["context"])
        try:
            result = handler(request["event"], context)
        except Exception as exc:  # noqa: BLE001 - the runtime reports any handler failure
            print(f"[ERROR] {type(exc).__name__} in {context.aws_request_id}", file=sys.stderr)
            traceback.print_exc()
            _send(responses, {"ok": False, "errorType": type(exc).__name__})
            continue
        try:
            payload = json.dumps({"ok": True, "result": result})
        except (TypeError, ValueError) as exc:
            print(f"[ERROR] Runtime.MarshalError: {exc}", file=sys.stderr)
            _send(responses, {"ok": False, "errorType": "Runtime.MarshalError"})
            continue
        responses.write(payload.encode("utf-8") + b"\n")
        responses.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
