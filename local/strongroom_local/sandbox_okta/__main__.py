"""`python -m strongroom_local.sandbox_okta`: a sandbox Okta on its own, until Ctrl-C or SIGTERM.

Prints one line of JSON when it listens: `{"sandbox_okta": {"url", "host_port", "api_token",
"control_token", "seed", "sizes"}}`. For benchmarks and debugging; `strongroom local` runs one
inside the stack.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from strongroom_local.sandbox_okta.exceptions import InvalidSandboxSetting
from strongroom_local.sandbox_okta.org import OrgSpec
from strongroom_local.sandbox_okta.server import SandboxOkta


def _size(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError("expected NAME=COUNT, e.g. groups=5000")
    return name, int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m strongroom_local.sandbox_okta")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: free)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--users", type=int, default=25)
    parser.add_argument(
        "--size",
        type=_size,
        action="append",
        default=[],
        metavar="NAME=COUNT",
        help="any other OrgSpec size (groups, apps, group_rules, ...); repeatable",
    )
    parser.add_argument("--api-token", help="default: generated")
    parser.add_argument("--control-token", help="default: generated")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = OrgSpec.from_mapping({"seed": args.seed, "users": args.users, **dict(args.size)})
    except InvalidSandboxSetting as error:
        print(f"sandbox_okta: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox = SandboxOkta(
        spec, api_token=args.api_token, control_token=args.control_token, port=args.port
    )
    with sandbox:
        ready = {
            "url": sandbox.url,
            "host_port": sandbox.host_port,
            "api_token": sandbox.api_token,
            "control_token": sandbox.control_token,
            "seed": spec.seed,
            "sizes": spec.as_dict(),
        }
        sys.stdout.write(json.dumps({"sandbox_okta": ready}) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
