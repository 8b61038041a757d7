"""Clients made when first used, not when a function builds its services at cold start.

A function builds all its clients for its first request, but that request uses only some of
them: each boto3 client costs its service model and endpoint rules (S3's are the largest), the
outbound client costs requests and its TLS stack. `on_first_use(factory)` stands in for the
object and makes it at the first attribute access, so a cold start pays for what its requests
touch (benchmarks/bench_cold_start.py measures import plus a first request).

    s3 = lazy_client(session, "s3")     # no service model loaded yet
    s3.put_object(...)                  # made here, then used as is

The stand-in forwards attribute access only (methods, `meta`, `exceptions`), which is all our
code does with a client: `isinstance` and operators see the stand-in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from strongroom.aws_limits import PROMPT_CALLS

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

T = TypeVar("T")
# A boto3 Session is not thread-safe: clients first used on two threads at once (a sweep's
# parallel attempts) are made one at a time.
_MAKING_CLIENTS = threading.Lock()


class _OnFirstUse:
    """Makes its object at the first attribute access, once, and forwards to it."""

    __slots__ = ("_factory", "_lock", "_made")

    def __init__(self, factory: Callable[[], object]) -> None:
        self._factory: Callable[[], object] | None = factory
        self._made: object = None
        self._lock = threading.Lock()

    def _object(self) -> object:
        if self._factory is not None:
            with self._lock:  # two threads' first uses make one object
                if self._factory is not None:
                    self._made = self._factory()
                    self._factory = None
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._object(), name)

    def __repr__(self) -> str:
        state = "not made yet" if self._factory is not None else repr(self._made)
        return f"<made on first use: {state}>"


def on_first_use(factory: Callable[[], T]) -> T:
    """A stand-in for `factory()`'s object, which is made at the first attribute access."""
    return cast(T, _OnFirstUse(factory))


def made(stand_in: T) -> T:
    """The object behind a stand-in, made now if it is not yet; any other object as it is.
    (Tests patch methods on it: the stand-in itself takes no attributes.)"""
    if isinstance(stand_in, _OnFirstUse):
        return cast(T, stand_in._object())
    return stand_in


def lazy_client(
    session: boto3.Session, service_name: str, *, config: Config | None = None, **options: Any
) -> Any:
    """`session.client(service_name, **options)`, made when first used, with the limits of
    `strongroom.aws_limits` (PROMPT_CALLS unless `config` says otherwise; its other settings,
    such as a signature version, are kept)."""
    # merge() takes only what `config` itself sets: the prompt limits stay unless it sets its own.
    config = PROMPT_CALLS if config is None else PROMPT_CALLS.merge(config)

    def make() -> Any:
        with _MAKING_CLIENTS:
            return session.client(service_name, config=config, **options)  # type: ignore[call-overload]

    return on_first_use(make)
