"""Okta's org-wide rate limits: requests per window per endpoint bucket, and their headers.

Okta counts requests per endpoint group ("bucket") per minute and reports the bucket of each
request in `X-Rate-Limit-Limit`, `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset` (UTC epoch
seconds at which the window ends); a request beyond the limit gets 429 with errorCode E0000047.
Windows here are fixed and aligned to multiples of their length on the injected clock.

Default limits are Okta's per-minute "Workforce identity" figures from the management rate-limit
table (developer.okta.com/docs/reference/rl-global-mgmt): lists of users 600, a user by id
2,000, groups (except a group by id) 500, a group by id 1,000, apps and everything under
`/api/v1/apps/{id}/` 100, an app by id 500, every other `/api/v1` endpoint 1,200.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from strongroom_local.sandbox_okta.exceptions import InvalidSandboxSetting

USERS = "/api/v1/users"
USER_BY_ID = "/api/v1/users/{id}"
GROUPS = "/api/v1/groups"
GROUP_BY_ID = "/api/v1/groups/{id}"
APPS = "/api/v1/apps"
APP_BY_ID = "/api/v1/apps/{id}"
OTHER = "/api/v1"
BUCKETS = (USERS, USER_BY_ID, GROUPS, GROUP_BY_ID, APPS, APP_BY_ID, OTHER)


@dataclass(frozen=True)
class RateLimit:
    """`limit` requests per `window_seconds`."""

    limit: int
    window_seconds: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise InvalidSandboxSetting("limit: must be a positive integer")
        if not isinstance(self.window_seconds, int | float) or not (
            0 < self.window_seconds <= 86_400
        ):
            raise InvalidSandboxSetting("window_seconds: must be in (0, 86400]")


DEFAULT_RATE_LIMITS: Mapping[str, RateLimit] = {
    USERS: RateLimit(600),
    USER_BY_ID: RateLimit(2_000),
    GROUPS: RateLimit(500),
    GROUP_BY_ID: RateLimit(1_000),
    APPS: RateLimit(100),
    APP_BY_ID: RateLimit(500),
    OTHER: RateLimit(1_200),
}


def bucket_for(path: str) -> str:
    """The bucket a request path counts against."""
    segments = path.strip("/").split("/")[2:] if path.startswith("/api/v1/") else []
    if not segments:
        return OTHER
    top, depth = segments[0], len(segments)
    if top == "users":
        return USERS if depth == 1 else USER_BY_ID if depth == 2 else OTHER
    if top == "groups":
        return GROUP_BY_ID if depth == 2 and segments[1] != "rules" else GROUPS
    if top == "apps":
        return APP_BY_ID if depth == 2 else APPS
    return OTHER


@dataclass(frozen=True)
class Admission:
    """The outcome of counting one request, and the headers that report it."""

    allowed: bool
    bucket: str
    limit: int
    remaining: int
    reset: int  # epoch seconds

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Rate-Limit-Limit", str(self.limit)),
            ("X-Rate-Limit-Remaining", str(self.remaining)),
            ("X-Rate-Limit-Reset", str(self.reset)),
        ]


class _Window:
    def __init__(self) -> None:
        self.start = -math.inf
        self.used = 0
        self.peak = 0


class RateLimiter:
    """Counts requests per bucket and window; thread-safe; `clock` returns epoch seconds."""

    def __init__(
        self,
        limits: Mapping[str, RateLimit] | None = None,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limits = dict(DEFAULT_RATE_LIMITS)
        self._windows = {bucket: _Window() for bucket in BUCKETS}
        if limits:
            self.configure(limits)

    def now(self) -> float:
        return self._clock()

    def configure(self, limits: Mapping[str, RateLimit]) -> None:
        """Replace the limits of the named buckets (others keep theirs); windows restart."""
        unknown = sorted(set(limits) - set(BUCKETS))
        if unknown:
            raise InvalidSandboxSetting(f"{unknown[0]}: not a rate-limit bucket")
        with self._lock:
            for bucket, limit in limits.items():
                self._limits[bucket] = limit
                self._windows[bucket] = _Window()

    def reset(self) -> None:
        """Start a fresh window in every bucket (peaks are kept until counters are reset)."""
        with self._lock:
            for window in self._windows.values():
                window.start, window.used = -math.inf, 0

    def reset_peaks(self) -> None:
        with self._lock:
            for window in self._windows.values():
                window.peak = 0

    def _current(self, bucket: str, now: float) -> tuple[RateLimit, _Window, int]:
        limit, window = self._limits[bucket], self._windows[bucket]
        start = math.floor(now / limit.window_seconds) * limit.window_seconds
        if start != window.start:
            window.start, window.used = start, 0
        return limit, window, math.ceil(start + limit.window_seconds)

    def admit(self, bucket: str) -> Admission:
        """Count one request against `bucket`, or refuse it if the window is spent."""
        with self._lock:
            limit, window, reset = self._current(bucket, self._clock())
            if window.used >= limit.limit:
                return Admission(False, bucket, limit.limit, 0, reset)
            window.used += 1
            window.peak = max(window.peak, window.used)
            return Admission(True, bucket, limit.limit, limit.limit - window.used, reset)

    def peek(self, bucket: str) -> Admission:
        """The bucket's state without counting a request."""
        with self._lock:
            limit, window, reset = self._current(bucket, self._clock())
            remaining = max(limit.limit - window.used, 0)
            return Admission(remaining > 0, bucket, limit.limit, remaining, reset)

    def snapshot(self) -> dict[str, dict[str, float]]:
        with self._lock:
            now = self._clock()
            document: dict[str, dict[str, float]] = {}
            for bucket in BUCKETS:
                limit, window, reset = self._current(bucket, now)
                document[bucket] = {
                    "limit": limit.limit,
                    "window_seconds": limit.window_seconds,
                    "remaining": limit.limit - window.used,
                    "reset": reset,
                    "peak_window_usage": window.peak,
                }
            return document
