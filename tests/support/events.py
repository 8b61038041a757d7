"""The one loader of sample events: `events/<name>.json` at the repository root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    """The event `events/<name>.json` as a fresh dict (callers may change it)."""
    path = EVENTS_DIR / f"{name}.json"
    event: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return event
