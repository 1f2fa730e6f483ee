"""The types of the public task objects, for users' type checkers.

``pictify_tasks.cancel_batch`` and friends are Celery proxies resolved at run
time (the task of the current app); typed as ``Any`` they hide every
mistake from ``mypy --strict``. These protocols say what users call on them:
``delay`` with the task's own parameters, and results whose ``get()``
returns the task's ``TypedDict``. A test keeps each protocol's parameters
equal to the task function's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pictify_tasks.results import BatchProgress, CancelBatchResult

if TYPE_CHECKING:
    from celery.canvas import Signature

__all__ = ["CancelBatchTask", "StartBatchTask", "TaskResult", "TaskSignatures", "WaitForBatchTask"]

_R = TypeVar("_R", covariant=True)


class TaskResult(Protocol[_R]):
    """What ``delay`` and ``apply_async`` return (a Celery ``AsyncResult``), typed."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    def get(
        self, timeout: float | None = None, propagate: bool = True, interval: float = 0.5
    ) -> _R:
        """Wait for the task and return its result (raising its error with ``propagate``)."""

    def ready(self) -> bool: ...

    def successful(self) -> bool: ...

    def failed(self) -> bool: ...

    def revoke(
        self, connection: Any = None, terminate: bool = False, signal: str | None = None
    ) -> None: ...


class TaskSignatures(Protocol[_R]):
    """What every public task offers besides ``delay``: its name, publishing, signatures."""

    @property
    def name(self) -> str: ...

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> TaskResult[_R]: ...

    def s(self, *args: Any, **kwargs: Any) -> Signature: ...

    def si(self, *args: Any, **kwargs: Any) -> Signature: ...


class CancelBatchTask(TaskSignatures[CancelBatchResult], Protocol):
    """``pictify.cancel_batch``: cancel a batch, exactly once however often asked."""

    def delay(
        self, batch_id: str, *, reason: str | None = None
    ) -> TaskResult[CancelBatchResult]: ...

    def __call__(self, batch_id: str, *, reason: str | None = None) -> CancelBatchResult: ...


class StartBatchTask(TaskSignatures[str], Protocol):
    """``pictify.start_batch``: start a batch linked to the workflow; the result is its id."""

    def delay(
        self,
        template_uid: str,
        variable_sets: Sequence[Mapping[str, Any]],
        *,
        max_runtime: float | None = None,
        **options: Any,
    ) -> TaskResult[str]: ...

    def __call__(
        self,
        template_uid: str,
        variable_sets: Sequence[Mapping[str, Any]],
        *,
        max_runtime: float | None = None,
        **options: Any,
    ) -> str: ...


class WaitForBatchTask(TaskSignatures[BatchProgress], Protocol):
    """``pictify.wait_for_batch``: wait for a batch to end; the result is its final state."""

    def delay(
        self,
        batch_id: str,
        poll_interval: float = 5,
        *,
        timeout: float | None = None,
        raise_on: Sequence[str] = ("cancelled", "failed"),
    ) -> TaskResult[BatchProgress]: ...

    def __call__(
        self,
        batch_id: str,
        poll_interval: float = 5,
        *,
        timeout: float | None = None,
        raise_on: Sequence[str] = ("cancelled", "failed"),
    ) -> BatchProgress: ...
