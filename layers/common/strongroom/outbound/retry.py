"""When to try a request again and how long to wait first."""

from __future__ import annotations

import datetime
import email.utils
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Rate-limit reset headers in the order they are trusted. Okta's X-Rate-Limit-Reset is epoch
# seconds; RateLimit-Reset (IETF draft) is delta seconds; X-RateLimit-Reset is either.
_RESET_HEADERS = ("x-rate-limit-reset", "ratelimit-reset", "x-ratelimit-reset")
# A reset value this large is an epoch time (2001-09-09), not a delay.
_EPOCH_THRESHOLD = 1_000_000_000


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    `max_attempts` counts the first try. A wait the server asks for (Retry-After, rate-limit
    reset) is honoured up to `max_wait` seconds.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_wait: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if min(self.base_delay, self.max_delay, self.max_wait) < 0:
            raise ValueError("delays must not be negative")

    def backoff(self, retry_number: int, random: Callable[[], float]) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**retry_number)]."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(retry_number, 62))
        return ceiling * min(max(random(), 0.0), 1.0)

    def wait_before_retry(
        self,
        retry_number: int,
        *,
        headers: Mapping[str, str] | None,
        rate_limited: bool,
        now: float,
        random: Callable[[], float],
    ) -> float:
        """Seconds to sleep before retry `retry_number` (0 for the first retry)."""
        asked = None
        if headers is not None:
            asked = server_asked_wait(headers, now, rate_limited=rate_limited)
        if asked is not None and asked > 0:
            return min(asked, self.max_wait)
        return min(self.backoff(retry_number, random), self.max_wait)


def server_asked_wait(
    headers: Mapping[str, str], now: float, *, rate_limited: bool
) -> float | None:
    """Seconds until the server said to try again, or None if it did not say (or said nonsense).

    Retry-After counts for any status; rate-limit reset headers only for a 429 (Okta sends
    them on every response, and a 500 is no reason to wait for the next rate window).
    `headers` must be case-insensitive (ResponseHeaders). `now` is epoch seconds.
    """
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        seconds = _retry_after_seconds(retry_after.strip(), now)
        if seconds is not None:
            return seconds
    if not rate_limited:
        return None
    for name in _RESET_HEADERS:
        value = headers.get(name)
        if value is None:
            continue
        try:
            reset = float(value.strip())
        except ValueError:
            continue
        if not math.isfinite(reset):
            continue
        return reset - now if reset >= _EPOCH_THRESHOLD else reset
    return None


def _retry_after_seconds(value: str, now: float) -> float | None:
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)  # "-0000": UTC with no claim about locality
    return when.timestamp() - now
