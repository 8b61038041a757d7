"""The redacting logger: real Powertools lines, captured as written, carry no canary.

Every test uses its own service name: Powertools configures one stdlib logger per name, once
per process, so a shared name would leak configuration between tests.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from strongroom.redaction import REDACTED, RedactingFormatter, get_logger
from strongroom.redaction.exceptions import UnsafeLoggerConfiguration
from tests.unit.redaction.helpers import assert_not_leaked, canary, fullwidth


@dataclasses.dataclass
class Captured:
    logger: Logger
    stream: io.StringIO

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        """Every emitted line, each of which must be one JSON object."""
        return [json.loads(line) for line in self.text.splitlines()]


def _service() -> str:
    return f"redaction-test-{uuid.uuid4().hex}"


@pytest.fixture
def captured() -> Captured:
    stream = io.StringIO()
    return Captured(get_logger(_service(), stream=stream, level="DEBUG"), stream)


def test_message_arguments_are_scrubbed_after_formatting(captured: Captured) -> None:
    code, token = canary(), canary()
    captured.logger.info(
        "calling %s with %s",
        f"https://acme.okta.com/oauth2/v1/callback?code={code}&x=1",
        f"Authorization: Bearer {token}",
    )
    assert_not_leaked(captured.text, code, token)
    (line,) = captured.lines()
    assert line["message"] == (
        "calling https://acme.okta.com/oauth2/v1/callback?code=[REDACTED]&x=1 "
        "with Authorization: Bearer [REDACTED]"
    )


def test_an_argument_placed_after_a_secret_field_name_is_redacted_whole(
    captured: Captured,
) -> None:
    words = [canary() for _ in range(4)]
    passphrase = f"{words[0]} {words[1]};&{words[2]}\n{words[3]}"
    captured.logger.info("login failed for %s, password=%s (%d tries)", "bob", passphrase, 3)
    captured.logger.info("%s%% done, state: %*s, code=%r", 50, 8, "active", "invalid_grant")
    assert_not_leaked(captured.text, *words)
    first, second = captured.lines()
    assert first["message"] == "login failed for bob, password=[REDACTED] (3 tries)"
    # `code`/`state` keep a status word, as in text.
    assert second["message"] == "50% done, state:   active, code='invalid_grant'"


def test_a_secret_named_by_an_earlier_argument_or_a_mapping_key_is_redacted_whole(
    captured: Captured,
) -> None:
    words = [canary() for _ in range(8)]
    value = [f"{words[i]} {words[i + 1]}\n.{i}" for i in range(0, 8, 2)]
    captured.logger.info("%s=%s", "password", value[0])
    captured.logger.info("%s: %s (%s)", "client_secret", value[1], "ok")
    captured.logger.info("password=%(x)s, user=%(user)s", {"x": value[2], "user": "bob"})
    captured.logger.info("100%% sure, password=%%%s", value[3])
    assert_not_leaked(captured.text, *words)
    assert [line["message"] for line in captured.lines()] == [
        "password=[REDACTED]",
        "client_secret: [REDACTED] (ok)",
        "password=[REDACTED], user=bob",
        "100% sure, password=[REDACTED]",
    ]


def test_an_argument_on_the_line_after_a_secret_field_name_is_redacted_whole(
    captured: Captured,
) -> None:
    words = [canary() for _ in range(6)]
    captured.logger.info(
        "config:\n  password:\n    %s\n  user: %s", f"{words[0]}\n{words[1]}", "bob"
    )
    captured.logger.info("client_secret=\u00a0%s", f"{words[2]}\n{words[3]}")
    captured.logger.info("password=%s", f"{words[4]} x\r{words[5]}")
    assert_not_leaked(captured.text, *words)
    assert [line["message"] for line in captured.lines()] == [
        "config:\n  password:\n    [REDACTED]\n  user: bob",
        "client_secret=\u00a0[REDACTED]",
        "password=[REDACTED]",
    ]


def test_an_argument_in_a_yaml_block_scalar_of_a_secret_field_is_redacted_whole(
    captured: Captured,
) -> None:
    words = [canary() for _ in range(2)]
    captured.logger.info("config:\n  password: |\n    %s\n  user: %s", "\n".join(words), "bob")
    assert_not_leaked(captured.text, *words)
    assert captured.lines()[0]["message"] == "config:\n  password: [REDACTED]\n  user: bob"


def test_mapping_arguments_keep_their_field_names(captured: Captured) -> None:
    token = canary()
    captured.logger.info(
        "refreshing %(refresh_token)s for %(org_id)s",
        {
            "refresh_token": token,
            "org_id": "org_1",
        },
    )
    assert_not_leaked(captured.text, token)
    assert captured.lines()[0]["message"] == "refreshing [REDACTED] for org_1"


def test_structured_and_binary_arguments(captured: Captured) -> None:
    token, key = canary(), canary()
    captured.logger.info(
        "response %s key %r count %d", {"access_token": token, "org": "org_1"}, key.encode(), 3
    )
    assert_not_leaked(captured.text, token, key)
    message = captured.lines()[0]["message"]
    assert "'org': 'org_1'" in message
    assert message.endswith("key '[REDACTED]' count 3")


def test_nested_extra_fields(captured: Captured) -> None:
    token, code, state, password = canary(), canary(), canary(), canary()
    captured.logger.info(
        "callback",
        extra={
            "org_id": "org_1",
            "request": {
                "headers": [{"Authorization": f"Bearer {token}"}, {"accept": "application/json"}],
                "query": {"code": code, "state": state},
                "path": "/oauth/callback",
            },
            "connection": {"auth": [{"password": password, "user": "svc"}]},
        },
    )
    assert_not_leaked(captured.text, token, code, state, password)
    line = captured.lines()[0]
    assert line["org_id"] == "org_1"
    assert line["request"]["path"] == "/oauth/callback"
    assert line["request"]["headers"][1] == {"accept": "application/json"}
    assert line["connection"]["auth"][0] == {"password": REDACTED, "user": "svc"}


def test_appended_keys(captured: Captured) -> None:
    refresh, code, context_token, thread_token = canary(), canary(), canary(), canary()
    captured.logger.append_keys(
        org_id="org_1",
        session={"refresh_token": refresh},
        callback=f"https://app.example/cb?code={code}",
    )
    captured.logger.thread_safe_append_keys(upstream=f"SSWS {thread_token}")
    try:
        with captured.logger.append_context_keys(client_secret=context_token):
            captured.logger.info("first")
        captured.logger.info("second")
    finally:
        captured.logger.thread_safe_clear_keys()
    assert_not_leaked(captured.text, refresh, code, context_token, thread_token)
    first, second = captured.lines()
    assert first["client_secret"] == REDACTED
    assert first["org_id"] == second["org_id"] == "org_1"
    assert second["callback"] == "https://app.example/cb?code=[REDACTED]"
    assert second["upstream"] == "SSWS [REDACTED]"


def test_logger_exception_scrubs_exception_text(captured: Captured) -> None:
    token = canary()
    try:
        raise ValueError(f"token exchange failed: refresh_token={token} rejected")
    except ValueError:
        captured.logger.exception("oauth failed", extra={"org_id": "org_1"})
    assert_not_leaked(captured.text, token)
    line = captured.lines()[0]
    assert line["exception_name"] == "ValueError"
    # An unquoted value runs on to the line's end: "rejected" might be part of it.
    assert line["exception"].endswith(
        "\nValueError: token exchange failed: refresh_token=[REDACTED]"
    )
    assert line["stack_trace"]["value"] == "token exchange failed: refresh_token=[REDACTED]"
    assert line["org_id"] == "org_1"


def test_exception_chains_are_scrubbed(captured: Captured) -> None:
    cause_token, context_secret, outer_token = canary(), canary(), canary()

    def exchange() -> None:
        try:
            try:
                raise KeyError(f'{{"client_secret": "{context_secret}"}}')
            except KeyError:
                raise ConnectionError(f"POST failed with Bearer {cause_token}") from None
        except ConnectionError as exc:
            raise RuntimeError(f"refresh failed, id_token=eyJ{outer_token}.a.b") from exc

    try:
        try:
            exchange()
        except RuntimeError as exc:
            # An implicit context on top of the explicit cause.
            raise LookupError(f"while handling: client_secret={context_secret}") from exc
    except LookupError:
        captured.logger.exception("refresh failed")
    assert_not_leaked(captured.text, cause_token, context_secret, outer_token)
    exception_text = captured.lines()[0]["exception"]
    assert "ConnectionError: POST failed with Bearer [REDACTED]" in exception_text
    assert "The above exception was the direct cause" in exception_text


def test_exception_notes_and_exc_info_at_any_level(captured: Captured) -> None:
    token = canary()
    error = RuntimeError("upstream refused")
    error.add_note(f"Authorization: Bearer {token}")
    captured.logger.warning("retrying", exc_info=error)
    assert_not_leaked(captured.text, token)
    assert captured.lines()[0]["exception_notes"] == ["Authorization: Bearer [REDACTED]"]


def test_dict_and_json_messages(captured: Captured) -> None:
    secret, other = canary(), canary()
    captured.logger.info({"client_secret": secret, "org_id": "org_1"})
    captured.logger.info(json.dumps({"auth": {"private_key": other}, "kid": "k1"}))
    assert_not_leaked(captured.text, secret, other)
    first, second = captured.lines()
    assert first["message"] == {"client_secret": REDACTED, "org_id": "org_1"}
    assert second["message"] == {"auth": {"private_key": REDACTED}, "kid": "k1"}


def test_a_record_that_cannot_be_formatted_prints_nothing_raw(
    captured: Captured, capsys: pytest.CaptureFixture[str]
) -> None:
    token = canary()
    # pytest's own capture handler on the root logger would re-raise the formatting error.
    logging.getLogger(captured.logger.name).propagate = False
    captured.logger.error("two placeholders %s %s, one argument", f"Bearer {token}")  # noqa: PLE1206
    output = capsys.readouterr()
    assert_not_leaked(captured.text + output.out + output.err, token)
    (line,) = captured.lines()
    assert line["message"] == "log record could not be formatted"
    assert line["message_template"] == "two placeholders %s %s, one argument"
    assert line["level"] == "ERROR"


def test_non_secret_context_survives(captured: Captured) -> None:
    captured.logger.info(
        "backup finished for %s", "org_01HZX", extra={"connection_id": "con_1", "status": 200}
    )
    line = captured.lines()[0]
    assert line["message"] == "backup finished for org_01HZX"
    assert line["connection_id"] == "con_1"
    assert line["status"] == 200
    assert line["level"] == "INFO"
    assert line["service"].startswith("redaction-test-")


class LambdaContext:
    function_name = "strongroom-credential-store"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:strongroom"
    aws_request_id = "req-1"


def test_logged_events_are_scrubbed(captured: Captured, event_loader: Callable[..., Any]) -> None:
    token, code, state = canary(), canary(), canary()
    event = event_loader("http_api_v2_base")
    event["headers"]["authorization"] = f"Bearer {token}"
    event["rawQueryString"] = f"code={code}&state={state}"
    event["queryStringParameters"] = {"code": code, "state": state}
    original = json.loads(json.dumps(event))

    @captured.logger.inject_lambda_context(log_event=True, clear_state=True)
    def handler(event: dict[str, Any], context: object) -> str:
        captured.logger.info("handled")
        return "ok"

    assert handler(event, LambdaContext()) == "ok"
    assert event == original  # the handler still sees the real event
    assert_not_leaked(captured.text, token, code, state)
    logged_event, handled = captured.lines()
    assert logged_event["message"]["headers"]["host"] == "api.strongroom.example"
    assert logged_event["function_request_id"] == handled["function_request_id"] == "req-1"


def test_default_stream_is_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    token = canary()
    get_logger(_service()).info("header Authorization: Bearer %s", token)
    out = capsys.readouterr().out
    assert_not_leaked(out, token)
    assert json.loads(out)["message"] == "header Authorization: Bearer [REDACTED]"


def test_a_service_configured_earlier_without_redaction_is_taken_over() -> None:
    token, other = canary(), canary()
    stream = io.StringIO()
    service = _service()
    plain = Logger(service=service, stream=stream)
    plain.append_keys(org_id="org_1")
    redacting = get_logger(service)
    redacting.info("via get_logger Bearer %s", token)
    plain.info("via the earlier logger Bearer %s", other)
    assert_not_leaked(stream.getvalue(), token, other)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["org_id"] for line in lines] == ["org_1", "org_1"]
    assert [line["service"] for line in lines] == [service, service]


def test_child_loggers_write_through_the_redacting_parent() -> None:
    token = canary()
    stream = io.StringIO()
    service = _service()
    get_logger(service, stream=stream)
    get_logger(service, child=True).info("child says Bearer %s", token)
    assert_not_leaked(stream.getvalue(), token)
    assert json.loads(stream.getvalue())["message"] == "child says Bearer [REDACTED]"


def test_formatter_options_are_kept() -> None:
    secret = canary()
    stream = io.StringIO()

    class Connection:
        def __repr__(self) -> str:
            return f"Connection(client_secret='{secret}')"

    logger = get_logger(
        _service(),
        stream=stream,
        log_record_order=["message", "level"],
        json_default=lambda value: f"custom:{value!r}",
    )
    logger.info("loaded", extra={"connection": Connection()})
    assert_not_leaked(stream.getvalue(), secret)
    line = json.loads(stream.getvalue())
    assert next(iter(line)) == "message"
    assert line["connection"] == "custom:Connection(client_secret='[REDACTED]')"


def test_only_a_redacting_formatter_is_accepted() -> None:
    with pytest.raises(UnsafeLoggerConfiguration):
        get_logger(_service(), logger_formatter=LambdaPowertoolsFormatter())
    stream = io.StringIO()
    token = canary()
    get_logger(_service(), stream=stream, logger_formatter=RedactingFormatter()).info(
        "Bearer %s", token
    )
    assert_not_leaked(stream.getvalue(), token)


def test_other_handlers_still_receive_the_callers_record(captured: Captured) -> None:
    # The formatter works on a copy: scrubbing for one handler must not rewrite the record.
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    collector = Collect()
    captured.logger.addHandler(collector)
    try:
        captured.logger.info("value %s", {"token": "t-1"})
    finally:
        captured.logger.removeHandler(collector)
    assert seen[0].args == {"token": "t-1"}
    assert captured.lines()[0]["message"] == "value {'token': '[REDACTED]'}"


@pytest.mark.parametrize("extra", range(0, 12), ids=lambda n: f"prefix+{n}")
def test_an_argument_after_a_long_secret_field_name_is_redacted_whole(
    captured: Captured, extra: int
) -> None:
    # However the name's start falls against the window of text the check reads (a letter, a
    # digit, a `-` or a `.` first), its end still names a secret.
    words = [canary() for _ in range(2)]
    name = "service_account_primary_production_eu_west_1_backup_okta_" + "9-x." * extra + "token"
    captured.logger.info(f"renewed {name}=%s for %s", f"{words[0]}\n{words[1]}", "org_1")
    assert_not_leaked(captured.text, *words)
    assert captured.lines()[0]["message"] == f"renewed {name}=[REDACTED] for org_1"


def test_an_argument_after_a_fullwidth_secret_field_name_is_redacted_whole(
    captured: Captured,
) -> None:
    words = [canary() for _ in range(2)]
    captured.logger.info(fullwidth("client_secret=") + "%s ok", f"{words[0]}\n{words[1]}")
    assert_not_leaked(captured.text, *words)
    assert captured.lines()[0]["message"] == fullwidth("client_secret=") + "[REDACTED] ok"


def test_credentials_as_a_value_go_and_as_fields_stay(captured: Captured) -> None:
    words = [canary() for _ in range(3)]
    captured.logger.info("loaded credentials=%s", f"{words[0]} {words[1]}")
    captured.logger.info(
        "connection",
        extra={
            "credentials": [{"field": "token", "fingerprint": "9f3a"}],
            "Pwd": words[2],
            "credential_id": "cred_1",
        },
    )
    assert_not_leaked(captured.text, *words)
    first, second = captured.lines()
    assert first["message"] == "loaded credentials=[REDACTED]"
    assert second["credentials"] == [{"field": "token", "fingerprint": "9f3a"}]
    assert second["Pwd"] == REDACTED
    assert second["credential_id"] == "cred_1"


def test_name_value_structures_in_extra_fields_and_arguments(captured: Captured) -> None:
    words = [canary() for _ in range(4)]
    headers = [
        {"name": "Accept", "value": "*/*"},
        {"Name": "Authorization", "Value": f"Digest response={words[0]}"},
        {"key": "client_secret", "value": words[1]},
    ]
    captured.logger.info("request", extra={"headers": headers})
    captured.logger.info("form %s", [{"name": "password", "value": f"{words[2]} {words[3]}"}])
    assert_not_leaked(captured.text, *words)
    first, second = captured.lines()
    assert first["headers"] == [
        {"name": "Accept", "value": "*/*"},
        {"Name": "Authorization", "Value": REDACTED},
        {"key": "client_secret", "value": REDACTED},
    ]
    assert second["message"] == "form [{'name': 'password', 'value': '[REDACTED]'}]"
