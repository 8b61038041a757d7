"""Fault injection: what goes wrong with the next API requests, by count or by probability.

A `FaultPlan` applies to API requests whose path starts with `path_prefix`, after the first
`skip` of them have passed untouched (so a fault can land mid-backup). Per matching request, at
most one of these happens, in this order of precedence:

- hang: the request is read and never answered (the connection closes only when the plan is
  replaced or cleared, `hang_seconds` pass, or the sandbox stops);
- 429 storm: 429 E0000047 even though the bucket has budget left; with honest headers
  (`X-Rate-Limit-Remaining: 0`, `X-Rate-Limit-Reset` = the end of the bucket's window) or
  dishonest ones (the real remaining budget, and a reset time that is already past);
- 500: Okta's E0000009 internal server error;
- truncation: the full `Content-Length` is announced, half the body is sent, the connection
  closes.

`delay_seconds` slows every matching request that is answered (before the answer). Counted
faults (`hang`, `storm_429`, `error_500`, `truncate`: "the next N") are used up first; each
`*_probability` then draws from a generator seeded with `seed`. Faulted requests still count
against their rate-limit bucket, as they would at Okta.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from strongroom_local.sandbox_okta.exceptions import InvalidSandboxSetting

FaultAction = Literal["hang", "storm_429", "error_500", "truncate"]


def _count(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidSandboxSetting(f"{name}: must be a non-negative integer")


def _probability(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidSandboxSetting(f"{name}: must be a number from 0 to 1")


@dataclass(frozen=True)
class FaultPlan:
    path_prefix: str = "/api/v1/"
    skip: int = 0
    hang: int = 0
    hang_seconds: float | None = None  # None: until replaced, cleared or stopped
    storm_429: int = 0
    storm_429_probability: float = 0.0
    storm_honest: bool = True
    error_500: int = 0
    error_500_probability: float = 0.0
    truncate: int = 0
    truncate_probability: float = 0.0
    delay_seconds: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.path_prefix, str) or not self.path_prefix.startswith("/"):
            raise InvalidSandboxSetting("path_prefix: must be a path starting with /")
        for name in ("skip", "hang", "storm_429", "error_500", "truncate", "seed"):
            _count(name, getattr(self, name))
        for name in ("storm_429_probability", "error_500_probability", "truncate_probability"):
            _probability(name, getattr(self, name))
        if not isinstance(self.storm_honest, bool):
            raise InvalidSandboxSetting("storm_honest: must be true or false")
        if (
            isinstance(self.delay_seconds, bool)
            or not isinstance(self.delay_seconds, int | float)
            or not 0 <= self.delay_seconds <= 600
        ):
            raise InvalidSandboxSetting("delay_seconds: must be a number from 0 to 600")
        if self.hang_seconds is not None and (
            isinstance(self.hang_seconds, bool)
            or not isinstance(self.hang_seconds, int | float)
            or not 0 < self.hang_seconds <= 3600
        ):
            raise InvalidSandboxSetting("hang_seconds: must be null or a number in (0, 3600]")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> FaultPlan:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidSandboxSetting(f"{unknown[0]}: not a fault setting")
        return cls(**dict(values))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


NO_FAULTS = FaultPlan()


@dataclass(frozen=True)
class FaultDecision:
    action: FaultAction | None = None
    delay_seconds: float = 0.0
    storm_honest: bool = True
    hang_seconds: float | None = None
    release: threading.Event | None = None


_NONE = FaultDecision()


class FaultInjector:
    """Decides, per request, which fault of the current plan applies. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan = NO_FAULTS
        self._left = NO_FAULTS
        self._matched = 0
        self._random = random.Random(0)  # noqa: S311 - fault timing, not security
        self._release = threading.Event()

    @property
    def plan(self) -> FaultPlan:
        return self._plan

    def set(self, plan: FaultPlan) -> None:
        """Replace the plan (its counts start afresh); requests hung by the old one are freed."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()
            self._plan = self._left = plan
            self._matched = 0
            self._random = random.Random(plan.seed)  # noqa: S311 - fault timing, not security

    def clear(self) -> None:
        self.set(NO_FAULTS)

    def release_all(self) -> None:
        """Free every hung request (the sandbox is stopping)."""
        with self._lock:
            self._release.set()

    def _draw(self, probability: float) -> bool:
        return probability > 0 and self._random.random() < probability

    def decide(self, path: str) -> FaultDecision:
        with self._lock:
            plan = self._plan
            if plan is NO_FAULTS or not path.startswith(plan.path_prefix):
                return _NONE
            self._matched += 1
            if self._matched <= plan.skip:
                return _NONE
            left = self._left
            action: FaultAction | None = None
            if left.hang:
                action, left = "hang", replace(left, hang=left.hang - 1)
            elif left.storm_429:
                action, left = "storm_429", replace(left, storm_429=left.storm_429 - 1)
            elif self._draw(plan.storm_429_probability):
                action = "storm_429"
            elif left.error_500:
                action, left = "error_500", replace(left, error_500=left.error_500 - 1)
            elif self._draw(plan.error_500_probability):
                action = "error_500"
            elif left.truncate:
                action, left = "truncate", replace(left, truncate=left.truncate - 1)
            elif self._draw(plan.truncate_probability):
                action = "truncate"
            self._left = left
            return FaultDecision(
                action=action,
                delay_seconds=plan.delay_seconds,
                storm_honest=plan.storm_honest,
                hang_seconds=plan.hang_seconds,
                release=self._release,
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "plan": self._plan.as_dict(),
                "left": {
                    name: getattr(self._left, name)
                    for name in ("hang", "storm_429", "error_500", "truncate")
                },
                "matched": self._matched,
            }
