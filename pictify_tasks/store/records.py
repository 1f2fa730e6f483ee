"""The ledger's records, typed: a cancel's final outcome, and its last failure.

They are stored as JSON (Redis) or as the values themselves (memory); both
round-trip through :meth:`to_json` / :meth:`from_json`, which also reads the
untyped dicts older versions wrote.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from pictify_tasks.errors import CancelNotConfirmedError
from pictify_tasks.results import CancelBatchResult

__all__ = ["FailureRecord", "OutcomeRecord", "StartMade", "StartRequest", "WantedCancel"]


@dataclass(frozen=True)
class OutcomeRecord:
    """A batch's final cancel outcome: a fact, recorded once."""

    batch_id: str
    status: str | None
    outcome: str
    attempts: int
    message: str
    #: What the cancel saved: the items that had not rendered when it landed
    #: (from the batch's last known progress), when that is known.
    items_not_rendered: int | None = None
    #: Not stored: whether the reader found it recorded by another task.
    replayed: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return _flat(self, skip="replayed")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OutcomeRecord:
        return cls(
            batch_id=str(data.get("batch_id", "")),
            status=_str_or_none(data.get("status")),
            outcome=str(data.get("outcome", "")),
            attempts=_int(data.get("attempts")),
            message=str(data.get("message") or ""),
            items_not_rendered=int_or_none(data.get("items_not_rendered")),
        )

    def as_result(self) -> CancelBatchResult:
        """The task's public result: the same fields, and whether it was read from the ledger.

        ``replayed`` is true for a task that found the outcome recorded by
        another (a duplicate, or a later ask): it sent nothing itself.
        """
        return cast(CancelBatchResult, {**self.to_json(), "replayed": self.replayed})


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

    @property
    def unconfirmed(self) -> bool:
        """A 200 that did not confirm the cancel: the batch's own key would only replay it."""
        return self.error == CancelNotConfirmedError.__name__

    def to_json(self) -> dict[str, Any]:
        return _flat(self)

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


def int_or_none(value: Any) -> int | None:
    """A stored integer, or ``None`` for anything else (``bool`` is no count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _int(value: Any) -> int:
    return int_or_none(value) or 0


@dataclass(frozen=True)
class WantedCancel:
    """A cancel that was asked for and has no outcome yet (what the sweep re-sends).

    ``asked_at`` is the wall time of the first ask: a cancel's time budget
    counts from it, however often its task is re-sent.
    """

    batch_id: str
    asked_at: float
    reason: str = ""
    #: The workflow the batch belongs to (its root) and the task that started
    #: it: the cancel task is published under them, so it shows in the
    #: workflow's tree (Flower) instead of as an orphan.
    root_id: str | None = None
    parent_id: str | None = None


@dataclass(frozen=True)
class StartRequest:
    """A batch start that may have reached the API, recorded before its POST.

    If the task sending it dies inside the POST, a revoke finds this record
    and replays the same request with the same Idempotency-Key: the API
    answers a replay with the batch the first request made (for 24 hours).
    ``links`` are the (scope, id) pairs the batch is to be linked under.
    """

    start_id: str
    template_uid: str
    body: dict[str, Any]
    idempotency_key: str
    links: tuple[tuple[str, str], ...] = ()
    batch_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "links": [list(pair) for pair in self.links]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StartRequest:
        links = data.get("links") or []
        body = data.get("body")
        return cls(
            start_id=str(data.get("start_id", "")),
            template_uid=str(data.get("template_uid", "")),
            body=dict(body) if isinstance(body, Mapping) else {},
            idempotency_key=str(data.get("idempotency_key", "")),
            links=tuple(
                (str(p[0]), str(p[1])) for p in links if isinstance(p, list) and len(p) == 2
            ),
            batch_id=_str_or_none(data.get("batch_id")),
        )


@dataclass(frozen=True)
class StartMade:
    """A start's answer: the batch it made, and what to keep about it.

    ``total_items`` starts its progress (what a cancel saves is counted from
    it); with ``deadline`` (wall time) it is cancelled then if still running;
    ``webhook`` tells a waiting task to rely on Pictify's webhook.
    """

    start_id: str
    batch_id: str
    total_items: int | None = None
    deadline: float | None = None
    #: Whether it was started with a webhook URL (``None``: not known).
    webhook: bool | None = None


def _flat(record: Any, skip: str = "") -> dict[str, Any]:
    """A record of plain values as a dict: what ``dataclasses.asdict`` gives, without its
    deep copy (a cancel makes two, on its hot path)."""
    return {name: getattr(record, name) for name in _field_names(type(record)) if name != skip}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names
