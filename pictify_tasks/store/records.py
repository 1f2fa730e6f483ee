"""The ledger's records, typed: a cancel's final outcome, and its last failure.

They are stored as JSON (Redis) or as the values themselves (memory); both
round-trip through :meth:`to_json` / :meth:`from_json`, which also reads the
untyped dicts older versions wrote.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from pictify_tasks.results import CancelBatchResult

__all__ = ["FailureRecord", "OutcomeRecord"]


@dataclass(frozen=True)
class OutcomeRecord:
    """A batch's final cancel outcome: a fact, recorded once."""

    batch_id: str
    status: str | None
    outcome: str
    attempts: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutcomeRecord:
        return cls(
            batch_id=str(data.get("batch_id", "")),
            status=_str_or_none(data.get("status")),
            outcome=str(data.get("outcome", "")),
            attempts=_int(data.get("attempts")),
            message=str(data.get("message") or ""),
        )

    def as_result(self) -> CancelBatchResult:
        """The task's public result (the same fields)."""
        return cast(CancelBatchResult, self.to_json())


@dataclass(frozen=True)
class FailureRecord:
    """The last failed attempt of a cancel; not final unless ``final``.

    ``error`` names the error's type (``ServerError``...), or ``interrupted``
    when the attempt ended without an answer (a bug, a worker shutting down).
    """

    batch_id: str
    error: str
    message: str
    status: int | None
    attempts: int
    final: bool
    at: float

    @classmethod
    def interrupted(cls, batch_id: str, attempts: int) -> FailureRecord:
        return cls(
            batch_id,
            "interrupted",
            "the attempt ended without an answer",
            None,
            attempts,
            False,
            time.time(),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FailureRecord:
        status = data.get("status")
        at = data.get("at")
        return cls(
            batch_id=str(data.get("batch_id", "")),
            error=str(data.get("error", "")),
            message=str(data.get("message") or ""),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            attempts=_int(data.get("attempts")),
            final=bool(data.get("final")),
            at=float(at) if isinstance(at, (int, float)) else 0.0,
        )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
