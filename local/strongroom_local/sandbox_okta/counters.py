"""What the sandbox served: requests per bucket, route and path, statuses, 429s, faults, and
the largest number of API requests in flight at once. Control requests are not counted."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Counters:
    """Thread-safe request counters; `snapshot()` is a JSON-ready copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._requests = 0
        self._by_bucket: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()
        self._by_path: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._throttled: Counter[str] = Counter()  # 429 because the bucket was spent
        self._faults: Counter[str] = Counter()
        self._unauthorized = 0
        self._in_flight = 0
        self._max_concurrent = 0

    def reset(self) -> None:
        with self._lock:
            in_flight = self._in_flight
            self._reset()
            self._in_flight = in_flight

    def started(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._max_concurrent = max(self._max_concurrent, self._in_flight)

    def finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def record(
        self,
        *,
        path: str,
        route: str | None,
        bucket: str | None,
        status: int | None,
        throttled: bool = False,
        fault: str | None = None,
        unauthorized: bool = False,
    ) -> None:
        """One API request: `status` None when no response was sent (hung or truncated)."""
        with self._lock:
            self._requests += 1
            self._by_path[path] += 1
            if route is not None:
                self._by_route[route] += 1
            if bucket is not None:
                self._by_bucket[bucket] += 1
            if status is not None:
                self._by_status[status] += 1
            if throttled and bucket is not None:
                self._throttled[bucket] += 1
            if fault is not None:
                self._faults[fault] += 1
            if unauthorized:
                self._unauthorized += 1

    def record_fault(self, fault: str) -> None:
        with self._lock:
            self._faults[fault] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "by_bucket": dict(self._by_bucket),
                "by_route": dict(self._by_route),
                "by_path": dict(self._by_path),
                "by_status": {str(status): n for status, n in sorted(self._by_status.items())},
                "rate_limited": self._by_status.get(429, 0),
                "throttled": sum(self._throttled.values()),
                "throttled_by_bucket": dict(self._throttled),
                "faults": dict(self._faults),
                "unauthorized": self._unauthorized,
                "in_flight": self._in_flight,
                "max_concurrent": self._max_concurrent,
            }
