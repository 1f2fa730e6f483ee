"""What the Redis store's parts share: its keys, and how a Redis failure becomes transient.

Every key of one batch carries the hash tag ``{b:<batch id>}``, every key of
one linked id ``{w:<id>}``, every start ``{s:<start id>}``, and each index its
own tag, so every script touches one slot and the store works on Redis
Cluster too.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Callable, TypeVar, Union, cast

import redis
from redis.cluster import RedisCluster

from pictify_tasks.store.base import StateStoreError

__all__ = [
    "RedisClient",
    "RedisKeys",
    "load",
    "pair",
    "progress",
    "progress_value",
    "text",
    "transient",
]

F = TypeVar("F", bound=Callable[..., Any])
#: A Redis server, or a Redis Cluster through any of its nodes.
RedisClient = Union[redis.Redis, RedisCluster]


def transient(method: F) -> F:
    """Turn a Redis failure into :class:`StateStoreError` (the caller retries)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StateStoreError(f"state store: {type(exc).__name__}: {exc}") from exc

    return cast(F, wrapper)


class RedisKeys:
    """A Redis client and the names of the package's keys in it."""

    def __init__(self, client: RedisClient, *, prefix: str = "pictify") -> None:
        self._redis = client
        self._prefix = prefix

    @property
    def redis(self) -> RedisClient:
        return self._redis

    def batch_key(self, batch_id: str, part: str) -> str:
        return f"{self._prefix}:{{b:{batch_id}}}:{part}"

    def link_key(self, link_id: str, part: str) -> str:
        return f"{self._prefix}:{{w:{link_id}}}:{part}"

    def _start_key(self, start_id: str, part: str = "start") -> str:
        return f"{self._prefix}:{{s:{start_id}}}:{part}"

    def _wanted_index(self) -> str:
        return f"{self._prefix}:{{wanted}}:index"

    def _deadlines(self) -> str:
        return f"{self._prefix}:{{deadlines}}:index"


def progress_value(completed: int, total: int) -> str:
    """A batch's progress as the store keeps it: ``completed/total``."""
    return f"{completed}/{total}"


def progress(value: str) -> tuple[int, int] | None:
    """:func:`progress_value` read back as numbers (``None`` when absent or unreadable)."""
    completed, _, total = value.partition("/")
    try:
        return int(completed), int(total)
    except ValueError:
        return None


def pair(member: Any) -> tuple[str, str]:
    """A ``scope\\x00id`` member of a batch's own link set."""
    scope, link_id = text(member).split("\x00", 1)
    return scope, link_id


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load(value: Any) -> dict[str, Any]:
    data = json.loads(text(value))
    if not isinstance(data, dict):
        raise ValueError("a ledger record is not a JSON object")
    return data
