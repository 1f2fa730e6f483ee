"""The package's state: the cancel ledger and the workflow links (Redis, or in-process)."""

from __future__ import annotations

from pictify_tasks.store.base import (
    CancelBegin,
    CancelState,
    Linked,
    RevokedWork,
    StateStore,
    StateStoreError,
)
from pictify_tasks.store.memory import MemoryStore
from pictify_tasks.store.records import FailureRecord, OutcomeRecord, StartRequest, WantedCancel
from pictify_tasks.store.redis_store import RedisStore

__all__ = [
    "CancelBegin",
    "CancelState",
    "FailureRecord",
    "Linked",
    "MemoryStore",
    "OutcomeRecord",
    "RedisStore",
    "RevokedWork",
    "StartRequest",
    "StateStore",
    "StateStoreError",
    "WantedCancel",
]
