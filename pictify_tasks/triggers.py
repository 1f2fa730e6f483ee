"""The triggers that cancel a batch before it ends by itself (``pictify_cancel_on``)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_CANCEL_ON", "Trigger", "parse_cancel_on"]


class Trigger(str, enum.Enum):
    """What ends a batch's owner early and so cancels its batches."""

    REVOKE = "revoke"
    FAILURE = "failure"
    TIME_LIMIT = "time_limit"
    WORKER_LOST = "worker_lost"
    CHAIN_FAILURE = "chain_failure"


def parse_cancel_on(value: Any) -> frozenset[Trigger]:
    """Triggers from a list, a tuple or a comma-separated string; ``ValueError`` if unknown."""
    items: Iterable[Any] = value.split(",") if isinstance(value, str) else value
    if isinstance(items, (bytes, dict)) or not isinstance(items, Iterable):
        raise ValueError(f"a list of triggers, got {value!r}")
    names = [str(item).strip().lower() for item in items]
    try:
        return frozenset(Trigger(name) for name in names if name)
    except ValueError:
        known = ", ".join(t.value for t in Trigger)
        raise ValueError(f"triggers are {known}; got {value!r}") from None


#: Today's behaviour: only a revoke cancels a workflow's batches.
DEFAULT_CANCEL_ON: frozenset[Trigger] = frozenset({Trigger.REVOKE})
