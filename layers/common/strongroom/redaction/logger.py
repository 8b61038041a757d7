"""The redacting Powertools logger every function uses.

Why a formatter and not a `logging.Filter`: a filter sees the record before formatting, so it
cannot see the keys Powertools keeps in its formatter (`append_keys`, thread-local keys,
`inject_lambda_context`'s), nor the exception text the formatter renders from `exc_info`
(including the `raise ... from ...` chain); and a filter on a logger is skipped for records
propagated from child loggers. The formatter's `serialize` receives the finished structure, the
exact dict that becomes the line, so scrubbing there covers every field by construction.

Before formatting, the `%` arguments are scrubbed by structure (a dict argument keeps its
field names, so `logger.info("%(token)s", {"token": t})` cannot leak), and after formatting the
whole line is scrubbed again as data.

Records also propagate to the root logger, whose handlers would print them raw. Powertools puts
a filter dropping the service's records on the root handlers present when the logger is made
(in Lambda, the runtime's), unless POWERTOOLS_LOG_DEDUPLICATION_DISABLED is set: no deployment
of ours may set it, nor add root handlers later (`logging.basicConfig`).
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import (
    BasePowertoolsFormatter,
    LambdaPowertoolsFormatter,
)
from aws_lambda_powertools.logging.types import LogRecord

from strongroom.redaction.exceptions import UnsafeLoggerConfiguration
from strongroom.redaction.keys import REDACTED
from strongroom.redaction.text import FIELD_NAME_WINDOW, value_follows_secret_name
from strongroom.redaction.values import redact, scrub

# Logger keyword arguments that configure the formatter; Powertools ignores them when it is
# given a formatter, so `get_logger` hands them to ours.
_FORMATTER_OPTIONS = frozenset(
    {
        "json_serializer",
        "json_deserializer",
        "json_default",
        "datefmt",
        "use_datetime_directive",
        "log_record_order",
        "utc",
        "use_rfc3339",
        "serialize_stacktrace",
    }
)


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, scrubbing every field of every line before it is written."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            return super().format(_with_scrubbed_args(record))
        except Exception as exc:  # noqa: BLE001
            # Otherwise logging's handleError would print the raw message and arguments.
            return self._unformattable(record, exc)

    def serialize(self, log: LogRecord) -> str:
        return super().serialize(scrub(log, render=self.json_default))

    def _unformattable(self, record: logging.LogRecord, exc: Exception) -> str:
        line = {
            "level": record.levelname,
            "location": f"{record.funcName}:{record.lineno}",
            "message": "log record could not be formatted",
            "message_template": record.msg,
            "error_type": type(exc).__name__,
            "service": self.log_format.get("service"),
        }
        return json.dumps(scrub(line, render=str), separators=(",", ":"), ensure_ascii=False)


def _scrub_argument(argument: object) -> object:
    if isinstance(argument, bytes | bytearray | memoryview):
        return REDACTED
    if isinstance(argument, Mapping | list | tuple | set | frozenset):
        return redact(argument)
    return argument  # scalars and objects: scrubbed as text once formatted


# A %-format conversion, as `str % args` reads one (each `*` takes an argument too).
_CONVERSION = re.compile(r"%(?:\(([^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[^hlL]")


def _secret_arguments(
    template: str, arguments: tuple[Any, ...] | Mapping[str, Any]
) -> set[int | str]:
    """The arguments (indexes, or keys of a mapping) whose placeholder follows a secret field's
    name (`password=%s`, `%s=%s` with "password" first): redacted whole, since a value with
    spaces or newlines would outrun the text pass. The text before each placeholder is read as
    it will be formatted (earlier arguments in place)."""
    secret: set[int | str] = set()
    before = ""
    done = index = 0
    for match in _CONVERSION.finditer(template):
        before += template[done : match.start()]
        done = match.end()
        if match[0] == "%%":
            before = (before + "%")[-FIELD_NAME_WINDOW:]
            continue
        slot: int | str
        if isinstance(arguments, Mapping):
            if match[1] is None or match[1] not in arguments:
                break  # formatting fails: the record is unformattable, printed as such
            slot = match[1]
            value = arguments[slot]
        else:
            index += match[0].count("*")
            if index >= len(arguments):
                break
            slot, index = index, index + 1
            value = arguments[slot]
        if value_follows_secret_name(before, value):
            secret.add(slot)
            value = REDACTED
        before = (before + str(value))[-FIELD_NAME_WINDOW:]
    return secret


def _with_scrubbed_args(record: logging.LogRecord) -> logging.LogRecord:
    if not record.args:
        return record
    # A copy: other handlers of the same record keep what the caller passed.
    clone = copy.copy(record)
    arguments = record.args if isinstance(record.args, Mapping) else tuple(record.args)
    secret = _secret_arguments(record.msg, arguments) if isinstance(record.msg, str) else set()
    if isinstance(arguments, Mapping):
        scrubbed = redact(dict(arguments))
        clone.args = {key: REDACTED if key in secret else scrubbed[key] for key in scrubbed}
    else:
        clone.args = tuple(
            REDACTED if index in secret else _scrub_argument(argument)
            for index, argument in enumerate(arguments)
        )
    return clone


def get_logger(service: str | None = None, **kwargs: Any) -> Logger:
    """A Powertools `Logger` whose every line goes through `RedactingFormatter`.

    Takes `Logger`'s arguments. If the service's logger was already set up elsewhere with
    another formatter (Powertools then reuses that set-up and ignores a new formatter), its
    handler is switched to a redacting formatter that keeps the existing keys.
    """
    formatter = kwargs.pop("logger_formatter", None)
    if formatter is None:
        options = {name: kwargs.pop(name) for name in list(kwargs) if name in _FORMATTER_OPTIONS}
        formatter = RedactingFormatter(**options)
    elif not isinstance(formatter, RedactingFormatter):
        raise UnsafeLoggerConfiguration("the logger formatter must be a RedactingFormatter")
    logger = Logger(service=service, logger_formatter=formatter, **kwargs)
    _ensure_redacting(logger, formatter)
    return logger


def _ensure_redacting(logger: Logger, formatter: RedactingFormatter) -> None:
    handler: logging.Handler | None = logger.registered_handler
    if handler is None:
        return  # a child logger whose parent is not set up yet has nowhere to write
    current = handler.formatter
    if isinstance(current, RedactingFormatter):
        return
    formatter.append_keys(service=logger.service)
    if isinstance(current, BasePowertoolsFormatter):
        formatter.append_keys(**current.get_current_keys())
    handler.setFormatter(formatter)
