"""Secrets out of every log line, error text and response.

- `redact_text(text)`: scrubs secrets recognisable in free text.
- `redact(value)`: a deep copy of a structure with secrets under secret field names (and in
  every string) replaced.
- `get_logger(service, **kwargs)`: the Powertools Logger every function uses; its
  `RedactingFormatter` scrubs each line (message, `%` arguments, extra fields, appended keys,
  exception text) before it is written.
- `safe_exception_text(exc)`: an exception and its chain as one scrubbed line, no traceback.

A secret shows only as `REDACTED` (`"[REDACTED]"`).
"""

from __future__ import annotations

from strongroom.redaction.keys import REDACTED
from strongroom.redaction.logger import RedactingFormatter, get_logger
from strongroom.redaction.text import redact_text, safe_exception_text
from strongroom.redaction.values import redact

__all__ = [
    "REDACTED",
    "RedactingFormatter",
    "get_logger",
    "redact",
    "redact_text",
    "safe_exception_text",
]
