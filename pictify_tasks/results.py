"""The shapes of the tasks' results, as ``TypedDict``s users can type their code with.

``Optional[...]``, not ``X | None``: users' tools evaluate these annotations
at run time (``typing.get_type_hints``), and Python 3.9 cannot evaluate ``|``.
"""
# ruff: noqa: UP045

from __future__ import annotations

from typing import Literal, Optional, TypedDict

__all__ = ["BatchProgress", "CancelBatchResult", "CancelOutcomeName"]

#: What a cancel achieved (see :class:`CancelBatchResult`).
CancelOutcomeName = Literal["cancelled", "already_finished", "not_found"]


class CancelBatchResult(TypedDict):
    """What ``pictify.cancel_batch`` returns.

    ``outcome``: ``cancelled`` (this cancel stopped the batch),
    ``already_finished`` (it had ended, or an earlier cancel stopped it) or
    ``not_found`` (the API does not know the batch). ``attempts`` counts the
    HTTP attempts it took; ``status`` is the batch's status as the API told it.
    ``items_not_rendered`` is what the cancel saved, from the batch's last
    known progress (``None`` when nothing told it). ``replayed`` is true when
    this task found the outcome another recorded (a duplicate, or a later
    ask) and sent nothing itself.
    """

    batch_id: str
    status: Optional[str]
    outcome: str
    attempts: int
    message: str
    items_not_rendered: Optional[int]
    replayed: bool


class BatchProgress(TypedDict):
    """What ``pictify.wait_for_batch`` returns: the batch as the API last told it."""

    batch_id: str
    status: str
    progress: Optional[float]
    total_items: Optional[int]
    completed_items: Optional[int]
    failed_items: Optional[int]
    created_at: Optional[str]
    started_at: Optional[str]
    completed_at: Optional[str]
