"""What the API answers, as values: parsed from either spelling of its bodies.

The client turns HTTP into these; nothing here knows HTTP. Older responses
spell counts ``totalCount``/``completedCount`` and ids ``id``; both are read.
Texts are cut to 300 characters: an answer's size is the API's choice, what
this package keeps (results, the ledger) must not be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pictify_tasks.redaction import clip
from pictify_tasks.results import BatchProgress
from pictify_tasks.statuses import FINISHED_STATUSES, TERMINAL_STATUSES

__all__ = [
    "BatchInfo",
    "BatchStart",
    "CancelResult",
    "batch_info_from",
    "batch_start_from",
    "cancel_outcome",
    "first_str",
]


@dataclass(frozen=True)
class CancelResult:
    """What a cancel request achieved.

    ``outcome`` is ``"cancelled"`` (this cancel stopped the batch),
    ``"already_finished"`` (it had finished, or an earlier cancel had stopped
    it) or ``"not_found"`` (no such batch, or its results expired).
    """

    batch_id: str
    status: str | None
    outcome: str
    message: str


@dataclass(frozen=True)
class BatchStart:
    """The answer to starting a batch."""

    batch_id: str
    status: str
    total_items: int | None
    message: str


@dataclass(frozen=True)
class BatchInfo:
    """A batch's progress, from either spelling of the results body."""

    batch_id: str
    status: str
    progress: float | None
    total_items: int | None
    completed_items: int | None
    failed_items: int | None
    results: list[Any] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def as_dict(self) -> BatchProgress:
        """The fields a task result carries (not the per-item results and errors)."""
        return BatchProgress(
            batch_id=self.batch_id,
            status=self.status,
            progress=self.progress,
            total_items=self.total_items,
            completed_items=self.completed_items,
            failed_items=self.failed_items,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
        )


def cancel_outcome(status: str | None, message: str) -> str | None:
    """What a 200 to a cancel says, or ``None`` when it does not confirm the cancel.

    ``cancelled`` is "cancelled now" unless the message says it already was;
    a finished status means there was nothing left to stop. A running status
    (the API has not stopped it yet), no status or an unknown one confirms
    nothing: the caller looks again later rather than record a cancel.
    """
    if status == "cancelled":
        return "already_finished" if "already" in message.lower() else "cancelled"
    if status in FINISHED_STATUSES:
        return "already_finished"
    return None


def batch_start_from(data: Mapping[str, Any]) -> BatchStart | None:
    """The start answer, or ``None`` when the body names no batch."""
    batch_id = first_str(data, "batchId", "id")
    if batch_id is None:
        return None
    return BatchStart(
        batch_id=batch_id,
        status=_short(data, "status") or "pending",
        total_items=_int_or_none(_first(data, "totalItems", "totalCount")),
        message=_short(data, "message") or "",
    )


def batch_info_from(data: Mapping[str, Any], batch_id: str) -> BatchInfo:
    """A results body as :class:`BatchInfo`; ``batch_id`` fills a missing id."""
    results = data.get("results")
    errors = data.get("errors")
    return BatchInfo(
        batch_id=_short(data, "batchId", "id") or batch_id,
        status=_short(data, "status") or "unknown",
        progress=_float_or_none(data.get("progress")),
        total_items=_int_or_none(_first(data, "totalItems", "totalCount")),
        completed_items=_int_or_none(_first(data, "completedItems", "completedCount")),
        failed_items=_int_or_none(_first(data, "failedItems", "failedCount")),
        results=list(results) if isinstance(results, list) else [],
        errors=list(errors) if isinstance(errors, list) else [],
        created_at=_short(data, "createdAt"),
        started_at=_short(data, "startedAt"),
        completed_at=_short(data, "completedAt"),
    )


def first_str(data: Mapping[str, Any], *names: str) -> str | None:
    """The first of ``names`` whose value is a non-empty string."""
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _short(data: Mapping[str, Any], *names: str) -> str | None:
    """:func:`first_str`, cut to the length this package keeps of any API text."""
    value = first_str(data, *names)
    return clip(value) if value is not None else None


def _first(data: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if data.get(name) is not None:
            return data[name]
    return None


def _int_or_none(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
