"""pictify-tasks: reliable cancellation of Pictify batch renders from Celery.

Public names live here; everything else is internal.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Any

from celery import current_app
from celery.local import Proxy

from pictify_tasks.client import BatchInfo, BatchStart, CancelResult, PictifyClient
from pictify_tasks.configuration import configure, reload_settings
from pictify_tasks.errors import (
    AuthenticationError,
    BatchCancelledError,
    BatchConflictError,
    BatchEndedError,
    BatchFailedError,
    BatchNotFoundError,
    CancelFailedError,
    CancelNotConfirmedError,
    ImproperlyConfigured,
    InvalidBatchIdError,
    InvalidRequestError,
    PictifyConnectionError,
    PictifyError,
    QuotaExceededError,
    RateLimitError,
    ServerError,
    UnexpectedResponseError,
    WaitTimeoutError,
)
from pictify_tasks.integration import install, uninstall
from pictify_tasks.names import CANCEL_BATCH, START_BATCH, WAIT_FOR_BATCH
from pictify_tasks.results import BatchProgress, CancelBatchResult
from pictify_tasks.retry import RetryPolicy
from pictify_tasks.revoke.api import cancel_workflow, revoke_workflow, track_batch
from pictify_tasks.revoke.links import BatchLinks, Scope
from pictify_tasks.settings import PictifySettings
from pictify_tasks.store.base import StateStoreError
from pictify_tasks.task_types import CancelBatchTask, StartBatchTask, TaskResult, WaitForBatchTask


def _installed_task(name: str) -> Any:
    """The task ``name`` of the current app, or a clear error if not installed."""
    app = current_app._get_current_object()
    try:
        return app.tasks[name]
    except KeyError:
        raise ImproperlyConfigured(
            f"task {name!r} is not registered on the current Celery app {app.main!r}: "
            "call pictify_tasks.install(app) where the app is created"
        ) from None


# Typed by protocols, so that users' type checkers see each task's parameters and result.
cancel_batch: CancelBatchTask = Proxy(_installed_task, args=(CANCEL_BATCH,))
"""The ``pictify.cancel_batch`` task of the current app (see :func:`install`)."""
start_batch: StartBatchTask = Proxy(_installed_task, args=(START_BATCH,))
"""The ``pictify.start_batch`` task of the current app."""
wait_for_batch: WaitForBatchTask = Proxy(_installed_task, args=(WAIT_FOR_BATCH,))
"""The ``pictify.wait_for_batch`` task of the current app."""

__all__ = [
    "AuthenticationError",
    "BatchCancelledError",
    "BatchConflictError",
    "BatchEndedError",
    "BatchFailedError",
    "BatchInfo",
    "BatchLinks",
    "BatchNotFoundError",
    "BatchProgress",
    "BatchStart",
    "CancelBatchResult",
    "CancelBatchTask",
    "CancelFailedError",
    "CancelNotConfirmedError",
    "CancelResult",
    "ImproperlyConfigured",
    "InvalidBatchIdError",
    "InvalidRequestError",
    "PictifyClient",
    "PictifyConnectionError",
    "PictifyError",
    "PictifySettings",
    "QuotaExceededError",
    "RateLimitError",
    "RetryPolicy",
    "Scope",
    "ServerError",
    "StartBatchTask",
    "StateStoreError",
    "TaskResult",
    "UnexpectedResponseError",
    "WaitForBatchTask",
    "WaitTimeoutError",
    "__version__",
    "cancel_batch",
    "cancel_workflow",
    "configure",
    "install",
    "reload_settings",
    "revoke_workflow",
    "start_batch",
    "track_batch",
    "uninstall",
    "wait_for_batch",
]
