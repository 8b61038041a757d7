"""The `strongroom` command: `local`, `dev-token`, `fire-schedule`, `invoke`, `secret`,
`sandbox-token`, `audit-verify`, `rotate-dek` and `reseal`.

`strongroom local` prints exactly one line of JSON on stdout when everything is ready (it begins
`{"ready":` and carries the API, AWS and issuer URLs), then a short walk-through; everything else
(its own log, the functions' output) goes to stderr. Ctrl-C or SIGTERM stops it, exit status 0;
during startup too, and then it prints no ready line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

# Only what parsing the arguments needs is imported here: `local` installs its signal handlers
# as soon as they are parsed, and everything else (boto3, moto, the functions' layer) loads
# after, so that Ctrl-C or SIGTERM stops it cleanly from its first moments.
from strongroom.plain_urls import loopback_host_port
from strongroom_local.exceptions import (
    ControlRequestFailed,
    InvalidScheduleExpression,
    LocalStackError,
    NoSandbox,
    StackAlreadyRunning,
    StackNotRunning,
    StartInterrupted,
    UnknownSecret,
    UnsafeStateDir,
)
from strongroom_local.template import TEMPLATE_PATH

if TYPE_CHECKING:
    from strongroom_local.sandbox_okta import OrgSpec
    from strongroom_local.stack import LocalStack

log = logging.getLogger("strongroom_local")
DEFAULT_STATE_DIR = Path(".strongroom")
# dev-token's own policy, not the stack's (its authorizer only checks that exp is in the future):
# a dev token is for tests and demos, so none lives longer than 7 days, and its sign-in is at
# most 7 days old.
MAX_DEV_TOKEN_SECONDS = 7 * 24 * 3600
# fire-schedule and invoke wait as long as the invocation runs or waits for a worker (bounded by
# the function's Timeout, up to 900 s, and by the busy pool's queue, which the CLI cannot know);
# the stack sends an interim `100 Continue` every KEEPALIVE_SECONDS (5 s) meanwhile, so silence
# this long means it is suspended or hung.
INVOCATION_SILENCE_SECONDS = 30.0
# The operator commands run in the stack's own process against its moto, with no function or
# worker to wait for: seconds for a local org, longer only when moto (one AWS request at a time)
# is busy with the functions' calls or the org's audit chain is long. Five minutes, the control
# listener's own wait on a silent client, is far beyond that and still ends the wait on a
# suspended or hung stack.
ORG_COMMAND_TIMEOUT_SECONDS = 300.0


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("a port is 0-65535 (0 picks a free one)")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a whole number of at least 1")
    return value


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value: int | None = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def _subject(text: str) -> str:
    from strongroom.api.identity import is_subject  # noqa: PLC0415 - loads the functions' layer

    # The functions' own rule: a token for any other subject would only ever be refused.
    if not is_subject(text):
        raise argparse.ArgumentTypeError(
            "not a subject the functions accept (1-128 of A-Z a-z 0-9 . _ : @ | + -,"
            " not starting system: or operator:)"
        )
    return text


def _state_dir_path(text: str) -> Path:
    # An unset shell variable gives "", which would put the private key in the current folder.
    if not text:
        raise argparse.ArgumentTypeError("empty; name a directory (default: .strongroom)")
    return Path(text)


def _loopback_host_port(text: str) -> str:
    """A --allow-host entry, refused unless the functions' settings will take it."""
    try:
        loopback_host_port(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a loopback HOST:PORT ({exc})") from None
    return text


def _event_file(text: str) -> Any:
    """The event in a JSON file, read when the arguments are: a missing or broken file is a usage
    error (exit 2), not a traceback."""
    try:
        return json.loads(Path(text).read_text("utf-8"))
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{text} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"{text} is not JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from None


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def _sandbox_size(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not value.isdigit():
        raise argparse.ArgumentTypeError("expected NAME=COUNT, e.g. group_rules=10")
    return name, int(value)


def _sandbox_spec(args: argparse.Namespace) -> OrgSpec | None:
    from strongroom_local.sandbox_okta import OrgSpec  # noqa: PLC0415

    if args.no_sandbox:
        return None
    sizes = {
        "seed": args.sandbox_seed,
        "users": args.sandbox_users,
        "groups": args.sandbox_groups,
        "apps": args.sandbox_apps,
        **dict(args.sandbox_size),
    }
    return OrgSpec.from_mapping(sizes)


# Commands on one org of the running stack: their help, and their control endpoint's path.
ORG_COMMANDS = {
    "audit-verify": (
        "verify an org's audit chain in the running stack (exit 1 if anything is wrong)",
        "/audit/{org}/verify",
    ),
    "rotate-dek": (
        "make a new data-encryption key an org's current one (audited)",
        "/keys/{org}/rotate",
    ),
    "reseal": (
        "re-encrypt an org's connection secrets under its current DEK (audited)",
        "/keys/{org}/reseal",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strongroom", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def state_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--state-dir",
            type=_state_dir_path,
            default=DEFAULT_STATE_DIR,
            help="dev issuer key and running-stack info (default: .strongroom)",
        )

    local = commands.add_parser("local", help="run the whole stack on 127.0.0.1")
    local.add_argument("--api-port", type=_port, default=3000, help="HTTP API port (3000)")
    local.add_argument("--aws-port", type=_port, default=0, help="moto server port (0: free)")
    local.add_argument("--control-port", type=_port, default=0, help="control port (0: free)")
    local.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="SAM template")
    local.add_argument(
        "--parameter",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="template parameter override (repeatable)",
    )
    local.add_argument(
        "--allow-host",
        type=_loopback_host_port,
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="loopback host:port the functions may reach (STRONGROOM_DEV_ALLOW_HOSTS)",
    )
    local.add_argument(
        "--max-workers", type=_positive_int, default=4, help="workers per function (4)"
    )
    local.add_argument("--no-schedules", action="store_true", help="do not run the timer")
    sandbox = local.add_argument_group("sandbox Okta (a seeded org behind an Okta-like API)")
    sandbox.add_argument("--no-sandbox", action="store_true", help="do not run the sandbox Okta")
    sandbox.add_argument("--sandbox-port", type=_port, default=0, help="its port (0: free)")
    sandbox.add_argument("--sandbox-seed", type=int, default=1, help="seed of its data (1)")
    sandbox.add_argument("--sandbox-users", type=int, default=25, help="users (25)")
    sandbox.add_argument("--sandbox-groups", type=int, default=5, help="groups, Everyone too (5)")
    sandbox.add_argument("--sandbox-apps", type=int, default=4, help="apps (4)")
    sandbox.add_argument(
        "--sandbox-size",
        type=_sandbox_size,
        action="append",
        default=[],
        metavar="NAME=COUNT",
        help="any other size of the org (group_rules, admins, ...; see OrgSpec), repeatable",
    )
    local.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    state_dir(local)

    token = commands.add_parser("dev-token", help="print a JWT the local stack accepts")
    token.add_argument(
        "--sub", type=_subject, required=True, help="subject (user id), as the functions accept"
    )
    token.add_argument("--email")
    token.add_argument(
        "--ttl",
        type=_int_between(1, MAX_DEV_TOKEN_SECONDS),
        default=3600,
        help=f"lifetime in seconds, 1 to {MAX_DEV_TOKEN_SECONDS} (3600); dev-token's policy: no dev"
        " token lives longer than 7 days",
    )
    token.add_argument(
        "--auth-age",
        type=_int_between(0, MAX_DEV_TOKEN_SECONDS),
        default=0,
        help=f"seconds since sign-in (sets auth_time), 0 to {MAX_DEV_TOKEN_SECONDS} (0)",
    )
    token.add_argument("--scope", action="append", default=[], help="scope (repeatable)")
    state_dir(token)

    fire = commands.add_parser("fire-schedule", help="fire a function's schedule now")
    fire.add_argument("function", help="logical id of the function")
    fire.add_argument("--event", help="event name, when the function has several schedules")
    state_dir(fire)

    invoke = commands.add_parser("invoke", help="invoke a function of the running stack")
    invoke.add_argument("function", help="logical id of the function")
    invoke.add_argument(
        "--event-file",
        dest="event",
        type=_event_file,
        default={},
        metavar="EVENT_FILE",
        help="JSON event (default: {})",
    )
    state_dir(invoke)

    secret = commands.add_parser("secret", help="print a secret of the running stack")
    secret.add_argument("name", help="secret name (printed at start) or logical id")
    secret.add_argument(
        "--active", action="store_true", help="only the newest of its active values"
    )
    state_dir(secret)

    sandbox_token = commands.add_parser(
        "sandbox-token", help="print the API token of the running stack's sandbox Okta"
    )
    state_dir(sandbox_token)

    for name, (help_text, _) in ORG_COMMANDS.items():
        on_org = commands.add_parser(name, help=help_text)
        on_org.add_argument("org_id", help="the org")
        state_dir(on_org)
    return parser


# ---- local --------------------------------------------------------------------------------


def _program() -> str:
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "strongroom":
        return shlex.quote(os.path.relpath(argv0))
    return "strongroom"


def walkthrough(ready: dict[str, Any], state_dir: Path) -> str:
    program, state = _program(), shlex.quote(str(state_dir))
    api = ready["api_url"]
    lines = [
        "",
        "Strongroom runs locally. Ctrl-C stops it.",
        f"  API          {api}",
        f"  AWS (moto)   {ready['aws_url']}  (aws --endpoint-url {ready['aws_url']} ...,"
        " any fake credentials)",
        f"  Dev issuer   {ready['issuer']}  JWKS {ready['jwks_url']}",
        f"  State        {ready['state_dir']}",
        "",
        "Try it:",
        f"  TOKEN=$({program} dev-token --state-dir {state} --sub alice --email alice@example.com)",
        f'  curl -s -X POST {api}/orgs -H "Authorization: Bearer $TOKEN"'
        " -H 'Content-Type: application/json' -d '{\"name\": \"Acme\"}'",
        f'  curl -s {api}/orgs/<org_id>/members -H "Authorization: Bearer $TOKEN"',
    ]
    if ready["schedules"]:
        functions = sorted({s["function"] for s in ready["schedules"]})
        lines.append(f"  {program} fire-schedule {functions[0]} --state-dir {state}")
    lines += _sandbox_walkthrough(ready, api)
    if ready.get("secrets"):
        lines += ["", "Secrets (generated at start, in Secrets Manager at the AWS URL above):"]
        lines += [f"  {secret['name']}" for secret in ready["secrets"]]
        first = shlex.quote(ready["secrets"][0]["name"])
        lines.append(f"  read one: {program} secret {first} --active --state-dir {state}")
    if ready["routes"]:
        lines += ["", "Routes:"]
        for route in ready["routes"]:
            lock = "JWT " if route["protected"] else "open"
            lines.append(f"  {lock} {route['route']:<60} {route['function']}")
    else:
        lines += ["", "The template declares no HttpApi routes yet."]
    return "\n".join(lines)


def _sandbox_walkthrough(ready: dict[str, Any], api: str) -> list[str]:
    sandbox = ready.get("sandbox_okta")
    if not sandbox:
        return []
    sizes = sandbox["sizes"]
    token = sandbox["api_token"]
    connection = json.dumps(
        {
            "name": "Sandbox Okta",
            "provider": "okta",
            "domain": sandbox["domain"],
            "auth": {"method": "api_token", "token": token},
            "schedule": "rate(1 day)",
        }
    )
    return [
        "",
        f"Sandbox Okta  {sandbox['url']}  ({sizes['users']} users, {sizes['groups']} groups,"
        f" {sizes['apps']} apps; API token {token})",
        f'  curl -s "{sandbox["url"]}/api/v1/users?limit=2" -H "Authorization: SSWS {token}"',
        "  Connect it (its domain is allowed to the functions as STRONGROOM_DEV_ALLOW_HOSTS):",
        f'  curl -s -X POST {api}/orgs/<org_id>/connections -H "Authorization: Bearer $TOKEN"'
        f" -H 'Content-Type: application/json' -d '{connection}'",
    ]


def _isolate_from_real_aws() -> None:
    """The stack's own process must never pick up a developer's AWS profile or credentials."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def run_local(args: argparse.Namespace) -> int:
    """`strongroom local`: its signal handlers first, then everything else."""
    stop_requested = threading.Event()
    stacks: list[LocalStack] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()
        for stack in stacks:
            stack.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _isolate_from_real_aws()
    from strongroom_local.sandbox_okta import InvalidSandboxSetting  # noqa: PLC0415
    from strongroom_local.stack import LocalStack, StackOptions  # noqa: PLC0415

    try:
        sandbox_spec = _sandbox_spec(args)
    except InvalidSandboxSetting as exc:
        print(f"strongroom local: sandbox: {exc}", file=sys.stderr)
        return 2
    options = StackOptions(
        template_path=args.template.resolve(),
        state_dir=args.state_dir,
        api_port=args.api_port,
        aws_port=args.aws_port,
        control_port=args.control_port,
        parameters=dict(args.parameter),
        allow_hosts=tuple(args.allow_host),
        max_workers=args.max_workers,
        run_schedules=not args.no_schedules,
        sandbox_okta=sandbox_spec,
        sandbox_okta_port=args.sandbox_port,
    )
    stack = LocalStack(options)
    stacks.append(stack)
    if stop_requested.is_set():  # a signal came while it loaded: stop before anything starts
        log.info("stopped before it was ready")
        return 0
    try:
        ready = stack.start()
    except StartInterrupted:
        log.info("stopped before it was ready")
        return 0
    except (StackAlreadyRunning, UnsafeStateDir) as exc:
        print(f"strongroom local: {exc}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("the local stack could not start")
        return 1
    try:
        # A stop asked for after startup's last check is still before ready: no ready line.
        if not stack.stop_requested:
            sys.stdout.write(json.dumps(ready) + "\n")
            sys.stdout.flush()
            sys.stdout.write(walkthrough(ready, args.state_dir) + "\n")
            sys.stdout.flush()
            stack.wait()
    finally:
        log.info("stopping")
        stack.stop()
    return 0


# ---- commands against the running stack ---------------------------------------------------


def control_request(
    state_dir: Path, path: str, body: Any = None, *, read_timeout: float
) -> dict[str, Any]:
    """POST to the running stack's control endpoint with its control token. ControlRequestFailed
    if the stack refuses it, hangs up, or sends nothing for `read_timeout` seconds."""
    import http.client  # noqa: PLC0415
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    from strongroom_local.stack import read_stack_file  # noqa: PLC0415

    info = read_stack_file(state_dir)
    data = json.dumps(body if body is not None else {}).encode()
    request = urllib.request.Request(  # noqa: S310 - the URL is the stack's own loopback one
        info["control_url"] + path,
        data=data,
        method="POST",
        headers={
            "Authorization": f"Bearer {info['control_token']}",
            "Content-Type": "application/json",
        },
    )
    # No proxies: the control endpoint is on loopback, and its token must not travel elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # The timeout bounds each wait for a byte (urllib skips the interim 100 responses), not
        # the whole request: a stack that stops or dies closes the connection, which ends it too.
        with opener.open(request, timeout=read_timeout) as response:
            document: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            document = json.loads(exc.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):
            raise ControlRequestFailed(f"HTTP {exc.code}") from None
        if exc.code != 502:
            raise ControlRequestFailed(document.get("message", f"HTTP {exc.code}")) from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _silent(read_timeout) from None
        raise ControlRequestFailed(f"the stack did not answer: {exc.reason}") from None
    except TimeoutError:
        raise _silent(read_timeout) from None
    except (OSError, http.client.HTTPException) as exc:
        # Raised while the answer is read (urllib wraps only the sending): the connection was
        # reset or closed before a whole answer came.
        reason = str(exc) or type(exc).__name__
        raise ControlRequestFailed(f"the stack did not answer: {reason}") from None
    except ValueError:
        raise ControlRequestFailed("the stack's answer is not JSON") from None
    return document


def _silent(seconds: float) -> ControlRequestFailed:
    return ControlRequestFailed(
        f"the stack sent nothing for {seconds:g} s (suspended or hung?); gave up waiting"
    )


def _fire(args: argparse.Namespace) -> int:
    query = f"?{urlencode({'event': args.event})}" if args.event else ""
    document = control_request(
        args.state_dir,
        f"/schedules/{quote(args.function, safe='')}/fire{query}",
        read_timeout=INVOCATION_SILENCE_SECONDS,
    )
    print(json.dumps(document))
    return 0 if document.get("ok") else 1


def _invoke(args: argparse.Namespace) -> int:
    document = control_request(
        args.state_dir,
        f"/functions/{quote(args.function, safe='')}/invoke",
        args.event,
        read_timeout=INVOCATION_SILENCE_SECONDS,
    )
    print(json.dumps(document))
    return 0 if document.get("ok") else 1


def _secret(args: argparse.Namespace) -> int:
    from strongroom_local.runtime import FAKE_CREDENTIALS  # noqa: PLC0415
    from strongroom_local.stack import read_stack_file  # noqa: PLC0415

    info = read_stack_file(args.state_dir)
    names = {secret["logical_id"]: secret["name"] for secret in info.get("secrets", [])}
    name = names.get(args.name, args.name)
    if name not in names.values():
        raise UnknownSecret(f"the running stack has no secret {args.name}")
    # Imported here: only this command needs boto3, and only against the stack's own moto.
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415
    from botocore.exceptions import BotoCoreError  # noqa: PLC0415

    client = boto3.client(
        "secretsmanager",
        endpoint_url=info["aws_url"],
        region_name=info["region"],
        aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"],
        # One read of the stack's moto, as an operator command is bounded: no retries, which
        # would multiply the wait on a suspended stack.
        config=Config(read_timeout=ORG_COMMAND_TIMEOUT_SECONDS, retries={"total_max_attempts": 1}),
    )
    try:
        value = client.get_secret_value(SecretId=name)["SecretString"]
    except BotoCoreError as exc:
        raise ControlRequestFailed(f"the stack's AWS did not answer: {exc}") from None
    if args.active:
        active = json.loads(value).get("active") or []
        if not active:
            raise UnknownSecret(f"secret {name} has no active value")
        value = active[0]
    print(value)
    return 0


def _org_command(args: argparse.Namespace) -> int:
    path = ORG_COMMANDS[args.command][1].format(org=quote(args.org_id, safe=""))
    document = control_request(args.state_dir, path, read_timeout=ORG_COMMAND_TIMEOUT_SECONDS)
    print(json.dumps(document))
    if args.command == "audit-verify":
        return 0 if document.get("ok") else 1
    return 0


def _sandbox_token(args: argparse.Namespace) -> int:
    from strongroom_local.stack import read_stack_file  # noqa: PLC0415

    sandbox = read_stack_file(args.state_dir).get("sandbox_okta")
    if not sandbox:
        raise NoSandbox("the running stack runs no sandbox Okta (started with --no-sandbox)")
    print(sandbox["api_token"])
    return 0


def _dev_token(args: argparse.Namespace) -> int:
    from strongroom_local.issuer import mint_dev_token  # noqa: PLC0415
    from strongroom_local.stack import read_stack_file  # noqa: PLC0415

    try:
        read_stack_file(args.state_dir)
    except StackNotRunning:
        # Still minted: a stack started there later accepts it. But a mistyped --state-dir
        # gets a key of its own, whose tokens no running stack accepts.
        print(
            f"strongroom dev-token: warning: no stack is running on {args.state_dir}"
            " (mistyped?); only a stack started there will accept this token",
            file=sys.stderr,
        )
    token = mint_dev_token(
        args.state_dir,
        args.sub,
        now=time.time(),
        ttl_seconds=args.ttl,
        auth_age_seconds=args.auth_age,
        email=args.email,
        scopes=args.scope,
    )
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "local":
        return run_local(args)
    handlers = {
        "dev-token": _dev_token,
        "fire-schedule": _fire,
        "invoke": _invoke,
        "secret": _secret,
        "sandbox-token": _sandbox_token,
        **dict.fromkeys(ORG_COMMANDS, _org_command),
    }
    try:
        return handlers[args.command](args)
    except (LocalStackError, InvalidScheduleExpression) as exc:
        print(f"strongroom {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
