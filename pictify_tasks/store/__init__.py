"""The package's state: the cancel ledger (and, later, workflow links)."""

from __future__ import annotations

from pictify_tasks.store.base import CancelBegin, StateStore
from pictify_tasks.store.memory import MemoryStore
from pictify_tasks.store.redis_store import RedisStore

__all__ = ["CancelBegin", "MemoryStore", "RedisStore", "StateStore"]
