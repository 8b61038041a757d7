"""`SandboxControl`: the control surface of a sandbox running in another process.

    control = SandboxControl(url, control_token)      # e.g. from the stack's stack.json
    control.set_faults(error_500=2, path_prefix="/api/v1/groups")
    control.counters()["throttled"]

Requests go straight to the loopback URL (never through a proxy: the token must not travel).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from strongroom_local.sandbox_okta.exceptions import ControlRequestRefused, InvalidSandboxSetting


class SandboxControl:
    def __init__(self, url: str, control_token: str, *, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self._token = control_token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def _call(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - the sandbox's own loopback URL
            f"{self.url}/__sandbox/{route}",
            data=data,
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
            },
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = json.loads(error.read() or b"{}").get("message", f"HTTP {error.code}")
            if error.code == 400:
                raise InvalidSandboxSetting(message) from None
            raise ControlRequestRefused(message) from None

    def info(self) -> dict[str, Any]:
        return dict(self._call("GET", "info"))

    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "counters"))

    def reset_counters(self) -> dict[str, Any]:
        return dict(self._call("POST", "counters/reset"))

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "faults"))

    def set_faults(self, **plan: Any) -> dict[str, Any]:
        """Replace the fault plan (FaultPlan's fields as keywords)."""
        return dict(self._call("PUT", "faults", plan))

    def clear_faults(self) -> dict[str, Any]:
        return dict(self._call("DELETE", "faults"))

    def rate_limits(self) -> dict[str, Any]:
        return dict(self._call("GET", "rate-limits"))

    def set_rate_limits(self, limits: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
        """`{"/api/v1/users": {"limit": 100, "window_seconds": 60}, ...}`."""
        return dict(self._call("PUT", "rate-limits", dict(limits)))

    def reset_rate_limits(self) -> dict[str, Any]:
        return dict(self._call("POST", "rate-limits/reset"))
